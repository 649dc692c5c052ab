"""Actors that block in get on each other in a cycle get DeadlockError naming the cycle."""

from __future__ import annotations

import pytest

import swarm
from swarm.exceptions import DeadlockError


@swarm.remote(num_cpus=0)
class Peer:
    def set(self, other):
        self.other = other

    def ping(self, depth=0):
        if depth >= 2:
            return "done"
        return swarm.get(self.other.ping.remote(depth + 1))


def test_actor_cycle_is_reported(cluster):
    a, b = Peer.remote(), Peer.remote()
    swarm.get([a.set.remote(b), b.set.remote(a)], timeout=60)
    with pytest.raises(DeadlockError) as info:
        swarm.get(a.ping.remote(), timeout=60)
    assert "cycle" in str(info.value) and "Peer" in str(info.value)
    swarm.kill(a)
    swarm.kill(b)
