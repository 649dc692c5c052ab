"""Placement groups on one node: reservation, scheduling into bundles, strategies, removal."""

from __future__ import annotations

import os

import swarm
from swarm.util.placement_group import placement_group, remove_placement_group
from swarm.util.scheduling_strategies import PlacementGroupSchedulingStrategy

TIMEOUT = 60


@swarm.remote
def where():
    return os.getpid()


@swarm.remote
class Pinger:
    def ping(self):
        return "pong"


def test_bundles_are_reserved_and_used(cluster):
    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="PACK")
    assert swarm.get(pg.ready(), timeout=TIMEOUT) is True
    avail = swarm.available_resources()
    assert avail.get("CPU", 0) <= 0.0 + 1e-9 or "CPU" not in avail   # both CPUs set aside
    assert swarm.get(where.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 0)).remote(),
                     timeout=TIMEOUT)
    assert swarm.get(where.options(placement_group=pg, placement_group_bundle_index=1).remote(),
                     timeout=TIMEOUT)
    a = Pinger.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 0)).remote()
    assert swarm.get(a.ping.remote(), timeout=TIMEOUT) == "pong"
    swarm.kill(a)
    remove_placement_group(pg)
    import time
    deadline = time.monotonic() + 10
    while swarm.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any("_group_" in k for k in swarm.cluster_resources())


def test_infeasible_strict_spread_is_not_ready(cluster):
    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")   # one node only
    assert pg.wait(1) is False
    remove_placement_group(pg)


def test_bad_bundles_are_refused(cluster):
    import pytest
    with pytest.raises(ValueError):
        placement_group([], strategy="PACK")
    with pytest.raises(ValueError):
        placement_group([{"CPU": 1}], strategy="NOPE")
