"""The dashboard's budget: its process's memory and the latency of each page and API endpoint with a
large history (default 10,000 finished tasks and 500 actors).

    python benchmarks/dashboard_bench.py [--tasks 10000] [--actors 500] [--requests 200]

A local cluster with ``include_dashboard=True`` gets the workload: ``--tasks`` small tasks (1% of
them fail, with tracebacks) and ``--actors`` actors created in batches of 50, each batch killed before
the next except the last (so the directory holds 450 dead actors with death causes and 50 alive ones,
without 500 live processes on a small machine). Then every endpoint gets ``--requests`` sequential GETs
on one keep-alive connection, as a browser does, against two dashboard processes of the same cluster:

  - "polling": the dashboard as shipped (each read of the cluster cached for 1 s, so a browser tab or
    several polling every 1.5 s share reads);
  - "uncached": a second dashboard with ``--cache-ttl-s 0``, every request reading the cluster.

Printed: p50/p99/max per endpoint and mode, and each dashboard process's RSS before the workload,
after it, at its highest while serving (sampled every 3 ms), and at the end (with USS: its own pages,
not shared with other processes). Budget: <= 60 MB, <= 200 ms p99 per page.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import threading
import time
import urllib.parse

import psutil

import swarm
from swarm.dashboard import launch

ENDPOINTS = [
    "/", "/tasks", "/static/app.js",
    "/api/overview", "/api/history", "/api/nodes",
    "/api/actors?limit=50", "/api/actors?offset=400&limit=50", "/api/actors?state=ALIVE",
    "/api/tasks?limit=50", "/api/tasks?state=FAILED&limit=10", "/api/tasks?state=PENDING&limit=20",
    "/api/tasks?offset=1000&limit=50", "/api/tasks/summary",
    "/api/objects?limit=50", "/api/jobs", "/metrics",
]
# heavy downloads, measured with fewer requests (not pages: a user asks for them once)
DOWNLOADS = ["/api/timeline"]


@swarm.remote
def work(i):
    if i % 100 == 0:
        raise ValueError(f"task {i} fails on purpose")
    return i


@swarm.remote(num_cpus=0)
class Idle:
    def ping(self):
        return 1


def make_history(num_tasks: int, num_actors: int) -> list:
    t0 = time.perf_counter()
    refs = [work.remote(i) for i in range(num_tasks)]
    swarm.wait(refs, num_returns=len(refs), timeout=600)
    print(f"{num_tasks} tasks in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    alive: list = []
    for start in range(0, num_actors, 50):
        batch = [Idle.remote() for _ in range(min(50, num_actors - start))]
        swarm.get([a.ping.remote() for a in batch], timeout=600)
        if start + 50 < num_actors:
            for a in batch:
                swarm.kill(a)
        else:
            alive = batch
    print(f"{num_actors} actors ({len(alive)} alive) in {time.perf_counter() - t0:.1f} s")
    return alive


def memory(pid: int) -> tuple[float, float]:
    info = psutil.Process(pid).memory_full_info()
    return info.rss / 2**20, info.uss / 2**20


class PeakRSS:
    """The highest RSS of a process, sampled every few milliseconds by a thread while it runs."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.003):
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss / 2**20)
            except psutil.Error:
                return

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def measure(url: str, path: str, n: int) -> list[float]:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    times = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            times.append(time.perf_counter() - t0)
            if resp.status != 200:
                raise RuntimeError(f"{path}: HTTP {resp.status}")
    finally:
        conn.close()
    return times


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=10_000)
    ap.add_argument("--actors", type=int, default=500)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--num-cpus", type=int, default=2)
    args = ap.parse_args()

    ctx = swarm.init(num_cpus=args.num_cpus, include_dashboard=True, dashboard_port=0)
    shipped = swarm.api._dashboard_proc
    info = swarm.api._worker.node_info
    uncached, uncached_url = launch.start_dashboard(
        info["unix_address"], port=0, token_file=f"{info['session_dir']}/cluster_token",
        extra_args=["--cache-ttl-s", "0"])
    dashboards = {"polling": (ctx.dashboard_url, shipped.pid), "uncached": (uncached_url, uncached.pid)}
    try:
        before = {mode: memory(pid) for mode, (_, pid) in dashboards.items()}
        alive = make_history(args.tasks, args.actors)
        time.sleep(3)   # the owners' last task reports reach the head
        after = {mode: memory(pid) for mode, (_, pid) in dashboards.items()}
        rows = []
        peaks = {}
        ends = {}
        for mode, (url, pid) in dashboards.items():
            with PeakRSS(pid) as peak:
                for path in ENDPOINTS + DOWNLOADS:   # warm-up: first imports, first reads
                    measure(url, path, 2)
                for path in ENDPOINTS:
                    t = measure(url, path, args.requests)
                    rows.append((mode, path, len(t), statistics.median(t), pct(t, 0.99), max(t)))
                for path in DOWNLOADS:
                    t = measure(url, path, max(5, args.requests // 10))
                    rows.append((mode, path + " (download)", len(t), statistics.median(t), pct(t, 0.99),
                                 max(t)))
            peaks[mode] = peak.peak
            ends[mode] = memory(pid)
        print()
        print(f"{'mode':9} {'endpoint':44} {'n':>4} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
        for mode, path, n, p50, p99, mx in rows:
            flag = "" if p99 <= 0.2 or "download" in path else "  OVER BUDGET"
            print(f"{mode:9} {path:44} {n:>4} {p50 * 1e3:8.1f} {p99 * 1e3:8.1f} {mx * 1e3:8.1f}{flag}")
        print()
        print("dashboard process memory (MiB): RSS before the workload, after it (idle), highest while "
              "serving (sampled every 3 ms), and RSS / USS at the end")
        print(f"{'dashboard':9} {'before':>8} {'after':>8} {'peak':>8} {'end RSS':>8} {'end USS':>8}")
        for mode in dashboards:
            print(f"{mode:9} {before[mode][0]:8.1f} {after[mode][0]:8.1f} {peaks[mode]:8.1f} "
                  f"{ends[mode][0]:8.1f} {ends[mode][1]:8.1f}")
        del alive
    finally:
        launch.stop_dashboard(uncached)
        swarm.shutdown()


if __name__ == "__main__":
    main()
