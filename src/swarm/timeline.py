"""``swarm.timeline()``: a Chrome-trace / Perfetto JSON of the cluster's tasks and actor calls (every
driver's and worker's, as the head's task history holds them): one process row per node, one thread row
per worker process, each slice named after its function with its task id, state and duration."""

from __future__ import annotations

import json
from typing import Any


def timeline(filename: str | None = None, limit: int | None = None) -> list[dict] | None:
    """The trace events; written to ``filename`` (open it in chrome://tracing or ui.perfetto.dev)
    when given, else returned. ``limit``: at most that many of the newest finished tasks."""
    from swarm import api
    from swarm._config import CONFIG
    from swarm.util import state

    w = api._require_worker()
    events: list[dict[str, Any]] = []
    if w.mode != "local":
        rows = state.list_tasks(limit=limit or max(CONFIG.task_events_max, 1))
        for r in rows:
            if r.get("start_time") is None or r.get("duration_s") is None:
                continue   # still queued or running
            events.append({"name": r["name"], "cat": "actor_task" if r.get("actor_id") else "task", "ph": "X",
                           "ts": r["start_time"] * 1e6, "dur": r["duration_s"] * 1e6,
                           "pid": f"node {r.get('node_id')}", "tid": f"worker {r.get('pid')}",
                           "args": {"task_id": r["task_id"], "state": r["state"],
                                    "worker_id": r.get("worker_id"), "actor_id": r.get("actor_id"),
                                    "owner_id": r.get("owner_id")}})
        events.sort(key=lambda e: e["ts"])
    if filename is None:
        return events
    with open(filename, "w") as f:
        json.dump(events, f)
    return None
