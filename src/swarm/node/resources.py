"""Lease scheduling on one node: which request gets a worker with which resources, and when.

Pure state (no sockets, no processes): the node manager feeds it events and carries out what it
returns. A *lease* is one worker holding a resource shape for one owner until the owner returns it.

    request(req) ──▶ granted now? ──yes──▶ Grant(req, worker)          (an idle worker was free)
                         │ no, but fits the node ──▶ queued (+ StartWorker if the pool is short)
                         │ never fits ──▶ Infeasible(req, message)
    release / unblock / worker ready ──▶ more grants from the queue, in arrival order
"""

from __future__ import annotations

import collections
import dataclasses
import time
from typing import Iterable

EPS = 1e-9


@dataclasses.dataclass
class LeaseRequest:
    req_id: int
    client: object                  # opaque: who asked (the node manager's connection)
    shape: dict[str, float]
    fn_name: str = ""
    strategy: dict | None = None
    created: float = dataclasses.field(default_factory=time.monotonic)   # for the scheduling latency


@dataclasses.dataclass
class Grant:
    request: LeaseRequest
    worker_id: bytes
    gpu_ids: list[int]


@dataclasses.dataclass
class Infeasible:
    request: LeaseRequest
    message: str


@dataclasses.dataclass
class StartWorker:
    pass


def format_resources(res: dict[str, float]) -> str:
    parts = []
    for k in sorted(res):
        v = res[k]
        parts.append(f"{v:g} {k}")
    return ", ".join(parts) if parts else "nothing"


class LeaseScheduler:
    def __init__(self, total: dict[str, float], max_workers: int | None = None) -> None:
        self.total = {k: float(v) for k, v in total.items() if v > 0}
        self.available = dict(self.total)
        self.gpu_free = [1.0] * int(self.total.get("GPU", 0))   # free fraction of each GPU
        self.queue: collections.deque[LeaseRequest] = collections.deque()
        self.idle_workers: list[bytes] = []            # LIFO: the most recently used is warmest
        self.leases: dict[bytes, tuple[LeaseRequest, list[int]]] = {}
        self.blocked: set[bytes] = set()
        self.starting = 0
        self.max_workers = max_workers
        self.bundles: dict[str, list[tuple[int, dict[str, float]]]] = {}

    # -- events -----------------------------------------------------------------------------------
    def request(self, req: LeaseRequest) -> list:
        missing = [k for k, v in req.shape.items() if v > self.total.get(k, 0.0) + EPS]
        if missing:
            return [Infeasible(req, (
                f"cannot schedule {req.fn_name or 'task'}: it needs {format_resources(req.shape)} "
                f"but the node has {format_resources(self.total)} in total; lower the request "
                f"(.options(num_cpus=..., resources=...)) or start swarm with more "
                f"({', '.join(missing)})"))]
        self.queue.append(req)
        return self._dispatch()

    def cancel(self, client: object, req_ids: Iterable[int]) -> None:
        ids = set(req_ids)
        self.queue = collections.deque(r for r in self.queue if not (r.client is client and r.req_id in ids))

    def worker_ready(self, worker_id: bytes) -> list:
        self.starting = max(0, self.starting - 1)
        self.idle_workers.append(worker_id)
        return self._dispatch()

    def release(self, worker_id: bytes) -> list:
        """The lease holder returned the worker; it is idle again."""
        if self._free_lease(worker_id):
            self.idle_workers.append(worker_id)
        return self._dispatch()

    def worker_died(self, worker_id: bytes) -> tuple[LeaseRequest | None, list]:
        """Drop the worker; returns the lease it held (if any) and the resulting actions."""
        lease = self.leases.get(worker_id)
        self._free_lease(worker_id)
        if worker_id in self.idle_workers:
            self.idle_workers.remove(worker_id)
        return (lease[0] if lease else None), self._dispatch()

    def client_gone(self, client: object) -> list[bytes]:
        """A lease holder disconnected: its queued requests go; returns the workers it held."""
        self.queue = collections.deque(r for r in self.queue if r.client is not client)
        return [w for w, (r, _) in self.leases.items() if r.client is client]

    def block(self, worker_id: bytes) -> list:
        """A leased worker waits in `get`: its CPUs go back to the pool until it unblocks."""
        lease = self.leases.get(worker_id)
        if lease is None or worker_id in self.blocked:
            return []
        self.blocked.add(worker_id)
        cpu = lease[0].shape.get("CPU", 0.0)
        if cpu:
            self.available["CPU"] = self.available.get("CPU", 0.0) + cpu
        return self._dispatch()

    def unblock(self, worker_id: bytes) -> None:
        """Take the CPUs back, even past zero: a briefly oversubscribed node beats a deadlock."""
        lease = self.leases.get(worker_id)
        if lease is None or worker_id not in self.blocked:
            return
        self.blocked.discard(worker_id)
        cpu = lease[0].shape.get("CPU", 0.0)
        if cpu:
            self.available["CPU"] = self.available.get("CPU", 0.0) - cpu

    # -- internals --------------------------------------------------------------------------------
    def _free_lease(self, worker_id: bytes) -> bool:
        lease = self.leases.pop(worker_id, None)
        if lease is None:
            return False
        req, gpus = lease
        was_blocked = worker_id in self.blocked
        self.blocked.discard(worker_id)
        for k, v in req.shape.items():
            if k == "CPU" and was_blocked:
                continue
            self.available[k] = self.available.get(k, 0.0) + v
        share = req.shape.get("GPU", 0.0)
        for g in gpus:
            self.gpu_free[g] = min(1.0, self.gpu_free[g] + (share if share < 1 else 1.0))
        return True

    @property
    def free_gpus(self) -> list[int]:
        """Ids of the GPUs no lease uses any part of."""
        return [g for g, free in enumerate(self.gpu_free) if free >= 1.0 - EPS]

    def _take_gpus(self, amount: float) -> list[int]:
        """Whole GPUs for amount >= 1; for a fraction, one GPU with that much left (shared, as Ray)."""
        if amount <= 0:
            return []
        if amount < 1:
            for g, free in enumerate(self.gpu_free):
                if free + EPS >= amount:
                    self.gpu_free[g] = free - amount
                    return [g]
            return []
        ids = [g for g, free in enumerate(self.gpu_free) if free >= 1.0 - EPS][:int(amount + 0.999999)]
        for g in ids:
            self.gpu_free[g] = 0.0
        return ids

    def _fits(self, shape: dict[str, float], reserved: dict[str, float] | None = None) -> bool:
        avail = self.available
        if reserved:
            return all(avail.get(k, 0.0) - reserved.get(k, 0.0) + EPS >= v for k, v in shape.items())
        return all(avail.get(k, 0.0) + EPS >= v for k, v in shape.items())

    def _dispatch(self) -> list:
        actions: list = []
        waiting_for_workers = 0
        remaining: collections.deque[LeaseRequest] = collections.deque()
        reserved: dict[str, float] = {}   # held for requests that wait for a worker to start
        while self.queue:
            req = self.queue.popleft()
            if not self._fits(req.shape, reserved):
                remaining.append(req)
                continue
            if not self.idle_workers:
                waiting_for_workers += 1
                for k, v in req.shape.items():
                    reserved[k] = reserved.get(k, 0.0) + v
                remaining.append(req)
                continue
            worker_id = self.idle_workers.pop()
            for k, v in req.shape.items():
                self.available[k] = self.available.get(k, 0.0) - v
            gpus = self._take_gpus(req.shape.get("GPU", 0.0))
            self.leases[worker_id] = (req, gpus)
            actions.append(Grant(req, worker_id, gpus))
        self.queue = remaining
        short = waiting_for_workers - self.starting
        if self.max_workers is not None:
            total_workers = len(self.leases) + len(self.idle_workers) + self.starting
            short = min(short, self.max_workers - total_workers)
        for _ in range(max(0, short)):
            self.starting += 1
            actions.append(StartWorker())
        return actions

    def reserve_bundle(self, name_prefix: str, index: int, shape: dict[str, float]) -> bool:
        """Set ``shape`` aside for a placement group bundle; tasks use it through the resources
        ``<res>_group_<index>_<pg>`` and ``<res>_group_<pg>`` that only this node then has."""
        if not self._fits(shape):
            return False
        for k, v in shape.items():
            self.available[k] -= v
            for name in (f"{k}_group_{index}_{name_prefix}", f"{k}_group_{name_prefix}"):
                self.total[name] = self.total.get(name, 0.0) + v
                self.available[name] = self.available.get(name, 0.0) + v
        self.bundles.setdefault(name_prefix, []).append((index, shape))
        return True

    def release_bundles(self, name_prefix: str) -> list:
        for index, shape in self.bundles.pop(name_prefix, []):
            for k, v in shape.items():
                self.available[k] = self.available.get(k, 0.0) + v
                for name in (f"{k}_group_{index}_{name_prefix}", f"{k}_group_{name_prefix}"):
                    self.total[name] = self.total.get(name, 0.0) - v
                    self.available[name] = self.available.get(name, 0.0) - v
                    if self.total[name] <= EPS:
                        self.total.pop(name, None)
                        self.available.pop(name, None)
        return self._dispatch()

    def demand(self) -> list[dict[str, float]]:
        return [r.shape for r in self.queue]
