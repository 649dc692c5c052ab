"""Actor workloads of ``swarm microbenchmark`` (registered in ``microbenchmark.WORKLOADS``).

    actor_sync        1,000 calls on one actor, one at a time                       calls/s
    actor_async       10,000 calls on one actor submitted, then gathered            calls/s
    actor_concurrent  10,000 calls on a threaded actor (max_concurrency=4)          calls/s
    async_actor       10,000 calls of an ``async def`` method, gathered             calls/s
    n_n_actor_calls   2 caller actors x 2 target actors, 2,000 calls each pair      calls/s
    actor_create      actors started (constructor run, first call answered) per s   actors/s
"""

from __future__ import annotations

import time
from typing import Any

from swarm.microbenchmark import CALL_TIMEOUT_S, Config, Result, swarm, timed


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def incr(self) -> int:
        self.n += 1
        return self.n

    def noop(self) -> None:
        return None


class AsyncCounter:
    async def noop(self) -> None:
        return None


class Caller:
    def __init__(self, targets: list) -> None:
        self.targets = targets

    def call_all(self, n: int) -> int:
        refs = [t.noop.remote() for _ in range(n) for t in self.targets]
        swarm.get(refs, timeout=CALL_TIMEOUT_S)
        return len(refs)


def _actor(cls: type, **options: Any) -> Any:
    handle = swarm.remote(cls).options(**options).remote() if options else swarm.remote(cls).remote()
    swarm.get([handle.noop.remote() for _ in range(20)], timeout=CALL_TIMEOUT_S)
    return handle


def bench_actor_sync(cfg: Config) -> Result:
    a, n = _actor(Counter), cfg.pick(1000, 300)

    def run() -> None:
        for _ in range(n):
            swarm.get(a.noop.remote(), timeout=CALL_TIMEOUT_S)

    samples = [n / timed(run) for _ in range(cfg.pick(5, 3))]
    swarm.kill(a)
    return Result("actor_sync", "calls/s", samples, f"{n} x (call, get) on one actor")


def _gathered(name: str, cfg: Config, handle: Any, note: str) -> Result:
    n = cfg.pick(10_000, 2_000)

    def run() -> None:
        swarm.get([handle.noop.remote() for _ in range(n)], timeout=CALL_TIMEOUT_S)

    samples = [n / timed(run) for _ in range(cfg.pick(5, 3))]
    swarm.kill(handle)
    return Result(name, "calls/s", samples, f"{n} calls submitted, then get(all); {note}")


def bench_actor_async(cfg: Config) -> Result:
    return _gathered("actor_async", cfg, _actor(Counter), "one actor")


def bench_actor_concurrent(cfg: Config) -> Result:
    handle = _actor(Counter, max_concurrency=4)
    return _gathered("actor_concurrent", cfg, handle, "threaded, max_concurrency=4")


def bench_async_actor(cfg: Config) -> Result:
    return _gathered("async_actor", cfg, _actor(AsyncCounter), "async def methods")


def bench_n_n_actor_calls(cfg: Config) -> Result:
    targets = [_actor(Counter, num_cpus=0) for _ in range(2)]
    callers = [swarm.remote(Caller).options(num_cpus=0).remote(targets) for _ in range(2)]
    n = cfg.pick(2_000, 500)
    swarm.get([c.call_all.remote(10) for c in callers], timeout=CALL_TIMEOUT_S)

    def run() -> None:
        swarm.get([c.call_all.remote(n) for c in callers], timeout=CALL_TIMEOUT_S)

    total = n * 2 * 2
    samples = [total / timed(run) for _ in range(cfg.pick(5, 3))]
    for h in targets + callers:
        swarm.kill(h)
    return Result("n_n_actor_calls", "calls/s", samples, f"2 caller actors x 2 actors, {total:,} calls")


def bench_actor_create(cfg: Config) -> Result:
    n = cfg.pick(100, 30)
    cls = swarm.remote(Counter).options(num_cpus=0)

    def run() -> None:
        handles = [cls.remote() for _ in range(n)]
        swarm.get([h.noop.remote() for h in handles], timeout=CALL_TIMEOUT_S)
        for h in handles:
            swarm.kill(h)

    samples = [n / timed(run) for _ in range(cfg.pick(3, 2))]
    time.sleep(0.5)
    return Result("actor_create", "actors/s", samples, f"{n} actors created, first call answered, killed")


WORKLOADS = {
    "actor_sync": bench_actor_sync,
    "actor_async": bench_actor_async,
    "actor_concurrent": bench_actor_concurrent,
    "async_actor": bench_async_actor,
    "n_n_actor_calls": bench_n_n_actor_calls,
    "actor_create": bench_actor_create,
}
