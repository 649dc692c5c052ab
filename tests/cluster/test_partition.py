"""A network partition: a worker node in its own network namespace is cut off from the head.

    head    10.213.7.1  (host side of a veth)   1 CPU                  + the driver of this test
    node P  10.213.7.2  (inside swarm-part-<pid>) 2 CPUs, {"part": 1}

This cluster is this module's own (its own ``SWARM_TEMP_DIR``, ``SWARM_NODE_TIMEOUT_S=2``; node P
has ``SWARM_HEAD_RECONNECT_S=4``), not the shared session cluster. Unlike killing a process, a cut
network closes no socket: the head only notices that heartbeats stop, and node P only notices that
the head went silent. The test needs root, the ``ip`` command and network namespaces; elsewhere it
is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import netns_util
import pytest
from cluster_util import CLI, SRC, alive, free_port, wait_for

import swarm
from swarm import _config

NODE_TIMEOUT_S = 2
HEAD_RECONNECT_S = 4
ENV_KEYS = ("SWARM_TEMP_DIR", "SWARM_TOKEN", "SWARM_TOKEN_FILE", "SWARM_ADDRESS")


def _node_files(temp_dir: Path) -> dict[str, dict]:
    out = {}
    for p in (temp_dir / "nodes").glob("*.json"):
        try:
            info = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        out[info["node_id"]] = info
    return out


def _run(cmd: list[str], env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def _log_tail(info: dict, n: int = 3000) -> str:
    try:
        return (Path(info["session_dir"]) / "logs" / "node_manager.log").read_text()[-n:]
    except OSError as e:
        return f"(no log: {e})"


@pytest.fixture(scope="module")
def partitioned(tmp_path_factory: pytest.TempPathFactory):
    reason = netns_util.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    temp_dir = tmp_path_factory.mktemp("swarm_partition")
    net = netns_util.TestNet()
    saved_env = {k: os.environ.get(k) for k in ENV_KEYS}
    saved_temp = _config.CONFIG.temp_dir
    if swarm.is_initialized():          # e.g. the shared session cluster: its fixture re-attaches
        swarm.shutdown()
    env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    env.update(SWARM_TEMP_DIR=str(temp_dir), SWARM_NODE_TIMEOUT_S=str(NODE_TIMEOUT_S),
               SWARM_HEAD_RECONNECT_S=str(HEAD_RECONNECT_S),
               PYTHONPATH=os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p))
    pids: set[int] = set()
    stop = None
    try:
        net.create()
        port = free_port(netns_util.HOST_IP)
        head_address = f"{netns_util.HOST_IP}:{port}"
        _run(CLI + ["start", "--head", "--node-ip-address", netns_util.HOST_IP, "--port", str(port),
                    "--num-cpus", "1"], env)
        (head,) = _node_files(temp_dir).values()
        pids.add(head["pid"])
        token = (temp_dir / "cluster_token").read_text().strip()
        _run(net.exec_prefix() + [sys.executable, "-m", "swarm.cli", "start", "--address", head_address,
                                  "--node-ip-address", netns_util.NS_IP, "--num-cpus", "2",
                                  "--resources", json.dumps({"part": 1})],
             dict(env, SWARM_TOKEN=token))
        (part,) = (n for nid, n in _node_files(temp_dir).items() if nid != head["node_id"])
        pids.add(part["pid"])
        assert part["pid"] in netns_util.netns_pids(net.ns), "node P does not run in the namespace"

        os.environ["SWARM_TEMP_DIR"] = str(temp_dir)
        _config.CONFIG.temp_dir = str(temp_dir)
        swarm.init(address=head_address)
        want = {head["node_id"], part["node_id"]}
        wait_for(lambda: want <= {n["NodeID"] for n in swarm.nodes() if n["Alive"]}, 20,
                 what="both nodes alive")
        yield {"net": net, "temp_dir": temp_dir, "env": env, "head": head, "part": part, "cut_at": None}
    finally:
        try:
            swarm.shutdown()
        finally:
            try:
                stop = subprocess.run(CLI + ["stop", "--grace", "5"], env=env, capture_output=True,
                                      text=True, timeout=60)
            finally:
                leftover = net.close()
                _config.CONFIG.temp_dir = saved_temp
                for k, v in saved_env.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
    assert stop is not None and stop.returncode == 0, stop and stop.stderr
    left = sorted(p for p in pids if alive(p))
    assert not left, f"node managers left after `swarm stop`: {left} (namespace leftovers: {leftover})"


@swarm.remote
def where() -> str:
    return swarm.get_runtime_context().get_node_id()


@swarm.remote(max_retries=3)
def square_slowly(i: int, marks: str, seconds: float = 1.0) -> int:
    node = swarm.get_runtime_context().get_node_id()
    Path(marks, f"{i}-{node}-{os.getpid()}").touch()
    time.sleep(seconds)
    return i * i


def _cut(partitioned: dict) -> float:
    """Cut the network once; the time of the cut."""
    if partitioned.get("cut_at") is None:
        partitioned["net"].cut()
        partitioned["cut_at"] = time.monotonic()
    return partitioned["cut_at"]


def test_partitioned_node_is_declared_dead_and_its_tasks_rerun(partitioned, tmp_path):
    head, part = partitioned["head"]["node_id"], partitioned["part"]["node_id"]

    # before the cut: the namespaced node is reachable and runs what only it can run
    assert swarm.get(where.options(resources={"part": 1}).remote(), timeout=30) == part

    marks = tmp_path / "marks"
    marks.mkdir()
    refs = [square_slowly.options(scheduling_strategy="SPREAD").remote(i, str(marks)) for i in range(6)]
    wait_for(lambda: any(f"-{part}-" in m for m in os.listdir(marks)), 30, 0.02,
             "a task running on the namespaced node")
    cut_at = _cut(partitioned)

    # the head sees heartbeats stop and declares the node dead within a bounded time
    wait_for(lambda: not next(n for n in swarm.nodes() if n["NodeID"] == part)["Alive"], 10, 0.1,
             "nodes() to show the partitioned node dead")
    assert time.monotonic() - cut_at < 10

    # every result is right: what ran on the partitioned node ran again on the head
    assert swarm.get(refs, timeout=40) == [i * i for i in range(6)]
    ran = [m.split("-") for m in os.listdir(marks)]
    on_part = {i for i, node, _ in ran if node == part}
    assert on_part, ran
    assert all(any(i2 == i and node == head for i2, node, _ in ran) for i in on_part), ran
    assert swarm.cluster_resources()["CPU"] == 1
    assert "part" not in swarm.cluster_resources()


def test_partitioned_node_manager_exits_after_losing_the_head(partitioned):
    part_pid = partitioned["part"]["pid"]
    cut_at = _cut(partitioned)
    # it retries the head for SWARM_HEAD_RECONNECT_S (4 s here), then exits by itself
    try:
        wait_for(lambda: not alive(part_pid), 20 - (time.monotonic() - cut_at), 0.2,
                 f"the partitioned node manager (pid {part_pid}) to exit")
    except AssertionError as e:
        raise AssertionError(f"{e}\nits log:\n{_log_tail(partitioned['part'])}") from None
