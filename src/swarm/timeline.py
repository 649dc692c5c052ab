"""``swarm.timeline()``: a Chrome-trace / Perfetto JSON of the tasks and actor calls this process
submitted (one row per worker process, grouped by node), from the task events it keeps."""

from __future__ import annotations

import json
from typing import Any


def timeline(filename: str | None = None) -> list[dict] | None:
    """The trace events; written to ``filename`` (open it in chrome://tracing or ui.perfetto.dev)
    when given, else returned."""
    from swarm import api

    w = api._require_worker()
    events: list[dict[str, Any]] = []
    if w.mode != "local":
        with w._lock:
            recorded = list(w.task_events)
        for task_id, name, state, start, dur, pid, node, worker, actor, _err in recorded:
            if start is None:
                continue
            events.append({"name": name, "cat": "actor_task" if actor else "task", "ph": "X",
                           "ts": start * 1e6, "dur": dur * 1e6, "pid": f"node {node}",
                           "tid": f"worker {pid}", "args": {"task_id": task_id.hex(), "state": state,
                                                            "worker_id": worker}})
    if filename is None:
        return events
    with open(filename, "w") as f:
        json.dump(events, f)
    return None
