"""Looking at a running cluster from Python (names as Ray's ``ray.util.state``)."""

from __future__ import annotations

from typing import Any


def list_objects(filters: list | None = None, limit: int = 10_000, detail: bool = False) -> list[dict]:
    """Objects this driver can see: every object in the node's shared-memory store (size, owner, pins,
    spilled) and the small objects this process owns in its memory store (with their reference
    counts: local refs and borrowers)."""
    from swarm import api
    from swarm.core import protocol as P

    w = api._require_worker()
    if w.mode == "local":
        rows = [{"object_id": oid.hex(), "size": len(data), "where": "driver (local mode)",
                 "local_refs": w.refs.get(oid, 0)} for oid, (_ok, data) in w.values.items()]
        return _filter(rows, filters)[:limit]
    shm = w.nm_call(lambda r: [P.LIST_OBJECTS, r])[2]
    rows = []
    with w._lock:
        by_id = {o["object_id"]: o for o in shm}
        for oid in list(w.owned):
            value = w.values.get(oid)
            row = {"object_id": oid.hex(), "owner": w.worker_id.hex(), "local_refs": w.refs.get(oid, 0),
                   "borrowers": w.borrowers.get(oid, 0), "contained_refs": len(w.contained.get(oid, ()))}
            if value is None:
                row.update(where="pending (its task has not finished)", size=None)
            elif value[0] == P.VALUE_SHM:
                row.update(where="shared memory", **{k: v for k, v in by_id.pop(oid.hex(), {}).items()
                                                     if k not in row})
            else:
                row.update(where="inline (owner's memory)", size=len(value[1]),
                           error=value[0] == P.VALUE_ERROR)
            rows.append(row)
    for o in by_id.values():  # in the store, owned by other processes
        rows.append(dict(o, where="shared memory"))
    return _filter(rows, filters)[:limit]


def _filter(rows: list[dict], filters: list | None) -> list[dict]:
    for key, op, value in filters or []:
        if op == "=":
            rows = [r for r in rows if str(r.get(key)) == str(value)]
        elif op == "!=":
            rows = [r for r in rows if str(r.get(key)) != str(value)]
        else:
            raise ValueError(f"unsupported filter operator {op!r} (use '=' or '!=')")
    return rows


def summarize_objects() -> dict[str, Any]:
    rows = list_objects()
    return {"total_objects": len(rows), "total_size_bytes": sum(r.get("size") or 0 for r in rows),
            "spilled": sum(1 for r in rows if r.get("spilled"))}


def list_tasks(filters: list | None = None, limit: int = 10_000, detail: bool = False) -> list[dict]:
    """Tasks and actor calls this process submitted: queued and running ones first, then finished
    ones (newest first) with their duration, worker and, for failures, the error and traceback.
    Costs O(rows returned) on the finished history (a ring of ``SWARM_TASK_EVENTS_MAX``)."""
    from swarm import api
    w = api._require_worker()
    if w.mode == "local":
        return []
    return _filter(w.task_rows(limit if not filters else 10**9), filters)[:limit]


def get_task(task_id: str) -> dict | None:
    for row in list_tasks(limit=10**9):
        if row["task_id"] == task_id:
            return row
    return None


def summarize_tasks() -> dict[str, Any]:
    """Counts by function name and state."""
    out: dict[str, dict[str, int]] = {}
    for row in list_tasks(limit=10**9):
        by_state = out.setdefault(row["name"], {})
        by_state[row["state"]] = by_state.get(row["state"], 0) + 1
    return {"summary": out, "total": sum(sum(v.values()) for v in out.values())}


def list_nodes(filters: list | None = None, limit: int = 10_000, detail: bool = False) -> list[dict]:
    import swarm
    rows = [{"node_id": n["NodeID"], "state": "ALIVE" if n["Alive"] else "DEAD",
             "node_ip": n["NodeManagerAddress"], "is_head_node": n["IsHeadNode"],
             "resources_total": n["Resources"]} for n in swarm.nodes()]
    return _filter(rows, filters)[:limit]


def list_actors(filters: list | None = None, limit: int = 10_000, detail: bool = False) -> list[dict]:
    """Every actor the cluster's directory knows (alive, restarting or dead, with the death cause)."""
    from swarm import api
    from swarm.core import protocol as P
    w = api._require_worker()
    if w.mode == "local":
        return []
    actors = w.nm_call(lambda r: [P.LIST_ACTORS, r])[2]
    rows = [{"actor_id": a["actor_id"].hex(), "class_name": a.get("class_name"), "state": a.get("state"),
             "name": a.get("name") or "", "namespace": a.get("namespace"), "pid": a.get("pid"),
             "node_id": a.get("node_id"), "num_restarts": a.get("num_restarts", 0),
             "death_cause": a.get("death_cause"), "detached": a.get("detached", False)} for a in actors]
    return _filter(rows, filters)[:limit]


def get_actor(actor_id: str) -> dict | None:
    for row in list_actors(limit=10**9):
        if row["actor_id"] == actor_id:
            return row
    return None


def summarize_actors() -> dict[str, Any]:
    out: dict[str, dict[str, int]] = {}
    for row in list_actors(limit=10**9):
        by_state = out.setdefault(row["class_name"] or "?", {})
        by_state[row["state"]] = by_state.get(row["state"], 0) + 1
    return {"summary": out, "total": sum(sum(v.values()) for v in out.values())}
