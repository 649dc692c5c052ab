"""What the dashboard shows, read from the cluster: the state API and the node's cluster view, cached.

Every read here blocks on a request to the node manager, so handlers call them through
``run_in_threadpool``. Each read is cached for ``ttl_s``: a browser polls every second or two and
several endpoints need the same read (the task summary feeds the overview, the task page and
/metrics), so concurrent and back-to-back requests share one round trip to the cluster.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import threading
import time
from typing import Any, Callable, Iterator

from swarm.util import state

# Task states a row can be in, in the order the dashboard lists them.
TASK_STATES = ("PENDING", "RUNNING", "FINISHED", "FAILED")
# a page reading more task rows than this from the head gives the memory back afterwards
BIG_READ_ROWS = 2000


class _Cache:
    """A value per key, recomputed after ``ttl_s``; one computation at a time per key."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._values: dict[str, tuple[float, Any]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, key: str, compute: Callable[[], Any]) -> Any:
        hit = self._values.get(key)
        if hit is not None and time.monotonic() - hit[0] < self.ttl_s:
            return hit[1]
        with self._guard:
            if len(self._values) > 64:   # keys include page offsets: drop stale pages, not just replace
                now = time.monotonic()
                for k, (t, _) in list(self._values.items()):
                    if now - t >= self.ttl_s:
                        self._values.pop(k, None)
                        self._locks.pop(k, None)
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            hit = self._values.get(key)   # computed by the caller we waited for
            if hit is not None and time.monotonic() - hit[0] < self.ttl_s:
                return hit[1]
            value = compute()
            self._values[key] = (time.monotonic(), value)
            return value


class ClusterData:
    """Cached reads of the cluster for the dashboard's pages and /metrics."""

    def __init__(self, ttl_s: float = 1.0) -> None:
        self.cache = _Cache(ttl_s)

    # -- cluster ------------------------------------------------------------------------------------
    def cluster_info(self) -> dict:
        from swarm import api
        return self.cache.get("cluster_info", api._cluster_info)

    def nodes(self) -> list[dict]:
        """``list_nodes`` rows with ``resources_used`` and ``stats`` under the dashboard's names (see
        ``STATS_NAMES``); our own node's numbers come from its live view when its report lacks them."""
        def compute() -> list[dict]:
            info = self.cluster_info()
            view = {n["node_id"]: n for n in info.get("nodes") or []}
            rows = []
            for row in state.list_nodes(limit=10**6):
                row = dict(row)
                v = view.get(row["node_id"], {})
                total = {k: t for k, t in (row.get("resources_total") or v.get("total") or {}).items()
                         if k != "object_store_memory" and "_group_" not in k}   # shown as the store's
                avail = row.get("resources_available") or v.get("available") or {}
                row["resources_total"] = total
                row["resources_used"] = {k: max(0.0, t - avail.get(k, t)) for k, t in total.items()}
                row["address"] = row.get("address") or v.get("address")
                reported = row.get("stats") or {}
                stats = {ours: reported.get(theirs) for theirs, ours in STATS_NAMES.items()}
                stats["lease_latency"] = reported.get("lease_latency")
                stats["time"] = reported.get("time")
                if row["node_id"] == info.get("node_id"):
                    _fill_own_node(stats, info)
                row["stats"] = stats
                rows.append(row)
            return rows
        return self.cache.get("nodes", compute)

    # -- actors -------------------------------------------------------------------------------------
    def actors(self) -> list[dict]:
        return self.cache.get("actors", lambda: state.list_actors(limit=10**6))

    # -- tasks --------------------------------------------------------------------------------------
    def task_summary(self) -> dict[str, dict[str, int]]:
        """{function name: {state: count}} over every task the cluster remembers."""
        return self.cache.get("task_summary", lambda: state.summarize_tasks()["summary"])

    def task_counts(self) -> dict[str, int]:
        """{state: count} summed over functions."""
        out: dict[str, int] = {}
        for by_state in self.task_summary().values():
            for st, n in by_state.items():
                out[st] = out.get(st, 0) + n
        return out

    def tasks(self, offset: int, limit: int, task_state: str | None = None,
              name: str | None = None) -> tuple[list[dict], int]:
        """One page of tasks (running and queued first, then finished ones, newest first) and how
        many match in all. Costs O(offset + limit) rows, whatever the history's size."""
        filters = []
        if task_state:
            filters.append(("state", "=", task_state))
        if name:
            filters.append(("name", "=", name))
        key = f"tasks:{task_state}:{name}:{offset}:{limit}"

        def read() -> list[dict]:
            page = state.list_tasks(filters=filters or None, limit=limit, offset=offset)
            if offset + limit > BIG_READ_ROWS:
                trim_heap()
            return page
        rows = self.cache.get(key, read)
        summary = self.task_summary()
        if name:
            by_state = summary.get(name, {})
            total = by_state.get(task_state, 0) if task_state else sum(by_state.values())
        elif task_state:
            total = sum(s.get(task_state, 0) for s in summary.values())
        else:
            total = sum(sum(s.values()) for s in summary.values())
        if len(rows) < limit:   # the end of what the cluster remembers (its history is a bounded ring)
            return rows, offset + len(rows)
        # the summary is cached a moment longer than a fresh page: never claim fewer than we show
        return rows, max(total, offset + len(rows))

    def task(self, task_id: str) -> dict | None:
        return state.get_task(task_id)

    # -- objects ------------------------------------------------------------------------------------
    def objects(self) -> list[dict]:
        return self.cache.get("objects", lambda: state.list_objects(limit=10**6))

    # -- logs ---------------------------------------------------------------------------------------
    @staticmethod
    def logs_available() -> bool:
        return hasattr(state, "list_logs") and hasattr(state, "get_log")

    def list_logs(self, node_id: str | None) -> Any:
        return self.cache.get(f"logs:{node_id}", lambda: state.list_logs(node_id=node_id))  # type: ignore

    def get_log(self, **kwargs: Any) -> Any:
        return state.get_log(**kwargs)   # type: ignore[attr-defined]

    # -- timeline -----------------------------------------------------------------------------------
    def timeline_rows(self, limit: int) -> list[dict]:
        return state.list_tasks(limit=limit)


def timeline_chunks(rows: list[dict], chunk_rows: int = 500) -> Iterator[bytes]:
    """The Chrome-trace JSON (as ``swarm.timeline()`` writes it) of task rows, encoded a chunk at a
    time; each row is dropped from ``rows`` once encoded, so the rows and their JSON are never all
    in memory together (10,000 rows are ~10 MB as dicts)."""
    rows.reverse()   # pop() from the end is O(1): newest-first order is kept
    yield b"["
    first = True
    while rows:
        parts = []
        for _ in range(min(chunk_rows, len(rows))):
            row = rows.pop()
            start, dur = row.get("start_time"), row.get("duration_s")
            if start is None or dur is None:
                continue
            event = {"name": row.get("name"), "cat": "actor_task" if row.get("actor_id") else "task",
                     "ph": "X", "ts": start * 1e6, "dur": dur * 1e6,
                     "pid": f"node {row.get('node_id')}", "tid": f"worker {row.get('pid')}",
                     "args": {"task_id": row.get("task_id"), "state": row.get("state"),
                              "worker_id": row.get("worker_id")}}
            parts.append(("" if first else ",") + json.dumps(event, default=str))
            first = False
        yield "".join(parts).encode()
    yield b"]"
    trim_heap()


def _load_libc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim   # type: ignore[no-any-return]
    except (OSError, AttributeError):   # not glibc: the allocator keeps what it keeps
        return None


_malloc_trim = _load_libc_trim()


def trim_heap() -> None:
    """Hand freed heap memory back to the system after a big read (glibc keeps it otherwise, and
    the dashboard's budget is resident memory)."""
    if _malloc_trim is not None:
        _malloc_trim(0)


# the node managers' heartbeat stats (node_manager._node_stats) -> the names the dashboard shows
STATS_NAMES = {"cpu_percent": "cpu_percent", "mem_total": "mem_total_bytes", "mem_used": "mem_used_bytes",
               "store_capacity": "object_store_capacity_bytes", "store_used": "object_store_used_bytes",
               "store_objects": "object_store_objects", "spilled_bytes": "object_store_spilled_bytes",
               "workers": "workers", "workers_actors": "workers_actors",
               "pending_leases": "pending_leases"}


def _fill_own_node(stats: dict, info: dict) -> None:
    """The node this dashboard is attached to, where its last report is missing (before its first
    heartbeat): its live store and workers, and this machine's CPU and memory."""
    import psutil
    store = info.get("object_store") or {}
    for key, value in (("object_store_used_bytes", store.get("used")),
                       ("object_store_capacity_bytes", store.get("capacity")),
                       ("object_store_spilled_bytes", store.get("spilled_bytes")),
                       ("object_store_objects", store.get("objects")), ("workers", info.get("num_workers"))):
        if stats.get(key) is None:
            stats[key] = value
    if stats.get("cpu_percent") is None:
        stats["cpu_percent"] = psutil.cpu_percent(interval=None)
    if stats.get("mem_total_bytes") is None:
        vm = psutil.virtual_memory()
        stats["mem_total_bytes"] = vm.total
        stats["mem_used_bytes"] = vm.total - vm.available
