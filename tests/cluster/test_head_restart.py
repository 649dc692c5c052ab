"""A head that survives restarts: the control store in a real Redis server, the head's processes
SIGKILLed mid-workload and started again on the same storage.

    redis-server (loopback)  ◀── head 127.0.0.1 (--storage redis://...)  ◀── node B 127.0.0.2
                                                                               ▲
                                          this test's driver attaches to B ────┘ (it outlives the head)
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from cluster_util import Cluster, alive, cluster_in, free_port, wait_for

import swarm
from swarm.experimental import internal_kv as kv
from swarm.util import state

ON_B = {"resources": {"b": 0.01}}


@pytest.fixture(scope="module")
def restartable(tmp_path_factory: pytest.TempPathFactory, start_redis):
    redis_port = free_port()
    redis = start_redis(redis_port)
    try:
        with cluster_in(tmp_path_factory.mktemp("swarm_restart")) as cluster:
            cluster.storage = f"redis://127.0.0.1:{redis_port}/0"  # type: ignore[attr-defined]
            cluster.start_node("head", "--storage", cluster.storage)  # type: ignore[attr-defined]
            cluster.start_node("b")
            swarm.init(address=cluster.nodes["b"]["tcp_address"][4:])
            cluster.wait_alive(["head", "b"])
            yield cluster
    finally:
        redis.terminate()
        redis.wait(10)


@swarm.remote
class Counter:
    def __init__(self) -> None:
        self.n = 0

    def inc(self) -> int:
        self.n += 1
        return self.n

    def where(self) -> str:
        return swarm.get_runtime_context().get_node_id()


@swarm.remote
def slow_square(x: int, seconds: float) -> int:
    time.sleep(seconds)
    return x * x


def _kill_head(cluster: Cluster) -> None:
    """SIGKILL the head's node manager and every process under it (workers die with it)."""
    tree = cluster.descendants("head")
    cluster.pids.update(tree)
    for pid in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    wait_for(lambda: not any(alive(p) for p in tree), 10, what="the head's processes to exit")


def test_head_killed_and_restarted_keeps_actors_kv_and_running_tasks(restartable: Cluster):
    cluster = restartable
    counter = Counter.options(name="counter", lifetime="detached", **ON_B).remote()
    assert [swarm.get(counter.inc.remote()) for _ in range(3)] == [1, 2, 3]
    assert swarm.get(counter.where.remote()) == cluster.node_id("b")
    kv.kv_put("model", b"v7", namespace="app")
    kv.kv_put("scratch", b"x", namespace="_volatile")
    running = [slow_square.options(**ON_B).remote(i, 4.0) for i in range(2)]
    time.sleep(0.5)                      # they are running on B now

    _kill_head(cluster)
    # while the head is down: calls between existing processes keep working
    assert swarm.get(counter.inc.remote(), timeout=30) == 4
    # a new named actor waits for the head (its name must be claimed there), then proceeds
    created: dict = {}

    def create() -> None:
        try:
            h = created["handle"] = Counter.options(name="late", **ON_B).remote()
            created["value"] = swarm.get(h.inc.remote(), timeout=60)
        except Exception as e:   # reported below
            created["error"] = e
    t = threading.Thread(target=create)
    t.start()
    time.sleep(1.0)
    assert "value" not in created, "a named actor was created with no head to claim its name"

    old_head = cluster.node_id("head")
    cluster.start_node("head", "--storage", cluster.storage)  # type: ignore[attr-defined]
    # tasks that were running on B finish and deliver their results
    assert swarm.get(running, timeout=60) == [0, 1]
    t.join(60)
    assert created.get("value") == 1, created
    # B reconnects on its own; the old head node is dead
    wait_for(lambda: {cluster.node_id("head"), cluster.node_id("b")} <= cluster.alive_node_ids(), 30,
             what="B to rejoin the restarted head")
    assert old_head not in cluster.alive_node_ids()
    # the detached named actor is found by name, with its state
    again = swarm.get_actor("counter")
    assert swarm.get(again.inc.remote(), timeout=30) == 5
    # the KV survived (volatile namespaces did not)
    assert kv.kv_get("model", namespace="app") == b"v7"
    assert kv.kv_get("scratch", namespace="_volatile") is None
    # the directory came back from storage: the actor is listed alive on B
    row = next(a for a in state.list_actors() if a["name"] == "counter")
    assert row["state"] == "ALIVE" and row["node_id"] == cluster.node_id("b")
    # and new work is scheduled through the new head
    assert swarm.get(slow_square.remote(3, 0.0), timeout=60) == 9
    swarm.kill(again)
    swarm.kill(created["handle"])


def test_unreachable_storage_is_a_clear_error_at_start(restartable: Cluster, tmp_path):
    env = dict(restartable.env, SWARM_TEMP_DIR=str(tmp_path))
    dead = free_port()
    proc = restartable.cli("start", "--head", "--port", str(free_port()), "--storage",
                           f"redis://127.0.0.1:{dead}/0", env=env, check=False)
    assert proc.returncode == 1
    assert f"cannot reach the Redis server at redis://127.0.0.1:{dead}/0" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_storage_of_another_cluster_is_refused(restartable: Cluster, tmp_path):
    env = dict(restartable.env, SWARM_TEMP_DIR=str(tmp_path), SWARM_TOKEN="another-clusters-token")
    proc = restartable.cli("start", "--head", "--port", str(free_port()), "--storage",
                           restartable.storage, env=env, check=False)  # type: ignore[attr-defined]
    assert proc.returncode == 1
    assert "belongs to a cluster with another token" in proc.stderr
