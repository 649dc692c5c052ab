"""The cluster view and where a lease request should go. Pure state and decisions, no I/O.

    head:   NodeTable  ◀── REGISTER_NODE / HEARTBEAT (every node, every heartbeat_s)
                       ──▶ NODE_VIEW (the alive nodes, their totals and what is free)
                       ──▶ NODE_DIED when a node misses heartbeats for node_timeout_s
    every node: route(request, view) -> Local | Spill(node) | Infeasible
"""

from __future__ import annotations

import dataclasses
import time

EPS = 1e-9


@dataclasses.dataclass
class NodeEntry:
    node_id: str
    address: str                 # the node manager's tcp address
    total: dict[str, float]
    available: dict[str, float]
    node_ip: str = "127.0.0.1"
    alive: bool = True
    last_seen: float = 0.0
    is_head: bool = False
    transfer_address: str | None = None
    stats: dict | None = None     # what the node last said about its load (store, workers, cpu, memory)

    def public(self) -> dict:
        return {"node_id": self.node_id, "address": self.address, "total": self.total,
                "available": self.available, "node_ip": self.node_ip, "alive": self.alive,
                "is_head": self.is_head, "transfer_address": self.transfer_address, "stats": self.stats}


class NodeTable:
    """The head's list of nodes; a node is dead once it misses heartbeats for ``timeout_s``."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.nodes: dict[str, NodeEntry] = {}

    def register(self, entry: NodeEntry, now: float | None = None) -> None:
        entry.last_seen = time.monotonic() if now is None else now
        self.nodes[entry.node_id] = entry

    def heartbeat(self, node_id: str, available: dict, now: float | None = None,
                  stats: dict | None = None) -> bool:
        """False when the node is unknown or was declared dead: it must join again as a new node."""
        e = self.nodes.get(node_id)
        if e is None or not e.alive:
            return False
        e.available = available
        if stats is not None:
            e.stats = stats
        e.last_seen = time.monotonic() if now is None else now
        return True

    def expire(self, now: float | None = None) -> list[NodeEntry]:
        now = time.monotonic() if now is None else now
        dead = []
        for e in self.nodes.values():
            if e.alive and not e.is_head and now - e.last_seen > self.timeout_s:
                e.alive = False
                dead.append(e)
        return dead

    def mark_dead(self, node_id: str) -> NodeEntry | None:
        e = self.nodes.get(node_id)
        if e is None or not e.alive:
            return None
        e.alive = False
        return e

    def view(self) -> list[dict]:
        return [e.public() for e in self.nodes.values()]


@dataclasses.dataclass
class Local:
    pass


@dataclasses.dataclass
class Spill:
    node_id: str
    address: str


@dataclasses.dataclass
class Unschedulable:
    message: str
    wait: bool          # True: no alive node fits now, but one may join (cluster); False: never


def _fits(shape: dict, res: dict) -> bool:
    return all(res.get(k, 0.0) + EPS >= v for k, v in shape.items())


def _fmt(res: dict) -> str:
    return ", ".join(f"{v:g} {k}" for k, v in sorted(res.items()) if k != "object_store_memory") or "nothing"


def route(shape: dict, strategy: dict | None, local_id: str, view: list[dict], hops: int,
          fn_name: str = "task", spread_counter: int = 0) -> Local | Spill | Unschedulable:
    """Where a lease for ``shape`` should be granted: here, on another node, or nowhere (yet)."""
    alive = [n for n in view if n["alive"]]
    local = next((n for n in alive if n["node_id"] == local_id), None)
    strategy = strategy or {}
    target = strategy.get("node_id")
    if target is not None:
        node = next((n for n in alive if n["node_id"] == target), None)
        if node is not None and _fits(shape, node["total"]):
            return Local() if node["node_id"] == local_id else Spill(node["node_id"], node["address"])
        if not strategy.get("soft"):
            why = "is not alive" if node is None else f"has only {_fmt(node['total'])}"
            return Unschedulable(f"{fn_name} is pinned to node {target} (NodeAffinitySchedulingStrategy, "
                                 f"soft=False), which {why}", wait=False)
    feasible = [n for n in alive if _fits(shape, n["total"])]
    if not feasible:
        total: dict[str, float] = {}
        for n in alive:
            for k, v in n["total"].items():
                total[k] = total.get(k, 0.0) + v
        return Unschedulable(
            f"cannot schedule {fn_name}: it needs {_fmt(shape)} but no node of the cluster has that "
            f"(cluster total: {_fmt(total)} on {len(alive)} node(s)); lower the request or add a node that "
            f"has it", wait=len(view) > 1 or any(not n.get("is_head", True) for n in view))
    if strategy.get("type") == "SPREAD" and hops == 0:
        order = sorted(feasible, key=lambda n: n["node_id"])
        node = order[spread_counter % len(order)]
        return Local() if node["node_id"] == local_id else Spill(node["node_id"], node["address"])
    if local is not None and _fits(shape, local["total"]) and (_fits(shape, local["available"]) or hops > 0):
        return Local()
    free = [n for n in feasible if n["node_id"] != local_id and _fits(shape, n["available"])]
    if free:
        best = max(free, key=lambda n: sum(n["available"].get(k, 0.0) - v for k, v in shape.items()))
        return Spill(best["node_id"], best["address"])
    if local is not None and _fits(shape, local["total"]):
        return Local()          # busy everywhere: wait here, where it fits
    node = feasible[0]
    return Spill(node["node_id"], node["address"])


def plan_bundles(bundles: list[dict], strategy: str, view: list[dict], local_id: str) -> list[dict] | None:
    """A node for each placement-group bundle (None: not possible right now)."""
    alive = [dict(n, available=dict(n["available"])) for n in view if n["alive"]]
    alive.sort(key=lambda n: (n["node_id"] != local_id, -n["available"].get("CPU", 0.0)))

    def take(node: dict, shape: dict) -> None:
        for k, v in shape.items():
            node["available"][k] = node["available"].get(k, 0.0) - v

    if strategy in ("PACK", "STRICT_PACK"):
        total: dict[str, float] = {}
        for b in bundles:
            for k, v in b.items():
                total[k] = total.get(k, 0.0) + v
        for node in alive:
            if _fits(total, node["available"]):
                return [node] * len(bundles)
        if strategy == "STRICT_PACK":
            return None
    plan: list[dict] = []
    used: set[str] = set()
    for b in bundles:
        fresh = [n for n in alive if n["node_id"] not in used and _fits(b, n["available"])]
        pool = fresh or ([] if strategy == "STRICT_SPREAD" else
                         [n for n in alive if _fits(b, n["available"])])
        if not pool:
            return None
        node = pool[0] if strategy in ("PACK",) else max(pool, key=lambda n: n["available"].get("CPU", 0.0))
        take(node, b)
        used.add(node["node_id"])
        plan.append(node)
    return plan
