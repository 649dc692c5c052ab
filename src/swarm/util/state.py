"""Looking at a running cluster from Python (names as Ray's ``ray.util.state``)."""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator


def list_objects(filters: list | None = None, limit: int = 10_000, detail: bool = False) -> list[dict]:
    """Objects in the cluster: every object in every alive node's shared-memory store (size, owner,
    pins, spilled, node) and the small objects this process owns in its memory store (with their
    reference counts: local refs and borrowers). Other processes' small objects live in their own
    memory and are not listed."""
    from swarm import api
    from swarm.core import protocol as P

    w = api._require_worker()
    if w.mode == "local":
        rows = [{"object_id": oid.hex(), "size": len(data), "where": "driver (local mode)",
                 "local_refs": w.refs.get(oid, 0)} for oid, (_ok, data) in w.values.items()]
        return _filter(rows, filters)[:limit]
    shm = list(w.nm_call(lambda r: [P.LIST_OBJECTS, r])[2])
    unreachable: list[dict] = []
    for node in _alive_nodes():
        if node["node_id"] != w.node_id:
            try:
                shm.extend(_node_call(node, lambda link: link.list_objects()))
            except Exception as e:   # a node going away meanwhile: list the rest
                unreachable.append({"object_id": None, "node_id": node["node_id"],
                                    "where": f"unreachable: {e}"})
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
    for o in by_id.values():  # in the stores, owned by other processes
        rows.append(dict(o, where="shared memory"))
    rows.extend(unreachable)
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
    """What ``list_objects`` sees, added up: totals, and objects and bytes by where they live (shared
    memory, inline in their owner, pending) and by owner (worker id, with its pid when known)."""
    rows = list_objects()
    by_where: dict[str, dict[str, int]] = {}
    by_owner: dict[str, dict[str, Any]] = {}
    for r in rows:
        size = r.get("size") or 0
        where = "spilled to disk" if r.get("spilled") else str(r.get("where", "?")).split(" (")[0]
        w = by_where.setdefault(where, {"objects": 0, "size_bytes": 0})
        w["objects"] += 1
        w["size_bytes"] += size
        o = by_owner.setdefault(r.get("owner") or "?", {"objects": 0, "size_bytes": 0, "pid": None})
        o["objects"] += 1
        o["size_bytes"] += size
        o["pid"] = o["pid"] or r.get("owner_pid")
    return {"total_objects": len(rows), "total_size_bytes": sum(r.get("size") or 0 for r in rows),
            "spilled": sum(1 for r in rows if r.get("spilled")),
            "spilled_bytes": sum(r.get("size") or 0 for r in rows if r.get("spilled")),
            "by_where": by_where, "by_owner": by_owner}


def list_tasks(filters: list | None = None, limit: int = 10_000, detail: bool = False,
               offset: int = 0) -> list[dict]:
    """Tasks and actor calls of the whole cluster (every driver's and worker's), as the head holds them:
    queued and running ones first, then finished ones, newest first, with their duration, node, worker
    and, for failures, the error with its remote traceback. The finished history is a bounded ring
    (``SWARM_TASK_EVENTS_MAX``, default 100,000); a query costs O(rows returned) for the newest rows, a
    ``task_id`` or ``state=FAILED`` filter (other filters scan the ring). ``offset`` skips that many
    matching rows first (pages)."""
    from swarm import api
    w = api._require_worker()
    if w.mode == "local":
        return []
    _check_filters(filters)
    w.report_task_events()   # this process's latest first (same connection: it arrives first)
    return w.control_call("list_tasks", [[list(f) for f in filters or []], int(limit), int(offset)])


def _check_filters(filters: list | None) -> None:
    for f in filters or []:
        if len(f) != 3 or f[1] not in ("=", "!="):
            raise ValueError(f"bad filter {f!r}: use (key, '=', value) or (key, '!=', value)")


def get_task(task_id: str) -> dict | None:
    rows = list_tasks(filters=[("task_id", "=", task_id)], limit=1)
    return rows[0] if rows else None


def summarize_tasks() -> dict[str, Any]:
    """Counts by function name and state: finished ones since the head started, queued and running now."""
    from swarm import api
    w = api._require_worker()
    if w.mode == "local":
        return {"summary": {}, "total": 0}
    w.report_task_events()
    out = w.control_call("summarize_tasks", [])
    return {"summary": out, "total": sum(sum(v.values()) for v in out.values())}


def list_nodes(filters: list | None = None, limit: int = 10_000, detail: bool = False) -> list[dict]:
    """Every node the cluster knows, alive or dead, with its resources (total and free) and its last
    reported load under ``stats`` (object store used/spilled, workers, CPU %, memory; ``time`` is when it
    was measured; refreshed every heartbeat)."""
    from swarm import api
    info = api._cluster_info()
    rows = []
    for n in info.get("nodes") or [dict(info, alive=True, is_head=True)]:
        rows.append({"node_id": n["node_id"], "state": "ALIVE" if n.get("alive", True) else "DEAD",
                     "node_ip": n.get("node_ip", "127.0.0.1"), "is_head_node": n.get("is_head", False),
                     "address": n.get("address"), "resources_total": dict(n.get("total") or {}),
                     "resources_available": dict(n.get("available") or {}), "stats": n.get("stats") or {}})
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


def list_jobs(filters: list | None = None, limit: int = 10_000, detail: bool = False) -> list[dict]:
    """Jobs submitted through the job API (the job table in the cluster KV), oldest first: submission
    id, status, entrypoint, message, start/end time (ms), exit code, metadata, runtime_env."""
    import json

    from swarm.experimental import internal_kv
    keys = internal_kv.kv_list(b"", namespace="jobs")
    rows = [json.loads(v) for v in internal_kv.kv_multi_get(keys, namespace="jobs").values()] if keys else []
    rows.sort(key=lambda r: r.get("start_time") or 0)
    return _filter(rows, filters)[:limit]


# -- workers and their logs (every node manager serves its own: swarm/node/log_service.py) ----------
def _alive_nodes() -> list[dict]:
    from swarm import api
    info = api._cluster_info()
    nodes = info.get("nodes") or [dict(info, alive=True)]
    return [n for n in nodes if n.get("alive", True)]


def _link(node: dict) -> Any:
    from swarm import api
    from swarm.node.log_service import NodeLink
    return NodeLink(node["node_id"], node["address"], api._require_worker().token)


def _node_call(node: dict, call: Callable[[Any], Any]) -> Any:
    link = _link(node)
    try:
        return call(link)
    finally:
        link.close()


def _find_node(node_id: str | None) -> dict:
    """An alive node by id or unambiguous id prefix (None: this process's own node)."""
    from swarm import api
    from swarm.node.log_service import LogError
    nodes = _alive_nodes()
    if node_id is None:
        node_id = api._require_worker().node_id
        return next((n for n in nodes if n["node_id"] == node_id), nodes[0])
    found = [n for n in nodes if n["node_id"].startswith(node_id)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise LogError(f"no alive node whose id starts with {node_id!r} (alive: "
                       f"{', '.join(n['node_id'] for n in nodes)})")
    raise LogError(f"{node_id!r} matches {len(found)} nodes: {', '.join(n['node_id'] for n in found)}; "
                   f"give more of the id")


def list_workers(filters: list | None = None, limit: int = 10_000, detail: bool = False) -> list[dict]:
    """Worker processes of every alive node: live ones (state IDLE, LEASED, ACTOR or STARTING) and
    exited ones (DEAD, with how they exited when the node still remembers it), each with its node,
    pid, what it runs (``name``: function or actor class), the last task that printed something, and
    its log files (``stdout_file``/``stderr_file``, readable with ``get_log(worker_id=...)``)."""
    import logging

    from swarm.node.log_service import LogError
    rows: list[dict] = []
    for node in _alive_nodes():
        try:
            rows.extend(_node_call(node, lambda link: link.list_workers())["workers"])
        except LogError as e:   # a node going away: the others still answer
            logging.getLogger(__name__).warning("%s", e)
    rows.sort(key=lambda r: r["state"] == "DEAD")
    return _filter(rows, filters)[:limit]


def get_worker(worker_id: str) -> dict | None:
    """A worker by id (or an unambiguous id prefix), live or exited."""
    from swarm.node.log_service import LogError
    rows = [r for r in list_workers(limit=10**9) if r["worker_id"].startswith(worker_id)]
    if len(rows) > 1:
        raise LogError(f"{worker_id!r} matches {len(rows)} workers: "
                       f"{', '.join(r['worker_id'] for r in rows[:10])}; give more of the id")
    return rows[0] if rows else None


def list_logs(node_id: str | None = None) -> dict[str, list[str]]:
    """Log file names by node id (every alive node, or the one whose id starts with ``node_id``):
    ``worker-<worker id>-<pid>.out``/``.err`` (rotated: ``.out.1`` ...), ``node_manager.log``, ..."""
    nodes = [_find_node(node_id)] if node_id else _alive_nodes()
    return {n["node_id"]: [f["name"] for f in _node_call(n, lambda link: link.list_workers())["files"]]
            for n in nodes}


def get_log(task_id: str | None = None, actor_id: str | None = None, worker_id: str | None = None,
            node_id: str | None = None, filename: str | None = None, *, tail: int = 1000,
            follow: bool = False, timeout: float | None = None, suffix: str = "out") -> Iterator[str]:
    """The lines a task, an actor or a worker printed (``suffix="out"``: stdout, ``"err"``: stderr),
    or of a node's log file (``filename``, on ``node_id`` — default this process's node), from any
    node of the cluster: the last ``tail`` lines (``tail=-1``: all), then with ``follow=True`` new
    lines as they are written, until the worker exits, the task's output ends, or ``timeout`` s.

    A task's lines are picked out of its worker's log by the markers the worker writes when a new
    task starts printing (see ``swarm/node/log_service.py``); a task that printed nothing yields
    nothing. Raises ``LogError`` (a ``SwarmError``) for an unknown id or a node that is gone."""
    from swarm.node.log_service import LogError, stream_log
    given = [k for k, v in (("task_id", task_id), ("actor_id", actor_id), ("worker_id", worker_id),
                            ("filename", filename)) if v]
    if len(given) != 1:
        raise ValueError(f"get_log needs exactly one of task_id, actor_id, worker_id or filename "
                         f"(with node_id), got {', '.join(given) or 'none'}")
    if suffix not in ("out", "err"):
        raise ValueError(f"suffix must be 'out' (stdout) or 'err' (stderr), not {suffix!r}")
    task = stop = None
    deadline = None if timeout is None else time.monotonic() + timeout
    if filename:
        node, name = _find_node(node_id), filename
    elif worker_id:
        w = get_worker(worker_id)
        if w is None:
            raise LogError(f"no worker whose id starts with {worker_id!r} on the alive nodes "
                           f"(list_workers() shows them)")
        node, name = _find_node(w["node_id"]), w[f"std{suffix}_file"]
    elif actor_id:
        node, name = _actor_log(actor_id, suffix)
        # only what follows the actor's marker: its worker may have run plain tasks before
        task = "actor:" + actor_id
    else:
        assert task_id is not None
        node, name = _task_log(task_id, suffix, follow, deadline)
        task = task_id

        def stop() -> bool:
            row = get_task(task_id)
            return row is None or row["state"] in ("FINISHED", "FAILED")
    link = _link(node)

    def lines() -> Iterator[str]:
        try:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            yield from stream_log(link, name, tail=tail, follow=follow, timeout=left, task=task, stop=stop)
        finally:
            link.close()
    return lines()


def _actor_log(actor_id: str, suffix: str) -> tuple[dict, str]:
    from swarm import api
    from swarm.core import protocol as P
    from swarm.node.log_service import LogError
    try:
        raw = bytes.fromhex(actor_id)
    except ValueError:
        raise LogError(f"{actor_id!r} is not an actor id (hex digits, as list_actors() shows)") from None
    info = api._require_worker().nm_call(lambda r: [P.GET_ACTOR, r, raw, None, None, False])[2]
    if info is None:
        raise LogError(f"no actor with id {actor_id} (list_actors() shows them)")
    if not info.get("worker_id") or not info.get("pid"):
        raise LogError(f"actor {actor_id} has not started yet (state {info.get('state')}): it has no log")
    nodes = {n["node_id"]: n for n in _alive_nodes()}
    if info.get("node_id") not in nodes:
        raise LogError(f"actor {actor_id} ran on node {info.get('node_id')}, which is gone: its logs went "
                       f"with it")
    return nodes[info["node_id"]], f"worker-{_hex(info['worker_id'])}-{info['pid']}.{suffix}"


def _task_log(task_id: str, suffix: str, wait: bool, deadline: float | None) -> tuple[dict, str]:
    """The node and worker log file of a task: from its row once it finished; while it runs, the
    worker whose log has its marker (it printed) or its actor's worker."""
    from swarm.node.log_service import LogError
    while True:
        row = get_task(task_id)
        if row is None:
            raise LogError(f"no task with id {task_id} (list_tasks() shows them)")
        nodes = {n["node_id"]: n for n in _alive_nodes()}
        if row.get("worker_id") and row.get("pid"):
            if row.get("node_id") not in nodes:
                raise LogError(f"task {task_id} ran on node {row.get('node_id')}, which is gone: its logs "
                               f"went with it")
            return nodes[row["node_id"]], f"worker-{_hex(row['worker_id'])}-{row['pid']}.{suffix}"
        if row.get("actor_id"):
            return _actor_log(row["actor_id"], suffix)
        if row["state"] == "RUNNING":
            for w in list_workers(limit=10**9):
                if w.get("task_id") == task_id and w["state"] != "DEAD":
                    return nodes[w["node_id"]], w[f"std{suffix}_file"]
        if not wait or (deadline is not None and time.monotonic() >= deadline):
            what = "has printed nothing yet" if row["state"] == "RUNNING" else "has not started"
            raise LogError(f"task {task_id} {what} (state {row['state']}"
                           + (f": {row['detail']}" if row.get("detail") else "")
                           + "); follow=True (swarm logs --follow) waits for its output")
        time.sleep(0.5)


def _hex(v: Any) -> str:
    return v.hex() if isinstance(v, (bytes, bytearray)) else str(v)
