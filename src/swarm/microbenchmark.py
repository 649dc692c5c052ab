"""Microbenchmarks of swarm's core API (Ray's core API, name for name).

Each workload drives one public call pattern and prints one line: the median of several runs,
the min .. max range, the unit, and a note.

    tasks_sync         submit one no-op task, get it, repeat                       tasks/s
    tasks_async        submit 10,000 no-op tasks, then get them all                 tasks/s
    tasks_wait_loop    1,000 tasks sleeping U(0, 2) ms consumed one at a time with
                       wait(refs, num_returns=1) + get (note gives the ideal time)  s
    chain              1,000 tasks, each taking the previous ref as its argument    s
    put_small          put(int)                                                     ops/s
    get_small          get of a small put ref                                       ops/s
    put_large          put of a 100 MB float64 numpy array                          GB/s
    get_large          get of that array; checks it is read-only and whether the
                       get is zero-copy (O(1), compared with a local memcpy)        GB/s
    large_arg_fanout   put one 100 MB array, pass the ref to 10 tasks summing it     s
    cpu_parallel       200 tasks of ~10 ms pure-Python work (calibrated in the
                       driver); (serial time / num_cpus) / measured time            efficiency
    startup            fresh `python -c` process start to first task result          s
    idle_memory        fresh process: init(), sleep 2 s, RSS (USS, PSS) of the
                       driver and all its descendant processes                      MB
    tasks_million      1,000,000 no-op tasks submitted as fast as possible, drained
                       with wait() in chunks; peak RSS of driver and node sampled
                       every 100 ms                                                 tasks/s
    pool_map_small     10,000 trivial items through swarm.util.multiprocessing's
                       Pool.map, beside the standard library's multiprocessing.Pool
                       (same processes count, both pools warm, runs alternated);
                       note gives both throughputs and their ratio                  items/s

Actor workloads (actor_sync, actor_async, actor_concurrent, async_actor, n_n_actor_calls,
actor_create) are in ``swarm/bench_actors.py``; cluster workloads (cluster_tasks_async,
transfer_gbps, node_failure_recovery_s: three nodes on loopback) in ``swarm/bench_cluster.py``.

How: the in-process workloads share one local cluster (``swarm.init(num_cpus=...)``) started on
first use; ``startup`` and ``idle_memory`` run fresh Python subprocesses (and the shared cluster
is shut down while they run). Durations come from ``time.perf_counter`` (``time.monotonic``
where a time is compared across processes), medians from ``statistics``, memory from psutil.
``tasks_million`` only runs in the full (non ``--quick``) suite or when named in ``--only``;
with ``--quick`` it submits 100,000 tasks.

Run::

    python -m swarm.microbenchmark [--quick] [--only a,b,c] [--json PATH] [--num-cpus N]

``SWARM_BENCH_IMPL=ray`` imports ``ray`` in place of ``swarm`` (same program, for side-by-side
comparison).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import platform
import random
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable

import psutil

IMPL = os.environ.get("SWARM_BENCH_IMPL", "swarm")
if IMPL == "ray":
    import ray as swarm  # type: ignore[no-redef]  # side-by-side comparison only
elif IMPL == "swarm":
    import swarm
else:
    raise ImportError(f"SWARM_BENCH_IMPL must be 'swarm' or 'ray', not {IMPL!r}")

#: no single call may wait longer than this; a hung runtime fails one workload, not the run
CALL_TIMEOUT_S = 300.0
#: the "large" object: a 100 MB float64 array
LARGE_BYTES = 100_000_000
MB = 1e6
GB = 1e9


# --------------------------------------------------------------------------- task functions
# Plain module-level functions, wrapped with swarm.remote() at use, so that they pickle by
# reference (swarm.microbenchmark.noop), not by value.


def noop() -> None:
    return None


def inc(x: int) -> int:
    return x + 1


def sleep_ms(ms: float) -> float:
    time.sleep(ms / 1000.0)
    return ms


def arr_sum(a: Any) -> float:
    return float(a.sum())


def burn(iterations: int) -> int:
    total = 0
    for i in range(iterations):
        total += i * i % 7
    return total


@functools.cache
def remote(fn: Callable[..., Any]) -> Any:
    """The remote-function handle of one of the task functions above (built once)."""
    return swarm.remote(fn)


# --------------------------------------------------------------------------- plumbing


@dataclasses.dataclass
class Config:
    quick: bool
    init_kwargs: dict[str, Any]
    num_cpus: int = 0  # of the running cluster, filled in before each in-process workload

    def pick(self, full: int, quick: int) -> int:
        return quick if self.quick else full


@dataclasses.dataclass
class Result:
    name: str
    unit: str = ""
    samples: list[float] = dataclasses.field(default_factory=list)
    note: str = ""
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    error: str | None = None
    wall_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if self.samples:
            out.update(median=statistics.median(self.samples), min=min(self.samples),
                       max=max(self.samples))
        return out


class Cluster:
    """The local cluster shared by the in-process workloads, started on first use."""

    def __init__(self, init_kwargs: dict[str, Any]) -> None:
        self.init_kwargs = init_kwargs
        self.up = False
        self.num_cpus = 0

    def ensure(self) -> int:
        if not self.up:
            swarm.init(**self.init_kwargs)
            self.up = True
            self.num_cpus = int(swarm.cluster_resources().get("CPU", 1))
            warm = [remote(noop).remote() for _ in range(4 * self.num_cpus)]
            swarm.get(warm, timeout=CALL_TIMEOUT_S)
        return self.num_cpus

    def stop(self) -> None:
        if self.up:
            self.up = False
            swarm.shutdown()


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def large_array() -> Any:
    import numpy as np

    return np.arange(LARGE_BYTES // 8, dtype=np.float64)


def expect(ok: bool, what: str) -> None:
    if not ok:
        raise AssertionError(what)


# --------------------------------------------------------------------------- tasks


def bench_tasks_sync(cfg: Config) -> Result:
    n, f = cfg.pick(1000, 200), remote(noop)

    def run() -> None:
        for _ in range(n):
            swarm.get(f.remote(), timeout=CALL_TIMEOUT_S)

    samples = [n / timed(run) for _ in range(cfg.pick(5, 3))]
    return Result("tasks_sync", "tasks/s", samples, f"{n} x (submit one no-op, get it)")


def bench_tasks_async(cfg: Config) -> Result:
    n, f = cfg.pick(10_000, 2_000), remote(noop)
    samples, submit_rates = [], []
    for _ in range(cfg.pick(5, 3)):
        t0 = time.perf_counter()
        refs = [f.remote() for _ in range(n)]
        t_submit = time.perf_counter() - t0
        swarm.get(refs, timeout=CALL_TIMEOUT_S)
        samples.append(n / (time.perf_counter() - t0))
        submit_rates.append(n / t_submit)
    submit = statistics.median(submit_rates)
    return Result("tasks_async", "tasks/s", samples,
                  f"{n} no-ops submitted then get(all); submit alone {fmt(submit)}/s",
                  {"submit_tasks_per_s": submit_rates})


def bench_tasks_wait_loop(cfg: Config) -> Result:
    n, f = cfg.pick(1000, 200), remote(sleep_ms)
    rng = random.Random(0)
    samples, ideals = [], []
    for _ in range(cfg.pick(3, 2)):
        delays = [rng.uniform(0.0, 2.0) for _ in range(n)]
        t0 = time.perf_counter()
        refs = [f.remote(d) for d in delays]
        total = 0.0
        while refs:
            ready, refs = swarm.wait(refs, num_returns=1, timeout=CALL_TIMEOUT_S)
            expect(len(ready) == 1, "wait() timed out")
            total += swarm.get(ready[0], timeout=CALL_TIMEOUT_S)
        samples.append(time.perf_counter() - t0)
        expect(abs(total - sum(delays)) < 1e-6, "wrong results")
        ideals.append(sum(delays) / 1000.0 / cfg.num_cpus)
    ideal = statistics.median(ideals)
    return Result("tasks_wait_loop", "s", samples,
                  f"{n} tasks of U(0,2) ms, wait(num_returns=1)+get; ideal {ideal:.3f} s "
                  f"on {cfg.num_cpus} CPUs", {"ideal_s": ideals})


def bench_chain(cfg: Config) -> Result:
    n, f = cfg.pick(1000, 200), remote(inc)

    def run() -> None:
        ref = f.remote(0)
        for _ in range(n - 1):
            ref = f.remote(ref)
        expect(swarm.get(ref, timeout=CALL_TIMEOUT_S) == n, "wrong chain result")

    samples = [timed(run) for _ in range(cfg.pick(3, 3))]
    per_link = statistics.median(samples) / n * 1000.0
    return Result("chain", "s", samples, f"{n} links inc.remote(prev); {per_link:.3f} ms/link")


# --------------------------------------------------------------------------- objects


def bench_put_small(cfg: Config) -> Result:
    n = cfg.pick(10_000, 2_000)

    def run() -> None:
        refs = [swarm.put(i) for i in range(n)]
        del refs

    samples = [n / timed(run) for _ in range(cfg.pick(5, 3))]
    return Result("put_small", "ops/s", samples, f"{n} x put(int)")


def bench_get_small(cfg: Config) -> Result:
    n = cfg.pick(10_000, 2_000)
    ref = swarm.put(12345)

    def run() -> None:
        for _ in range(n):
            swarm.get(ref)

    expect(swarm.get(ref) == 12345, "wrong value")
    samples = [n / timed(run) for _ in range(cfg.pick(5, 3))]
    return Result("get_small", "ops/s", samples, f"{n} x get(ref of a put int)")


def bench_put_large(cfg: Config) -> Result:
    arr = large_array()

    def one() -> float:
        t0 = time.perf_counter()
        ref = swarm.put(arr)
        dt = time.perf_counter() - t0
        del ref
        return dt

    samples = [arr.nbytes / GB / one() for _ in range(cfg.pick(5, 3))]
    return Result("put_large", "GB/s", samples, f"put of a {arr.nbytes / MB:.0f} MB float64 array")


def local_memcpy_s(arr: Any) -> float:
    import numpy as np

    dst = np.empty_like(arr)
    return statistics.median(timed(lambda: np.copyto(dst, arr)) for _ in range(3))


def bench_get_large(cfg: Config) -> Result:
    arr = large_array()
    ref = swarm.put(arr)
    times, read_only = [], True
    for _ in range(cfg.pick(10, 5)):
        t0 = time.perf_counter()
        got = swarm.get(ref, timeout=CALL_TIMEOUT_S)
        times.append(time.perf_counter() - t0)
        expect(got.shape == arr.shape and got[-1] == arr[-1] and got[12345] == arr[12345],
               "wrong contents")
        read_only = read_only and not got.flags.writeable
        del got
    del ref
    get_s, memcpy_s = statistics.median(times), local_memcpy_s(arr)
    zero_copy = get_s < memcpy_s / 10
    note = (f"read-only: {'yes' if read_only else 'NO'}; zero-copy: {'yes' if zero_copy else 'no'} "
            f"(get {get_s * 1000:.3f} ms vs memcpy {memcpy_s * 1000:.1f} ms)")
    return Result("get_large", "GB/s", [arr.nbytes / GB / t for t in times], note,
                  {"get_s": times, "memcpy_s": memcpy_s, "read_only": read_only,
                   "zero_copy": zero_copy})


def bench_large_arg_fanout(cfg: Config) -> Result:
    arr, f, fanout = large_array(), remote(arr_sum), 10
    local_sum_s = timed(lambda: arr.sum())
    expected = float(arr.sum())  # exact: integer-valued partial sums stay below 2**53

    def run() -> None:
        ref = swarm.put(arr)
        sums = swarm.get([f.remote(ref) for _ in range(fanout)], timeout=CALL_TIMEOUT_S)
        expect(all(s == expected for s in sums), "wrong sums")

    samples = [timed(run) for _ in range(cfg.pick(3, 2))]
    return Result("large_arg_fanout", "s", samples,
                  f"put {arr.nbytes / MB:.0f} MB once, {fanout} tasks sum it "
                  f"(one local sum {local_sum_s * 1000:.0f} ms)")


def calibrate_burn(target_s: float) -> int:
    """Iterations of burn() that take about target_s in this process."""
    k = 1000
    while True:
        t = timed(functools.partial(burn, k))
        if t >= 0.05:
            return max(1, round(k * target_s / t))
        k *= 2


def bench_cpu_parallel(cfg: Config) -> Result:
    n, f = cfg.pick(200, 100), remote(burn)
    iters = calibrate_burn(0.010)
    expected = burn(iters)
    # serial time = n x the median of single calls: robust to a background hiccup in the driver
    per_call = [timed(functools.partial(burn, iters)) for _ in range(min(n, 50))]
    serial_s = statistics.median(per_call) * n
    ideal_s = serial_s / cfg.num_cpus
    swarm.get([f.remote(1) for _ in range(2 * cfg.num_cpus)], timeout=CALL_TIMEOUT_S)  # warm-up
    times = []
    for _ in range(cfg.pick(3, 2)):
        t0 = time.perf_counter()
        out = swarm.get([f.remote(iters) for _ in range(n)], timeout=CALL_TIMEOUT_S)
        times.append(time.perf_counter() - t0)
        expect(all(v == expected for v in out), "wrong results")
    return Result("cpu_parallel", "eff", [ideal_s / t for t in times],
                  f"{n} x {serial_s / n * 1000:.1f} ms on {cfg.num_cpus} CPUs: "
                  f"{statistics.median(times):.2f} s (serial {serial_s:.2f} s, ideal {ideal_s:.2f} s)",
                  {"serial_s": serial_s, "parallel_s": times, "iterations": iters})


# --------------------------------------------------------------------------- subprocesses


def child_prelude(cfg: Config) -> str:
    """Source lines importing the implementation under test as `swarm` and starting it."""
    imp = "import ray as swarm" if IMPL == "ray" else "import swarm"
    args = ", ".join(f"{k}={v!r}" for k, v in cfg.init_kwargs.items())
    return f"{imp}\nswarm.init({args})\n"


def kill_group(proc: subprocess.Popen[Any]) -> None:
    """Kill a child started with start_new_session=True, and whatever it left in its group."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def run_child(code: str, timeout: float) -> str:
    """Run `python -c code`; return its stdout, raise with its stderr tail if it fails."""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        raise TimeoutError(f"child did not finish in {timeout:.0f} s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"child exited {proc.returncode}: {err.strip()[-500:]}")
    return out


STARTUP_CODE = """\
import time
t_start = time.monotonic()
{import_line}
t_import = time.monotonic()
{init_line}
t_init = time.monotonic()

@swarm.remote
def f():
    return 1

assert swarm.get(f.remote(), timeout={timeout}) == 1
t_first = time.monotonic()
print("SWARM_BENCH", t_start, t_import, t_init, t_first, flush=True)
swarm.shutdown()
"""


def bench_startup(cfg: Config) -> Result:
    import_line, init_line = child_prelude(cfg).splitlines()
    code = STARTUP_CODE.format(import_line=import_line, init_line=init_line, timeout=CALL_TIMEOUT_S)
    samples, phases = [], []
    for _ in range(cfg.pick(5, 2)):
        t0 = time.monotonic()  # CLOCK_MONOTONIC is system-wide: comparable with the child's
        out = run_child(code, timeout=CALL_TIMEOUT_S)
        line = next(ln for ln in out.splitlines() if ln.startswith("SWARM_BENCH "))
        t_start, t_import, t_init, t_first = map(float, line.split()[1:])
        samples.append(t_first - t0)
        phases.append({"interpreter_s": t_start - t0, "import_s": t_import - t_start,
                       "init_s": t_init - t_import, "first_task_s": t_first - t_init})
    med = {k: statistics.median(p[k] for p in phases) for k in phases[0]}
    note = (f"python {med['interpreter_s']:.2f} + import {med['import_s']:.2f} + "
            f"init {med['init_s']:.2f} + first task {med['first_task_s']:.2f} s")
    return Result("startup", "s", samples, note, {"phases": phases})


IDLE_CODE = """\
import sys, time
{prelude}
time.sleep({idle_s})
print("SWARM_BENCH_READY", flush=True)
sys.stdin.readline()
swarm.shutdown()
"""


def tree_memory(pid: int, full: bool = False) -> dict[str, float]:
    """RSS (and with full=True USS and PSS) in MB summed over pid and all its descendants."""
    root = psutil.Process(pid)
    totals = {"rss_mb": 0.0, "uss_mb": 0.0, "pss_mb": 0.0, "processes": 0.0}
    for p in [root, *root.children(recursive=True)]:
        try:
            mem = p.memory_full_info() if full else p.memory_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        totals["rss_mb"] += mem.rss / MB
        totals["uss_mb"] += getattr(mem, "uss", 0) / MB
        totals["pss_mb"] += getattr(mem, "pss", 0) / MB
        totals["processes"] += 1
    return totals


def wait_for_line(proc: subprocess.Popen[str], marker: str, timeout: float) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        readable, _, _ = select.select([proc.stdout], [], [], 0.5)
        if readable:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"child exited {proc.wait()} before it was ready")
            if line.strip() == marker:
                return
    raise TimeoutError(f"child not ready in {timeout:.0f} s")


def idle_memory_once(code: str) -> dict[str, float]:
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=err, text=True,
                                start_new_session=True)
        try:
            try:
                wait_for_line(proc, "SWARM_BENCH_READY", CALL_TIMEOUT_S)
            except RuntimeError as e:
                err.seek(0)
                raise RuntimeError(f"{e}: {err.read().strip()[-500:]}") from None
            mem = tree_memory(proc.pid, full=True)
            assert proc.stdin is not None
            proc.stdin.write("\n")
            proc.stdin.flush()
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                kill_group(proc)
    return mem


def bench_idle_memory(cfg: Config) -> Result:
    code = IDLE_CODE.format(prelude=child_prelude(cfg), idle_s=2.0)
    runs = [idle_memory_once(code) for _ in range(cfg.pick(3, 1))]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    note = (f"driver + {med['processes'] - 1:.0f} descendant processes after init + 2 s; "
            f"USS {med['uss_mb']:.0f} MB, PSS {med['pss_mb']:.0f} MB")
    return Result("idle_memory", "MB", [r["rss_mb"] for r in runs], note, {"runs": runs})


# --------------------------------------------------------------------------- scale


class PeakSampler:
    """Samples RSS of this process and of the node (it plus all descendants) every interval."""

    def __init__(self, interval_s: float = 0.1) -> None:
        self.interval_s = interval_s
        self.peak_driver_mb = 0.0
        self.peak_node_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while True:
            self.peak_driver_mb = max(self.peak_driver_mb, me.memory_info().rss / MB)
            self.peak_node_mb = max(self.peak_node_mb, tree_memory(me.pid)["rss_mb"])
            if self._stop.wait(self.interval_s):
                return

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def bench_tasks_million(cfg: Config) -> Result:
    n, chunk, f = cfg.pick(1_000_000, 100_000), 10_000, remote(noop)
    base = tree_memory(os.getpid())
    with PeakSampler() as peak:
        t0 = time.perf_counter()
        refs: list[Any] = [f.remote() for _ in range(n)]
        t_submit = time.perf_counter() - t0
        for i in range(0, n, chunk):
            part = refs[i:i + chunk]
            ready, rest = swarm.wait(part, num_returns=len(part), timeout=CALL_TIMEOUT_S)
            expect(not rest, f"wait() timed out with {len(rest)} of chunk {i // chunk} pending")
            refs[i:i + chunk] = [None] * len(part)  # release as we go
            del part, ready
        total = time.perf_counter() - t0
    note = (f"{n:,} no-ops, submit {fmt(n / t_submit)}/s; peak RSS driver "
            f"{peak.peak_driver_mb:.0f} MB, node {peak.peak_node_mb:.0f} MB "
            f"(before: {base['rss_mb']:.0f} MB)")
    return Result("tasks_million", "tasks/s", [n / total], note,
                  {"submit_s": t_submit, "total_s": total, "peak_driver_rss_mb": peak.peak_driver_mb,
                   "peak_node_rss_mb": peak.peak_node_mb, "node_rss_before_mb": base["rss_mb"]})


# --------------------------------------------------------------------------- drop-ins


def bench_pool_map_small(cfg: Config) -> Result:
    import multiprocessing

    if IMPL == "ray":
        from ray.util.multiprocessing import Pool
    else:
        from swarm.util.multiprocessing import Pool
    n, procs = 10_000, cfg.num_cpus
    items = list(range(n))
    expected = [x + 1 for x in items]
    # forkserver: the stdlib's workers are not forked from this multi-threaded process (the start
    # method only changes pool start-up, which is not timed)
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else None)

    def run(pool: Any) -> float:
        t0 = time.perf_counter()
        out = pool.map(inc, items)
        dt = time.perf_counter() - t0
        expect(out == expected, "wrong results")
        return n / dt

    ours: list[float] = []
    stdlib: list[float] = []
    t0 = time.perf_counter()
    with Pool(procs) as pool:
        run(pool)  # warm-up: the actors are up
        ours_start = time.perf_counter() - t0
        t0 = time.perf_counter()
        with ctx.Pool(procs) as std_pool:
            run(std_pool)
            std_start = time.perf_counter() - t0
            for _ in range(cfg.pick(21, 7)):  # alternated, so both see the same machine
                ours.append(run(pool))
                stdlib.append(run(std_pool))
    a, b = statistics.median(ours), statistics.median(stdlib)
    note = (f"{n:,} x inc on {procs} processes: {IMPL} {fmt(a)}/s, stdlib {fmt(b)}/s, "
            f"{IMPL}/stdlib {a / b:.2f}x (start-up + first map {ours_start:.2f} s vs {std_start:.2f} s)")
    return Result("pool_map_small", "items/s", ours, note,
                  {"stdlib_items_per_s": stdlib, "ratio": a / b, "processes": procs,
                   "first_map_s": ours_start, "stdlib_first_map_s": std_start})


# --------------------------------------------------------------------------- runner

#: name -> (function, runs inside the shared cluster)
WORKLOADS: dict[str, tuple[Callable[[Config], Result], bool]] = {
    "tasks_sync": (bench_tasks_sync, True),
    "tasks_async": (bench_tasks_async, True),
    "tasks_wait_loop": (bench_tasks_wait_loop, True),
    "chain": (bench_chain, True),
    "put_small": (bench_put_small, True),
    "get_small": (bench_get_small, True),
    "put_large": (bench_put_large, True),
    "get_large": (bench_get_large, True),
    "large_arg_fanout": (bench_large_arg_fanout, True),
    "cpu_parallel": (bench_cpu_parallel, True),
    "startup": (bench_startup, False),
    "idle_memory": (bench_idle_memory, False),
    "tasks_million": (bench_tasks_million, True),
    "pool_map_small": (bench_pool_map_small, True),
}
FULL_SUITE_ONLY = {"tasks_million"}


def _register_more() -> None:
    """Actor and cluster workloads live in their own modules (bench_actors, bench_cluster)."""
    if IMPL != "swarm":
        return
    from swarm import bench_actors, bench_cluster
    for name, fn in bench_actors.WORKLOADS.items():
        WORKLOADS[name] = (fn, True)
    for name, fn in bench_cluster.WORKLOADS.items():
        WORKLOADS[name] = (fn, False)   # each starts its own 3-node cluster



def run_workload(name: str, cfg: Config, cluster: Cluster) -> Result:
    fn, in_cluster = WORKLOADS[name]
    t0 = time.perf_counter()
    try:
        if in_cluster:
            cfg.num_cpus = cluster.ensure()
        else:
            cluster.stop()  # a cold start, and no idle cluster competing for the CPUs
        result = fn(cfg)
    except Exception as e:  # one broken workload must not stop the others
        result = Result(name, error=f"{type(e).__name__}: {e}".splitlines()[0][:300])
    result.wall_s = time.perf_counter() - t0
    return result


def fmt(x: float) -> str:
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.1f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def format_line(r: Result) -> str:
    if r.error is not None:
        return f"{r.name:<17} error: {r.error}"
    med, lo, hi = statistics.median(r.samples), min(r.samples), max(r.samples)
    return f"{r.name:<17} {fmt(med):>11}  {fmt(lo) + ' .. ' + fmt(hi):<22} {r.unit:<8} {r.note}"


def implementation_version() -> str:
    return f"{IMPL} {getattr(swarm, '__version__', '?')}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="swarm microbenchmark", description="Microbenchmarks of the core API.")
    p.add_argument("--quick", action="store_true", help="smaller counts and fewer repetitions")
    p.add_argument("--only", default="", help="comma-separated workload names: " + ", ".join(WORKLOADS))
    p.add_argument("--json", metavar="PATH", help="write every sample to this JSON file")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local cluster (default: all)")
    return p.parse_args(argv)


def select_workloads(only: str, quick: bool) -> list[str]:
    if only:
        names = [n.strip() for n in only.split(",") if n.strip()]
        unknown = [n for n in names if n not in WORKLOADS]
        if unknown:
            raise ValueError(f"unknown workload(s): {', '.join(unknown)}; known: {', '.join(WORKLOADS)}")
        return names
    return [n for n in WORKLOADS if not (quick and n in FULL_SUITE_ONLY)]


def write_json(path: str, cfg: Config, results: list[Result]) -> None:
    doc = {
        "implementation": implementation_version(),
        "python": platform.python_version(),
        "machine": platform.platform(),
        "cpu_count": os.cpu_count(),
        "quick": cfg.quick,
        "init_kwargs": cfg.init_kwargs,
        "results": [r.summary() for r in results],
    }
    with open(path, "w") as fh:
        json.dump(doc, fh, indent=2)


def main(argv: list[str] | None = None) -> int:
    """Run the selected workloads, print one line each; 0 if none failed, 1 otherwise."""
    _register_more()
    args = parse_args(argv)
    try:
        names = select_workloads(args.only, args.quick)
    except ValueError as e:
        print(f"swarm microbenchmark: {e}", file=sys.stderr)
        return 2
    init_kwargs = {} if args.num_cpus is None else {"num_cpus": args.num_cpus}
    cfg, cluster = Config(quick=args.quick, init_kwargs=init_kwargs), Cluster(init_kwargs)
    print(f"# {implementation_version()}, Python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, {'quick' if args.quick else 'full'} run", flush=True)
    if args.quick and not args.only:
        print("# tasks_million skipped in --quick (name it in --only to run 100,000 tasks)", flush=True)
    print(f"{'workload':<17} {'median':>11}  {'min .. max':<22} {'unit':<8} note", flush=True)
    results = []
    try:
        for name in names:
            results.append(run_workload(name, cfg, cluster))
            print(format_line(results[-1]), flush=True)
    finally:
        cluster.stop()
    if args.json:
        write_json(args.json, cfg, results)
        print(f"# samples written to {args.json}", flush=True)
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    # Re-import under the package name so the task functions pickle as swarm.microbenchmark.*
    # rather than as __main__.* (which worker processes cannot import).
    from swarm.microbenchmark import main as _main

    sys.exit(_main())
