"""The last minutes of cluster use: a ring of samples taken every few seconds by one thread.

    sampler thread ── every interval_s ──▶ sample() (nodes: resources used/total, store, host CPU/mem)
                                              │ summed over alive nodes
                                              ▼
                                   deque(maxlen=window_s / interval_s) ──▶ GET /api/history

The ring is bounded (10 minutes at 2 s: 300 small dicts), so memory does not grow with uptime.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Callable

log = logging.getLogger(__name__)


def summarize_nodes(nodes: list[dict]) -> dict:
    """One sample from ``ClusterData.nodes()`` rows: totals over the alive nodes."""
    out: dict[str, Any] = {
        "t": time.time(), "nodes_alive": 0, "cpu_used": 0.0, "cpu_total": 0.0, "gpu_used": 0.0,
        "gpu_total": 0.0, "mem_used_bytes": 0, "mem_total_bytes": 0, "store_used_bytes": 0,
        "store_capacity_bytes": 0, "store_spilled_bytes": 0, "cpu_percent": None}
    cpu_percents = []
    for n in nodes:
        if n.get("state") != "ALIVE":
            continue
        out["nodes_alive"] += 1
        total, used = n.get("resources_total") or {}, n.get("resources_used") or {}
        out["cpu_used"] += used.get("CPU", 0.0)
        out["cpu_total"] += total.get("CPU", 0.0)
        out["gpu_used"] += used.get("GPU", 0.0)
        out["gpu_total"] += total.get("GPU", 0.0)
        stats = n.get("stats") or {}
        out["mem_used_bytes"] += stats.get("mem_used_bytes") or 0
        out["mem_total_bytes"] += stats.get("mem_total_bytes") or 0
        out["store_used_bytes"] += stats.get("object_store_used_bytes") or 0
        out["store_capacity_bytes"] += stats.get("object_store_capacity_bytes") or 0
        out["store_spilled_bytes"] += stats.get("object_store_spilled_bytes") or 0
        if stats.get("cpu_percent") is not None:
            cpu_percents.append(stats["cpu_percent"])
    if cpu_percents:
        out["cpu_percent"] = sum(cpu_percents) / len(cpu_percents)
    return out


class ClusterHistory:
    """Samples of cluster use, one every ``interval_s``, the last ``window_s`` of them kept."""

    def __init__(self, sample: Callable[[], dict], interval_s: float = 2.0, window_s: float = 600.0) -> None:
        self._sample = sample
        self.interval_s = interval_s
        self._ring: collections.deque[dict] = collections.deque(maxlen=max(1, int(window_s / interval_s)))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="dashboard-history", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def take_sample(self) -> None:
        try:
            s = self._sample()
        except Exception as e:   # the cluster may be busy or going away: the next round tries again
            log.debug("cluster sample failed: %r", e)
            return
        with self._lock:
            self._ring.append(s)

    def samples(self, since: float | None = None) -> list[dict]:
        with self._lock:
            rows = list(self._ring)
        return [s for s in rows if since is None or s["t"] > since]

    def _run(self) -> None:
        while True:
            self.take_sample()
            if self._stop.wait(self.interval_s):
                return
