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

import pytest
from cluster_util import Cluster, cluster_in

import swarm


@pytest.fixture(scope="module")
def swarm_cluster(tmp_path_factory: pytest.TempPathFactory):
    with cluster_in(tmp_path_factory.mktemp("swarm_cluster")) as cluster:
        cluster.start_node("head")
        cluster.start_node("b")
        cluster.start_node("c")
        swarm.init(address=cluster.head_address)
        cluster.wait_alive(["head", "b", "c"])
        yield cluster


@pytest.fixture
def driver(swarm_cluster: Cluster) -> Cluster:
    """The cluster, with this process attached as a driver (re-attached if a test detached it)."""
    swarm_cluster.attach()
    yield swarm_cluster
    swarm_cluster.attach()
