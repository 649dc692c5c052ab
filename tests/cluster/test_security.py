"""Every port of a cluster talks only to peers that know the cluster token.

Attacks here come over raw TCP sockets: a pickle bomb sent without authenticating (it must never be
unpickled), random bytes (they must never crash a node manager), peers of another protocol version
(refused, with an error naming both versions), and an idle unauthenticated connection (it must not
stall the node). Authenticated garbage frames go to a scratch head node of their own, so a message
that a real peer could legitimately send (and that changes the node's state) never disturbs the
shared cluster.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import pickle
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cluster_util import Cluster, alive, free_port, wait_for
from hypothesis import HealthCheck, given, settings, strategies as st

import swarm
from swarm.core import connection, protocol as P
from swarm.exceptions import AuthenticationError, ProtocolVersionError

HELLO = connection._HELLO          # magic, version, nonce          (server -> client first)
PROOF = connection._PROOF          # magic, version, hmac, nonce    (client -> server)
FUZZ = settings(max_examples=30, deadline=None, database=None, derandomize=True,
                suppress_health_check=list(HealthCheck))


class Bomb:
    """Unpickling this creates ``path``: proof that someone unpickled bytes from the network."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def hostport(address: str) -> tuple[str, int]:
    host, _, port = address.removeprefix("tcp:").rpartition(":")
    return host, int(port)


def send_and_drain(address: str, payload: bytes, read_hello: bool = False, timeout: float = 10.0) -> bytes:
    """Send ``payload`` over a fresh TCP connection, then read until the server closes it."""
    got = b""
    with socket.create_connection(hostport(address), timeout=timeout) as s:
        if read_hello:
            got += connection._recv_exact(s, HELLO.size)
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
        except OSError:                    # the server hung up already
            pass
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
        except ConnectionResetError:
            pass
    return got


def token_of(cluster: Cluster) -> bytes:
    return cluster.token_file.read_text().strip().encode()


def node_log(cluster: Cluster, label: str) -> str:
    return (Path(cluster.nodes[label]["session_dir"]) / "logs" / "node_manager.log").read_text()


def assert_serves(cluster: Cluster) -> None:
    """The head's node manager is alive and answers the CLI and the driver; all nodes are alive."""
    assert alive(cluster.nodes["head"]["pid"])
    status = cluster.cli("status", timeout=30)
    assert cluster.node_id("head") in status.stdout
    assert len(cluster.alive_node_ids()) == 3

    @swarm.remote(resources={"b": 0.01})
    def ping() -> str:
        return swarm.get_runtime_context().get_node_id()

    assert swarm.get(ping.remote(), timeout=30) == cluster.node_id("b")


# -- pickle bomb ------------------------------------------------------------------------------------

def test_the_bomb_goes_off_when_unpickled(tmp_path):
    """Control: the payload used below really does create its marker when unpickled."""
    marker = tmp_path / "control"
    pickle.loads(pickle.dumps(Bomb(str(marker)))).close()
    assert marker.exists()


def _bomb_payloads(marker: Path) -> dict[str, tuple[bytes, bool]]:
    bomb = pickle.dumps(Bomb(str(marker)), protocol=5)
    framed = P.encode([P.PUSH_TASK, os.urandom(16), os.urandom(16), bomb, "f", bomb, [], 1])
    fake_proof = PROOF.pack(connection.MAGIC, P.PROTOCOL_VERSION, bytes(32), os.urandom(32))
    return {
        "raw pickle": (bomb, False),
        "pickle in a frame": (framed, False),
        "frame after reading the greeting": (framed * 3, True),
        "frame after a forged proof": (fake_proof + framed, True),
        "short pickle then silence": (bomb[:40], False),
    }


def _listening_ports(cluster: Cluster) -> dict[str, str]:
    info = swarm.api._cluster_info()
    return {"head": cluster.nodes["head"]["tcp_address"], "head object server": info["transfer_address"],
            "node B": cluster.nodes["b"]["tcp_address"], "driver": swarm.api._worker.address}


def test_pickle_bomb_without_authentication_is_never_unpickled(driver, tmp_path):
    marker = tmp_path / "bomb-went-off"
    ports = _listening_ports(driver)

    @swarm.remote(num_cpus=0, resources={"b": 0.01})
    class Probe:
        def address(self) -> str:
            return swarm.api._worker.address

    probe = Probe.remote()
    ports["worker on B"] = swarm.get(probe.address.remote(), timeout=30)
    try:
        for where, address in ports.items():
            assert address.startswith("tcp:"), (where, address)
            for what, (payload, read_hello) in _bomb_payloads(marker).items():
                got = send_and_drain(address, payload, read_hello)
                # the server said hello (38 bytes) and nothing else: no proof, no reply frame
                assert len(got) <= HELLO.size, (where, what, got[:80])
        time.sleep(0.5)
        assert not marker.exists(), "a pickle sent without authenticating was unpickled"
        assert_serves(driver)
        assert "failed authentication" in node_log(driver, "head")
    finally:
        swarm.kill(probe)


# -- random bytes -----------------------------------------------------------------------------------

_greeting = struct.pack("<4sH", connection.MAGIC, P.PROTOCOL_VERSION)
RANDOM_BYTES = st.one_of(
    st.binary(max_size=512),
    st.binary(max_size=512).map(lambda b: _greeting + b),                       # past the magic check
    st.binary(min_size=64, max_size=64).map(lambda b: _greeting + b + P.encode([P.SHUTDOWN])),
    st.lists(st.integers(0, 127), max_size=8).map(lambda ks: b"".join(P.encode([k]) for k in ks)),
)


def test_random_bytes_never_crash_the_node_manager(driver):
    head = driver.nodes["head"]["tcp_address"]
    pid = driver.nodes["head"]["pid"]

    @FUZZ
    @given(data=RANDOM_BYTES, read_hello=st.booleans())
    def attack(data: bytes, read_hello: bool) -> None:
        got = send_and_drain(head, data, read_hello)
        assert len(got) <= HELLO.size
        assert alive(pid)

    attack()
    assert_serves(driver)


# -- protocol versions ------------------------------------------------------------------------------

def test_peer_with_another_version_is_refused(driver):
    """A client that proves the token but speaks another version gets no proof back: dropped."""
    address = driver.nodes["head"]["tcp_address"]
    other = P.PROTOCOL_VERSION + 7
    with socket.create_connection(hostport(address), timeout=10) as s:
        magic, version, nonce = HELLO.unpack(connection._recv_exact(s, HELLO.size))
        assert (magic, version) == (connection.MAGIC, P.PROTOCOL_VERSION)
        mac = hmac.new(token_of(driver), nonce, hashlib.sha256).digest()
        s.sendall(PROOF.pack(connection.MAGIC, other, mac, os.urandom(32)))
        assert s.recv(64) == b""
    wait_for(lambda: f"protocol version {other}" in node_log(driver, "head"), 5,
             what="the head to log the refused version")
    assert_serves(driver)


def test_client_of_another_version_gets_a_clear_error(driver, monkeypatch):
    """What a driver or node of another swarm version sees: an error naming both versions."""
    ours = P.PROTOCOL_VERSION
    monkeypatch.setattr(P, "PROTOCOL_VERSION", ours + 41)
    with pytest.raises(ProtocolVersionError) as info:
        connection.connect(driver.nodes["head"]["tcp_address"], token_of(driver))
    assert str(ours) in str(info.value) and str(ours + 41) in str(info.value)
    monkeypatch.undo()
    connection.connect(driver.nodes["head"]["tcp_address"], token_of(driver)).close()


def test_server_of_another_version_gets_a_clear_error():
    other = P.PROTOCOL_VERSION + 3
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(HELLO.pack(connection.MAGIC, other, os.urandom(32)))
            conn.recv(1024)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with pytest.raises(ProtocolVersionError) as info:
            connection.connect(f"tcp:127.0.0.1:{port}", b"token")
        assert str(other) in str(info.value) and str(P.PROTOCOL_VERSION) in str(info.value)
    finally:
        listener.close()
        t.join(5)


def test_a_server_that_does_not_know_the_token_is_caught(tmp_path):
    """Mutual authentication: a fake server that cannot prove the token is refused by the client."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(HELLO.pack(connection.MAGIC, P.PROTOCOL_VERSION, os.urandom(32)))
            connection._recv_exact(conn, PROOF.size)
            conn.sendall(os.urandom(32))          # a guess at the proof
            conn.recv(1024)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with pytest.raises(AuthenticationError):
            connection.connect(f"tcp:127.0.0.1:{port}", b"the real token")
    finally:
        listener.close()
        t.join(5)


# -- availability -----------------------------------------------------------------------------------

def test_idle_unauthenticated_connection_does_not_stall_the_node(driver):
    done = threading.Event()

    def query() -> None:
        swarm.api._cluster_info()
        done.set()

    with socket.create_connection(hostport(driver.nodes["head"]["tcp_address"]), timeout=10):
        time.sleep(0.2)                       # the head has accepted it and waits for its proof
        t = threading.Thread(target=query, daemon=True)
        t.start()
        answered = done.wait(1.5)
    # closing the idle socket ends the stall long before any node times out
    t.join(30)
    assert answered, "the head did not answer while an unauthenticated peer held a connection open"


# -- authenticated garbage (a scratch head node of its own) ----------------------------------------

@pytest.fixture(scope="module")
def scratch_head(tmp_path_factory: pytest.TempPathFactory):
    temp_dir = tmp_path_factory.mktemp("scratch_head")
    token = os.urandom(16).hex()
    env = dict(os.environ, SWARM_TEMP_DIR=str(temp_dir), SWARM_TOKEN=token)
    scratch = Cluster(temp_dir=temp_dir, env=env, head_port=free_port())
    scratch.start_node("head")
    try:
        yield scratch, token.encode()
    finally:
        scratch.record_pids()
        scratch.cli("stop")
        wait_for(lambda: not any(alive(p) for p in scratch.pids), 10, what="the scratch head to stop")


_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats() | st.text(max_size=20)
    | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12)
_KINDS = sorted({v for k, v in vars(P).items() if k.isupper() and isinstance(v, int) and 0 < v < 128}
                - {P.SHUTDOWN})


def test_authenticated_garbage_frames_never_crash_the_node_manager(scratch_head):
    scratch, token = scratch_head
    address = scratch.nodes["head"]["tcp_address"]
    pid = scratch.nodes["head"]["pid"]

    @settings(FUZZ, max_examples=60)
    @given(kind=st.sampled_from(_KINDS), fields=st.lists(_VALUES, max_size=7),
           tail=st.binary(max_size=64))
    def attack(kind: int, fields: list, tail: bytes) -> None:
        sock = connection.connect(address, token)
        try:
            sock.sendall(P.encode([kind, *fields]) + tail)
            time.sleep(0.01)
        finally:
            sock.close()
        assert alive(pid)

    attack()
    status = scratch.cli("status", timeout=30)
    assert scratch.node_id("head") in status.stdout
    # and it still runs work for a real driver
    code = ("import swarm; swarm.init(address=%r)\n"
            "f = swarm.remote(lambda: 42)\nprint(swarm.get(f.remote(), timeout=30))" % scratch.head_address)
    run = subprocess.run([sys.executable, "-c", code], env=scratch.env, capture_output=True, text=True,
                         timeout=60)
    assert run.stdout.strip() == "42", run.stderr[-2000:]


def test_token_never_appears_in_node_files_or_logs(driver):
    token = driver.token_file.read_text().strip()
    for info in driver.node_files().values():
        assert token not in json.dumps(info)
        logs = Path(info["session_dir"]) / "logs"
        for f in logs.iterdir():
            assert token not in f.read_text(errors="replace"), f
