"""A real 3-node cluster on loopback for the cluster tests, started with the ``swarm`` CLI.

    head  127.0.0.1  1 CPU                 (the driver of these tests attaches here)
    B     127.0.0.2  2 CPUs, {"b": 1}
    C     127.0.0.3  2 CPUs, {"c": 1}

Every node is a separate node-manager process with its own shared-memory arena, so objects that move
between nodes really go over TCP. The cluster lives in a per-session ``SWARM_TEMP_DIR`` so it never
meets another test run's nodes, and is stopped with ``swarm stop`` at the end; teardown then checks
that no process of it (node managers and their workers) is left.
"""

from __future__ import annotations

import os
import time

import pytest
from cluster_util import SRC, Cluster, alive, free_port

import swarm
from swarm import _config


@pytest.fixture(scope="module")
def swarm_cluster(tmp_path_factory: pytest.TempPathFactory):
    temp_dir = tmp_path_factory.mktemp("swarm_cluster")
    saved_env = {k: os.environ.get(k) for k in ("SWARM_TEMP_DIR", "SWARM_TOKEN", "SWARM_TOKEN_FILE",
                                                 "SWARM_ADDRESS")}
    saved_temp = _config.CONFIG.temp_dir
    if swarm.is_initialized():      # a local cluster of other tests: not ours to keep attached
        swarm.shutdown()
    for k in saved_env:
        os.environ.pop(k, None)
    os.environ["SWARM_TEMP_DIR"] = str(temp_dir)
    _config.CONFIG.temp_dir = str(temp_dir)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, env.get("PYTHONPATH")) if p)
    cluster = Cluster(temp_dir=temp_dir, env=env, head_port=free_port())
    try:
        cluster.start_node("head")
        cluster.start_node("b")
        cluster.start_node("c")
        swarm.init(address=cluster.head_address)
        cluster.wait_alive(["head", "b", "c"])
        yield cluster
    finally:
        try:
            swarm.shutdown()
        finally:
            cluster.record_pids()
            stop = cluster.cli("stop", check=False)
            _config.CONFIG.temp_dir = saved_temp
            for k, v in saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    assert stop.returncode == 0, stop.stderr
    deadline = time.monotonic() + 10
    while any(alive(p) for p in cluster.pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = sorted(p for p in cluster.pids if alive(p))
    assert not left, f"processes of the test cluster left after `swarm stop`: {left}"
    assert not list((temp_dir / "nodes").glob("*.json")), "node files left after `swarm stop`"


@pytest.fixture
def driver(swarm_cluster: Cluster) -> Cluster:
    """The cluster, with this process attached as a driver (re-attached if a test detached it)."""
    swarm_cluster.attach()
    yield swarm_cluster
    swarm_cluster.attach()
