"""swarm demo: four small real workloads on a local cluster, with what they did and how fast.

  (a) the seed idiom: records processed by a remote function, consumed as they finish with a
      `wait` loop, with a progress bar;
  (b) a CPU-bound batch (pure-Python prime counting) run serially, then as tasks: the speed-up;
  (c) a large-array fan-out: a ~200 MB numpy array `put` once and shared zero-copy by N tasks;
  (d) a chain of dependent tasks, futures passed as arguments;
  (e) what the cluster recorded about all of it (the state API behind `swarm summary` and the dashboard).

Every result is checked; the exit status is 1 if any is wrong. Takes well under 30 s on 2 cores.

Run:  python examples/demo.py        (SWARM_BENCH_IMPL=ray runs the same program on Ray)
"""

from __future__ import annotations

import os
import random
import sys
import time
from typing import Any

import numpy as np

if os.environ.get("SWARM_BENCH_IMPL", "swarm") == "ray":
    import ray as swarm  # side-by-side comparison only
else:
    import swarm

TIMEOUT_S = 120.0
failures: list[str] = []


def check(ok: bool, what: str) -> None:
    if not ok:
        failures.append(what)
        print(f"    WRONG: {what}")


def header(title: str) -> None:
    print(f"\n{title}")


# --------------------------------------------------------------------------- (a) seed idiom


@swarm.remote
def slow(record: dict[str, Any]) -> dict[str, Any]:
    """Pretend to call a slow service for one record: 30-120 ms, then return a summary."""
    time.sleep(record["cost_ms"] / 1000.0)
    words = record["text"].split()
    return {"id": record["id"], "words": len(words), "longest": max(words, key=len), "pid": os.getpid()}


def make_records(n: int) -> list[dict[str, Any]]:
    rng = random.Random(42)
    vocab = "swarm task future object store worker node driver shared memory zero copy".split()
    return [{"id": i, "text": " ".join(rng.choices(vocab, k=rng.randint(3, 12))),
             "cost_ms": rng.uniform(30, 120)} for i in range(n)]


def draw_progress(done: int, total: int, started: float, width: int = 32) -> None:
    filled = width * done // total
    bar = "#" * filled + "." * (width - filled)
    sys.stderr.write(f"\r    [{bar}] {done:>3}/{total}  {time.perf_counter() - started:5.2f} s")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def section_seed_idiom() -> None:
    header("(a) 60 records through a slow remote function, consumed as they finish (wait loop)")
    records = make_records(60)
    t0 = time.perf_counter()
    pending = [slow.remote(r) for r in records]
    results: dict[int, dict[str, Any]] = {}
    draw_progress(0, len(records), t0)
    while pending:
        ready, pending = swarm.wait(pending, num_returns=1, timeout=TIMEOUT_S)
        check(len(ready) == 1, "wait() timed out")
        out = swarm.get(ready[0], timeout=TIMEOUT_S)
        results[out["id"]] = out
        draw_progress(len(results), len(records), t0)
    took = time.perf_counter() - t0
    serial = sum(r["cost_ms"] for r in records) / 1000.0
    for r in records:
        got = results.get(r["id"])
        check(got is not None and got["words"] == len(r["text"].split()), f"record {r['id']}")
    pids = {r["pid"] for r in results.values()}
    print(f"    {len(results)} records in {took:.2f} s (one at a time: {serial:.2f} s), "
          f"handled by {len(pids)} worker processes")


# --------------------------------------------------------------------------- (b) CPU-bound


def count_primes_local(lo: int, hi: int) -> int:
    """Primes in [lo, hi) by trial division: deliberately pure-Python CPU work."""
    count = 0
    for k in range(max(lo, 2), hi):
        if k % 2 == 0:
            count += k == 2
            continue
        d = 3
        while d * d <= k:
            if k % d == 0:
                break
            d += 2
        else:
            count += 1
    return count


count_primes = swarm.remote(count_primes_local)


def primes_below_sieve(n: int) -> int:
    """The same count by a numpy sieve, as an independent check."""
    sieve = np.ones(n, dtype=bool)
    sieve[:2] = False
    for p in range(2, int(n**0.5) + 1):
        if sieve[p]:
            sieve[p * p::p] = False
    return int(sieve.sum())


def section_cpu_bound(num_cpus: int) -> None:
    limit, chunks = 1_200_000, 24
    header(f"(b) count primes below {limit:,} in {chunks} ranges: serially, then as tasks")
    bounds = [(i * limit // chunks, (i + 1) * limit // chunks) for i in range(chunks)]
    t0 = time.perf_counter()
    serial = sum(count_primes_local(lo, hi) for lo, hi in bounds)
    serial_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    parallel = sum(swarm.get([count_primes.remote(lo, hi) for lo, hi in bounds], timeout=TIMEOUT_S))
    parallel_s = time.perf_counter() - t0
    expected = primes_below_sieve(limit)
    check(serial == expected and parallel == expected,
          f"prime counts serial={serial} tasks={parallel} sieve={expected}")
    print(f"    {parallel:,} primes; serial {serial_s:.2f} s, as tasks {parallel_s:.2f} s: "
          f"speed-up {serial_s / parallel_s:.2f}x on {num_cpus} CPUs")


# --------------------------------------------------------------------------- (c) large array


@swarm.remote
def slice_stats(arr: np.ndarray, lo: int, hi: int) -> tuple[int, float, float, bool]:
    part = arr[lo:hi]
    return lo, float(part.mean()), float(part.std()), not arr.flags.writeable


def section_large_array(num_tasks: int) -> None:
    n = 25_000_000  # float64: 200 MB
    arr = np.random.default_rng(0).standard_normal(n)
    size_mb = arr.nbytes / 1e6
    header(f"(c) a {size_mb:.0f} MB numpy array put once, shared by {num_tasks} tasks")
    t0 = time.perf_counter()
    ref = swarm.put(arr)
    put_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    bounds = [(i * n // num_tasks, (i + 1) * n // num_tasks) for i in range(num_tasks)]
    stats = swarm.get([slice_stats.remote(ref, lo, hi) for lo, hi in bounds], timeout=TIMEOUT_S)
    tasks_s = time.perf_counter() - t0
    for (lo, hi), (got_lo, mean, std, _) in zip(bounds, stats, strict=True):
        part = arr[lo:hi]
        check(got_lo == lo and np.isclose(mean, part.mean()) and np.isclose(std, part.std()),
              f"stats of slice [{lo}:{hi})")
    shared_in_tasks = sum(s[3] for s in stats)

    t0 = time.perf_counter()
    view = swarm.get(ref, timeout=TIMEOUT_S)
    get_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    arr.copy()
    copy_s = time.perf_counter() - t0
    check(view.shape == arr.shape and bool(view[-1] == arr[-1]), "get() returned a different array")
    zero_copy = not view.flags.writeable and get_s < copy_s / 10
    print(f"    put: {put_s:.2f} s ({size_mb / 1e3 / put_s:.1f} GB/s); "
          f"{num_tasks} tasks computed mean/std of their slice in {tasks_s:.2f} s")
    print(f"    get(ref): {get_s * 1e3:.2f} ms for {size_mb:.0f} MB, "
          f"read-only view: {'yes' if not view.flags.writeable else 'no'} "
          f"(a local copy takes {copy_s * 1e3:.0f} ms)")
    print(f"    tasks that received a read-only shared view: {shared_in_tasks}/{num_tasks}")
    print("    => the array was shared zero-copy" if zero_copy
          else "    => the array was copied (not zero-copy)")


# --------------------------------------------------------------------------- (d) chain


@swarm.remote
def load(n: int) -> list[int]:
    return list(range(n))


@swarm.remote
def square_all(xs: list[int]) -> list[int]:
    return [x * x for x in xs]


@swarm.remote
def total(xs: list[int]) -> int:
    return sum(xs)


@swarm.remote
def add(a: int, b: int) -> int:
    return a + b


@swarm.remote
def inc(x: int) -> int:
    return x + 1


def section_chain(links: int = 20) -> None:
    header("(d) dependent tasks: futures passed as arguments, only the final value fetched")
    t0 = time.perf_counter()
    data = load.remote(1000)                                    # [0, 1, ..., 999]
    combined = add.remote(total.remote(square_all.remote(data)), total.remote(data))
    for _ in range(links):
        combined = inc.remote(combined)                         # each link waits for the last
    result = swarm.get(combined, timeout=TIMEOUT_S)
    took = time.perf_counter() - t0
    expected = sum(x * x for x in range(1000)) + sum(range(1000)) + links
    check(result == expected, f"chain result {result} != {expected}")
    print(f"    load -> square_all -> total, total -> add -> {links} x inc: {result:,} "
          f"in {took * 1e3:.0f} ms ({links + 5} tasks)")


# --------------------------------------------------------------------------- (e) what the cluster saw


def section_what_ran() -> None:
    """The cluster's own record of the work above: the same data as `swarm summary tasks`, the
    dashboard and `swarm.timeline()`."""
    header("(e) what the cluster recorded (swarm.util.state — also `swarm summary tasks`, the dashboard)")
    from swarm.util import state
    summary = state.summarize_tasks()["summary"]
    finished = sum(by_state.get("FINISHED", 0) for by_state in summary.values())
    for name, by_state in sorted(summary.items(), key=lambda kv: -sum(kv[1].values())):
        counts = ", ".join(f"{n:,} {st.lower()}" for st, n in sorted(by_state.items()))
        print(f"    {name:<24} {counts}")
    slowest = max((r for r in state.list_tasks(filters=[("state", "=", "FINISHED")], limit=10_000)
                   if r.get("duration_s") is not None), key=lambda r: r["duration_s"], default=None)
    if slowest is not None:
        print(f"    slowest: {slowest['name']} task {slowest['task_id'][:12]}… "
              f"({slowest['duration_s'] * 1e3:.0f} ms in worker pid {slowest['pid']})")
    check(finished > 0, "the cluster recorded no finished task")


# --------------------------------------------------------------------------- main


def main() -> int:
    started = time.perf_counter()
    swarm.init()
    try:
        num_cpus = int(swarm.cluster_resources().get("CPU", 1))
        impl = swarm.__name__
        print(f"{impl} {getattr(swarm, '__version__', '')}: local cluster with {num_cpus} CPUs "
              f"(init {time.perf_counter() - started:.2f} s)")
        section_seed_idiom()
        section_cpu_bound(num_cpus)
        section_large_array(num_tasks=max(8, 2 * num_cpus))
        section_chain()
        if swarm.__name__ == "swarm":
            section_what_ran()
    finally:
        swarm.shutdown()
    print(f"\ntotal {time.perf_counter() - started:.1f} s; ", end="")
    if failures:
        print(f"{len(failures)} WRONG result(s): " + "; ".join(failures))
        return 1
    print("all results correct")
    return 0


if __name__ == "__main__":
    sys.exit(main())
