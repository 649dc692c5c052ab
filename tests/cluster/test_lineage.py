"""Objects lost with their node are rebuilt by re-running the tasks that made them (lineage)."""

from __future__ import annotations

import numpy as np
import pytest

import swarm
from swarm.exceptions import ObjectLostError
from swarm.util.scheduling_strategies import NodeAffinitySchedulingStrategy

TIMEOUT = 60


@swarm.remote(num_returns=2)
def make(n: int, value: float):
    return np.full(n, value), swarm.get_runtime_context().get_node_id()


@swarm.remote
def double(a):
    return a * 2


@swarm.remote
def put_on_node():
    return [swarm.put(np.ones(200_000))]


def test_lost_task_outputs_are_rebuilt_through_lineage(driver):
    b = driver.node_id("b")
    on_b = NodeAffinitySchedulingStrategy(b, soft=True)
    arr, where = make.options(scheduling_strategy=on_b).remote(500_000, 3.0)
    chained = double.options(scheduling_strategy=on_b).remote(arr)   # its input also lives on B
    assert swarm.get(where, timeout=TIMEOUT) == b
    swarm.wait([chained], timeout=TIMEOUT)
    driver.kill_node("b")
    # both are made again elsewhere: the second from the first (recursively)
    np.testing.assert_array_equal(swarm.get(chained, timeout=TIMEOUT), np.full(500_000, 6.0))
    np.testing.assert_array_equal(swarm.get(arr, timeout=TIMEOUT), np.full(500_000, 3.0))
    assert swarm.get(where, timeout=TIMEOUT) != b


def test_lost_put_object_gives_object_lost_error(driver):
    c = driver.node_id("c")
    inner = swarm.get(put_on_node.options(scheduling_strategy=NodeAffinitySchedulingStrategy(c, soft=False))
                      .remote(), timeout=TIMEOUT)[0]
    driver.kill_node("c")
    with pytest.raises((ObjectLostError, swarm.exceptions.OwnerDiedError)):
        swarm.get(inner, timeout=TIMEOUT)
