"""Which replica takes the next request: power of two choices on in-flight counts.

A plain class with no I/O: the router (``_router.py``) feeds it replica-set updates and request
starts/ends, and asks it for a replica. Only replicas below ``max_ongoing_requests`` in-flight requests
(from this router) are candidates; of two picked at random, the one with fewer in-flight wins. No
candidate means the request waits in the router's queue.
"""

from __future__ import annotations

import random
from typing import Any, Generic, Hashable, TypeVar

K = TypeVar("K", bound=Hashable)


class ReplicaSet(Generic[K]):
    def __init__(self, max_ongoing_requests: int = 5, rng: random.Random | None = None) -> None:
        self.max_ongoing_requests = max_ongoing_requests
        self.replicas: dict[K, Any] = {}     # id -> whatever the router sends requests to
        self.in_flight: dict[K, int] = {}    # includes replicas that left the set with requests pending
        self.dead: set[K] = set()            # seen dead here; ignored in updates until the controller agrees
        self._rng = rng or random.Random()

    def update(self, replicas: dict[K, Any]) -> None:
        """The controller's current set: replicas we saw die stay out until it drops them too."""
        self.dead &= set(replicas)
        self.replicas = {k: v for k, v in replicas.items() if k not in self.dead}
        for k in self.replicas:
            self.in_flight.setdefault(k, 0)

    def mark_dead(self, key: K) -> None:
        if key in self.replicas:
            del self.replicas[key]
            self.dead.add(key)

    def choose(self) -> K | None:
        limit = self.max_ongoing_requests
        candidates = [k for k in self.replicas if self.in_flight.get(k, 0) < limit]
        if not candidates:
            return None
        if len(candidates) == 1:
            return candidates[0]
        a, b = self._rng.sample(candidates, 2)
        return a if self.in_flight[a] <= self.in_flight[b] else b

    def started(self, key: K) -> None:
        self.in_flight[key] = self.in_flight.get(key, 0) + 1

    def finished(self, key: K) -> None:
        n = self.in_flight.get(key, 0) - 1
        if n <= 0 and key not in self.replicas:
            self.in_flight.pop(key, None)
        else:
            self.in_flight[key] = max(n, 0)

    def total_in_flight(self) -> int:
        return sum(self.in_flight.values())

    def __len__(self) -> int:
        return len(self.replicas)
