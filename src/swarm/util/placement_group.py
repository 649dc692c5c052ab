"""Placement groups: reserve bundles of resources across nodes, then schedule tasks and actors into
them (names as ``ray.util.placement_group``).

    placement_group(bundles, strategy) ──▶ a thread plans a node per bundle (node/cluster.py) and
        asks each node manager to set the bundle aside (RESERVE_BUNDLE); all or nothing, retried
        until it fits ──▶ pg.ready() resolves
    a task with PlacementGroupSchedulingStrategy(pg, i) asks for ``CPU_group_<i>_<pg>`` instead of
    ``CPU``: a resource only the node holding bundle i has, so ordinary scheduling places it there.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from swarm.core import protocol as P
from swarm.node.cluster import plan_bundles

STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


class PlacementGroup:
    def __init__(self, pg_id: str, bundles: list[dict], strategy: str, ready_ref: Any) -> None:
        self.id = pg_id
        self.bundle_specs = bundles
        self.strategy = strategy
        self._ready_ref = ready_ref
        self._removed = threading.Event()
        self._reserved: list[tuple[Any, str]] = []

    @property
    def bundle_count(self) -> int:
        return len(self.bundle_specs)

    def ready(self) -> Any:
        """An ObjectRef that resolves (to True) once every bundle is reserved."""
        return self._ready_ref

    def wait(self, timeout_seconds: float = 30) -> bool:
        import swarm
        ready, _ = swarm.wait([self._ready_ref], timeout=timeout_seconds)
        return bool(ready)

    def __reduce__(self) -> Any:
        return (_rebuild, (self.id, self.bundle_specs, self.strategy))


def _rebuild(pg_id: str, bundles: list[dict], strategy: str) -> PlacementGroup:
    return PlacementGroup(pg_id, bundles, strategy, None)


def _shape(bundle: dict) -> dict[str, float]:
    shape = {}
    for k, v in bundle.items():
        if v:
            shape[k] = float(v)
    return shape


def placement_group(bundles: list[dict], strategy: str = "PACK", name: str = "", lifetime: Any = None,
                    **_: Any) -> PlacementGroup:
    from swarm import api
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if not bundles or not all(isinstance(b, dict) and b for b in bundles):
        raise ValueError("bundles must be a non-empty list of non-empty resource dicts, e.g. [{'CPU': 1}]")
    for b in bundles:
        for k, v in b.items():
            if not isinstance(v, (int, float)) or v < 0:
                raise ValueError(f"bundle resource {k!r} must be a non-negative number, got {v!r}")
    w = api._auto_init()
    pg_id = os.urandom(8).hex()
    ready_ref, fulfil = w.pending_object()
    pg = PlacementGroup(pg_id, [dict(b) for b in bundles], strategy, ready_ref)
    threading.Thread(target=_reserve, args=(w, pg, fulfil), name="swarm-placement-group",
                     daemon=True).start()
    return pg


def _reserve(w: Any, pg: PlacementGroup, fulfil: Any) -> None:
    shapes = [_shape(b) for b in pg.bundle_specs]
    while not pg._removed.is_set() and not w.shutting_down:
        try:
            info = w.nm_call(lambda r: [P.CLUSTER_INFO, r])[2]
        except Exception:
            time.sleep(0.2)
            continue
        view = info.get("nodes") or []
        plan = plan_bundles(shapes, pg.strategy, view, info["node_id"])
        if plan is not None:
            done: list[tuple[Any, str]] = []
            ok = True
            for index, (shape, node) in enumerate(zip(shapes, plan, strict=True)):
                conn = None if node["node_id"] == info["node_id"] else w.get_conn(node["address"])
                reply = w.nm_call(lambda r, i=index, s=shape: [P.RESERVE_BUNDLE, r, pg.id, i, s], conn=conn)
                if not reply[2]:
                    ok = False
                    break
                if conn not in [c for c, _ in done]:
                    done.append((conn, node["node_id"]))
            if ok:
                pg._reserved = done
                fulfil(True)
                return
            for conn, _ in done:   # all or nothing: give back what we got, try again
                _send(w, conn, [P.RELEASE_BUNDLES, pg.id])
        time.sleep(0.2)


def _send(w: Any, conn: Any, msg: list) -> None:
    try:
        (conn or w.node_conn).send(msg)
    except OSError:
        pass


def remove_placement_group(pg: PlacementGroup) -> None:
    from swarm import api
    w = api._require_worker()
    pg._removed.set()
    for conn, _ in pg._reserved:
        _send(w, conn, [P.RELEASE_BUNDLES, pg.id])
    pg._reserved = []


def bundle_shape(shape: dict, pg: PlacementGroup, index: int) -> dict:
    """A task's resource request, rewritten to use the placement group's reserved bundles."""
    if index is not None and index >= pg.bundle_count:
        raise ValueError(f"placement_group_bundle_index {index} is out of range: the group has "
                         f"{pg.bundle_count} bundles")
    out = {}
    for k, v in shape.items():
        out[f"{k}_group_{index}_{pg.id}" if index is not None and index >= 0 else f"{k}_group_{pg.id}"] = v
    if not out:   # a zero-resource task or actor still has to land on the group's node(s)
        key = next(iter(pg.bundle_specs[max(index or 0, 0)]))
        name = f"{key}_group_{index}_{pg.id}" if index is not None and index >= 0 else f"{key}_group_{pg.id}"
        out[name] = 0.0001
    return out
