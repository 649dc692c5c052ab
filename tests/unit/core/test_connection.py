"""Unit tests for the handshake in swarm.core.connection, over a real socketpair with threads."""

from __future__ import annotations

import os
import socket
import threading

import pytest

from swarm.core import connection, protocol as P
from swarm.exceptions import AuthenticationError, ProtocolVersionError

TOKEN = b"t" * 32
OTHER = b"o" * 32


class Server:
    """Runs ``server_handshake`` in a thread; closes its end on failure, as the callers do."""

    def __init__(self, sock: socket.socket, token: bytes) -> None:
        self.sock = sock
        self.token = token
        self.result: object = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result = connection.server_handshake(self.sock, self.token)
        except BaseException as e:  # the test asserts there was none
            self.error = e
        if self.result is not True:
            self.sock.close()

    def join(self) -> object:
        self.thread.join(30)
        assert not self.thread.is_alive(), "server_handshake did not return"
        assert self.error is None, f"server_handshake raised {self.error!r}"
        return self.result


@pytest.fixture
def pair():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    yield a, b
    for s in (a, b):
        try:
            s.close()
        except OSError:
            pass


def test_same_token_succeeds_and_frames_flow(pair):
    server_sock, client_sock = pair
    server = Server(server_sock, TOKEN)
    connection.client_handshake(client_sock, TOKEN)
    assert server.join() is True
    # both ends are back in blocking mode and carry frames
    assert client_sock.gettimeout() is None and server_sock.gettimeout() is None
    client_sock.sendall(P.encode([P.HELLO, b"id", "unix:x"]))
    reader = P.FrameReader()
    msgs: list = []
    while not msgs:
        msgs = reader.feed(server_sock.recv(4096))
    assert msgs == [[P.HELLO, b"id", "unix:x"]]


def test_different_tokens_client_gets_authentication_error_server_false(pair):
    server_sock, client_sock = pair
    server = Server(server_sock, TOKEN)
    with pytest.raises(AuthenticationError) as info:
        connection.client_handshake(client_sock, OTHER)
    assert "token" in str(info.value)
    assert server.join() is False


def test_authentication_error_is_a_swarm_error():
    from swarm.exceptions import SwarmError
    assert issubclass(AuthenticationError, SwarmError)


def test_garbage_instead_of_proof_is_refused_without_raising(pair):
    server_sock, client_sock = pair
    server = Server(server_sock, TOKEN)
    greeting = connection._recv_exact(client_sock, connection._HELLO.size)
    assert greeting.startswith(connection.MAGIC)
    client_sock.sendall(os.urandom(connection._PROOF.size))
    assert server.join() is False


def test_short_garbage_then_close_is_refused_without_raising(pair):
    server_sock, client_sock = pair
    server = Server(server_sock, TOKEN)
    client_sock.sendall(b"GET / HTTP/1.1\r\n")
    client_sock.close()
    assert server.join() is False


def test_well_formed_proof_with_wrong_mac_is_refused(pair):
    server_sock, client_sock = pair
    server = Server(server_sock, TOKEN)
    _, version, nonce = connection._HELLO.unpack(connection._recv_exact(client_sock, connection._HELLO.size))
    wrong = connection._mac(OTHER, nonce)
    client_sock.sendall(connection._PROOF.pack(connection.MAGIC, version, wrong, os.urandom(32)))
    assert server.join() is False
    assert client_sock.recv(64) == b""            # nothing sent back: the server hung up


def test_wrong_protocol_version_from_client_is_refused(pair):
    server_sock, client_sock = pair
    server = Server(server_sock, TOKEN)
    _, _, nonce = connection._HELLO.unpack(connection._recv_exact(client_sock, connection._HELLO.size))
    proof = connection._mac(TOKEN, nonce)
    client_sock.sendall(connection._PROOF.pack(connection.MAGIC, P.PROTOCOL_VERSION + 1, proof,
                                               os.urandom(32)))
    assert server.join() is False


def _fake_server(sock: socket.socket, greeting: bytes, reply: bytes | None) -> threading.Thread:
    def run() -> None:
        try:
            sock.sendall(greeting)
            if reply is not None:
                connection._recv_exact(sock, connection._PROOF.size)
                sock.sendall(reply)
        except OSError:
            pass
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_client_refuses_a_server_that_does_not_know_the_token(pair):
    server_sock, client_sock = pair
    greeting = connection._HELLO.pack(connection.MAGIC, P.PROTOCOL_VERSION, os.urandom(32))
    t = _fake_server(server_sock, greeting, os.urandom(32))
    with pytest.raises(AuthenticationError):
        connection.client_handshake(client_sock, TOKEN)
    t.join(10)


def test_client_names_both_versions_on_mismatch(pair):
    server_sock, client_sock = pair
    greeting = connection._HELLO.pack(connection.MAGIC, 999, os.urandom(32))
    t = _fake_server(server_sock, greeting, None)
    with pytest.raises(ProtocolVersionError) as info:
        connection.client_handshake(client_sock, TOKEN)
    assert "999" in str(info.value) and str(P.PROTOCOL_VERSION) in str(info.value)
    t.join(10)


def test_client_refuses_a_peer_that_is_not_swarm(pair):
    server_sock, client_sock = pair
    t = _fake_server(server_sock, b"HTTP/1.1 400 Bad Request\r\n\r\n" + b"x" * 10, None)
    with pytest.raises(ConnectionError):
        connection.client_handshake(client_sock, TOKEN)
    t.join(10)
