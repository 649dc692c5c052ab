"""A node's place in the cluster: the head's node table and the worker nodes' link to the head.

    worker node ──REGISTER_NODE (its live actors), then HEARTBEAT + load every heartbeat_s──▶ head
    head ──NODE_VIEW (alive nodes, totals, what is free, load)──▶ every node manager
    head ──NODE_DIED──▶ everyone, when a node misses heartbeats for node_timeout_s or its link closes
    lease requests: route(shape, view) → run here | spill back to a node that fits | wait for one

While the head is away (killed, restarting on its persistent store) a worker node keeps serving its own
work, keeps what it must tell the head in an outbox and retries the link every tick; after
head_reconnect_s without a head it stops. A restarted head loads its node table and actor directory
from the store and gives the nodes it knew a grace period to come back.
"""

from __future__ import annotations

import logging
import selectors
import time
from typing import TYPE_CHECKING

import psutil

from swarm._config import CONFIG
from swarm.core import connection, protocol as P
from swarm.node import cluster
from swarm.node.resources import LeaseRequest

if TYPE_CHECKING:
    from swarm.node.node_manager import Client, NodeManager

log = logging.getLogger("swarm.node")


class Membership:
    def __init__(self, nm: NodeManager) -> None:
        self.nm = nm
        self.node_table = cluster.NodeTable(nm.opts.get("node_timeout_s", CONFIG.node_timeout_s))
        self.view: list[dict] = []
        self.head_link: Client | None = None
        self.head_lost_since: float | None = None
        self.head_heard = time.monotonic()
        self.parked: list[LeaseRequest] = []      # fits no alive node yet: waits for one to join
        self.head_outbox: list[list] = []         # for the head while it is away (it comes back, or we stop)
        self.spread_counter = 0

    def load_control_store(self) -> None:
        """A head started on a persistent store that already holds a cluster: take it back. Nodes that
        were alive get a grace period to reconnect (they retry on their own); the previous head node is
        gone, and so are the actors that lived on it."""
        self.nm.control.storage.check_token(self.nm.token)
        records, names = self.nm.control.load()
        self.nm.directory.names.update(names)
        grace = self.nm.opts.get("node_timeout_s", CONFIG.node_timeout_s) * 2
        for r in records:
            entry = cluster.NodeEntry(r["node_id"], r["address"], r["total"], dict(r["total"]), r["node_ip"],
                                      alive=r["alive"], is_head=False,
                                      transfer_address=r.get("transfer_address"))
            self.node_table.register(entry, now=time.monotonic() + grace)
            if r.get("is_head") and r["alive"]:
                entry.alive = False
                self.nm.control.node_changed(node_record(entry))
        dead_nodes = {n for n, e in self.node_table.nodes.items() if not e.alive}
        for a in self.nm.actors.values():
            if a.get("state") != "DEAD" and a.get("node_id") in dead_nodes:
                a.update(state="DEAD",
                         death_cause=f"its node {a['node_id']} was gone when the head restarted")
                self.nm.directory.forget_name(a)
        self.view = self.node_table.view()
        log.info("control store loaded from %s: %d nodes, %d actors, %d KV namespaces",
                 self.nm.control.storage.url, len(records), len(self.nm.actors), len(self.nm.control.kv.data))

    def send_head(self, msg: list) -> None:
        """To the head, or — while it is away — kept and sent when it is back (bounded: a node without
        its head stops after head_reconnect_s)."""
        if self.head_link is not None:
            self.nm._send(self.head_link, msg)
        elif len(self.head_outbox) < 100_000:
            self.head_outbox.append(msg)

    def connect_head(self) -> bool:
        try:
            # short while retrying: this loop also serves the node's own work meanwhile
            sock = connection.connect(self.nm.opts["head_address"], self.nm.token,
                                      timeout=10.0 if self.head_lost_since is None else 1.0)
        except (OSError, ConnectionError) as e:
            if self.head_lost_since is None:
                raise
            log.warning("cannot reach the head at %s: %s", self.nm.opts["head_address"], e)
            return False
        from swarm.node.node_manager import Client  # (the node manager module imports this one)
        client = Client(sock)
        client.is_head_link = True
        self.nm.clients[sock] = client
        self.nm.sel.register(sock, selectors.EVENT_READ, ("client", client))
        self.head_link = client
        self.head_lost_since = None
        self.head_heard = time.monotonic()
        live_actors = [w.actor_id for w in self.nm.workers.values() if w.actor_id is not None]
        nm = self.nm
        nm._send(client, [P.REGISTER_NODE, nm.node_id, nm.tcp_address, nm._total_public(),
                          nm.opts.get("node_ip") or "127.0.0.1", nm.transfer_address, live_actors])
        outbox, self.head_outbox = self.head_outbox, []
        for msg in outbox:
            self.nm._send(client, msg)
        return True

    def tick(self) -> None:
        driver_pid = self.nm.opts.get("driver_pid")
        if self.nm.exit_with_driver and driver_pid and not psutil.pid_exists(driver_pid):
            # the driver died before it could connect (or its connection was never closed)
            self.nm._stop(f"the driver (pid {driver_pid}) is gone")
            return
        avail = dict(self.nm.scheduler.available)
        if self.nm.is_head:
            me = self.node_table.nodes.get(self.nm.node_id)
            if me is not None:
                me.available = avail
                me.last_seen = time.monotonic()
                me.stats = self.nm._node_stats()
            for dead in self.node_table.expire():
                self.node_died(dead.node_id, f"it missed heartbeats for {self.node_table.timeout_s:g} s")
            self.view = self.node_table.view()
            self.reroute_parked()
        elif self.head_link is not None:
            timeout = self.nm.opts.get("node_timeout_s", CONFIG.node_timeout_s)
            if time.monotonic() - self.head_heard > timeout:
                # a cut network closes nothing: silence is how we learn that the head is gone
                log.warning("the head has not answered for %.0f s", timeout)
                self.nm._drop_client(self.head_link)
            else:
                self.nm._send(self.head_link, [P.HEARTBEAT, self.nm.node_id, avail, self.nm._node_stats()])
        else:
            lost = time.monotonic() - (self.head_lost_since or time.monotonic())
            if lost > self.nm.opts.get("head_reconnect_s", CONFIG.head_reconnect_s):
                self.nm._stop(f"the head was unreachable for {lost:.0f} s")
            else:
                self.connect_head()

    def node_died(self, node_id: str, cause: str) -> None:
        """Head: tell everyone (node managers forward it to their drivers and workers)."""
        log.warning("node %s is dead: %s", node_id, cause)
        entry = self.node_table.nodes.get(node_id)
        transfer = entry.transfer_address if entry is not None else None
        if entry is not None:
            self.nm.control.node_changed(node_record(entry))
        for c in list(self.nm.clients.values()):
            if c.node_id is not None or c.worker_id is not None:
                self.nm._send(c, [P.NODE_DIED, node_id, cause, transfer])
        self.view = self.node_table.view()
        for actor_id, a in list(self.nm.actors.items()):
            if a.get("node_id") == node_id and a.get("state") in ("ALIVE", "PENDING"):
                a.update(state="DEAD", death_cause=f"its node {node_id} died ({cause})")
                self.nm.directory.forget_name(a)
                self.nm.directory.notify_waiters(actor_id)

    def reroute_parked(self) -> None:
        parked, self.parked = self.parked, []
        for req in parked:
            self.lease_request(req, 0)

    def lease_request(self, req: LeaseRequest, hops: int) -> None:
        # our own entry is always live: what is free now, less what requests queued here will take
        me = self.self_view()
        for queued in self.nm.scheduler.queue:
            for k, v in queued.shape.items():
                me["available"][k] = me["available"].get(k, 0.0) - v
        view = [me] + [n for n in self.view if n["node_id"] != self.nm.node_id]
        decision = cluster.route(req.shape, req.strategy, self.nm.node_id, view, hops, req.fn_name or "task",
                                 self.spread_counter)
        if req.strategy and req.strategy.get("type") == "SPREAD":
            self.spread_counter += 1
        if isinstance(decision, cluster.Local):
            self.nm._apply(self.nm.scheduler.request(req))
        elif isinstance(decision, cluster.Spill):
            self.nm._send(req.client, [P.LEASE_SPILLBACK, req.req_id, decision.address])
        elif decision.wait:
            if req not in self.parked:
                self.nm._send(req.client, [P.LEASE_WARNING, req.req_id, decision.message + "; it waits until "
                                        "a node that fits joins the cluster"])
                self.parked.append(req)
        else:
            self.nm._send(req.client, [P.LEASE_FAILED, req.req_id, decision.message])

    def self_view(self) -> dict:
        return {"node_id": self.nm.node_id, "address": self.nm.tcp_address or self.nm.address,
                "total": self.nm._total_public(), "available": dict(self.nm.scheduler.available),
                "node_ip": self.nm.opts.get("node_ip") or "127.0.0.1", "alive": True,
                "is_head": self.nm.is_head}

    def handle(self, c: Client, msg: list) -> None:
        kind = msg[0]
        if kind in (P.NODE_VIEW, P.NODE_DIED, P.NODE_REJECTED) and not c.is_head_link:
            raise ValueError(f"message kind {kind} comes only from the head")
        if kind == P.REGISTER_NODE and self.nm.is_head:
            _, node_id, address, total, node_ip, transfer_address = msg[:6]
            live_actors = set(msg[6]) if len(msg) > 6 else None
            known = self.node_table.nodes.get(node_id)
            if known is not None and not known.alive:   # its work was already redone elsewhere
                self.nm._send(c, [P.NODE_REJECTED, f"node {node_id} was declared dead; start it again to "
                                                f"join as a new node"])
                return
            c.node_id = node_id
            entry = cluster.NodeEntry(node_id, address, total, dict(total), node_ip,
                                      transfer_address=transfer_address)
            self.node_table.register(entry)
            self.nm.control.node_changed(node_record(entry))
            if known is not None and live_actors is not None:   # back after a head restart
                for actor_id, a in list(self.nm.actors.items()):
                    if a.get("node_id") == node_id and a.get("state") == "ALIVE" and \
                            actor_id not in live_actors:
                        a.update(state="DEAD", death_cause="its worker was gone when its node reconnected "
                                                           "to the restarted head")
                        self.nm.directory.forget_name(a)
                        self.nm.directory.notify_waiters(actor_id)
            self.view = self.node_table.view()
            self.nm._send(c, [P.NODE_VIEW, self.view])
            self.reroute_parked()
        elif kind == P.HEARTBEAT and self.nm.is_head:
            if self.node_table.heartbeat(msg[1], msg[2], stats=msg[3] if len(msg) > 3 else None):
                self.nm._send(c, [P.NODE_VIEW, self.view])
            else:
                self.nm._send(c, [P.NODE_REJECTED, "the head declared this node dead; start it again to "
                                                   "rejoin"])
        elif kind == P.NODE_VIEW:
            self.head_heard = time.monotonic()
            before = {n["node_id"] for n in self.view if n["alive"]}
            self.view = msg[1]
            after = {n["node_id"] for n in self.view if n["alive"]}
            for node_id in before - after:
                gone = next((n for n in self.view if n["node_id"] == node_id), {})
                self.forward_node_died(node_id, "the head declared it dead", gone.get("transfer_address"))
            self.reroute_parked()
        elif kind == P.NODE_DIED:
            self.forward_node_died(msg[1], msg[2], msg[3] if len(msg) > 3 else None)
        elif kind == P.NODE_REJECTED:
            self.nm._stop(msg[1])

    def control_request(self, c: Client, msg: list) -> None:
        """[CONTROL, req_id, op, args]: answered by the head's control store; other nodes relay it."""
        if not self.nm.is_head:
            relay_id = next(self.nm.relay_ids)
            self.nm.relays[relay_id] = (c, msg[1])
            self.send_head([P.CONTROL, relay_id, msg[2], msg[3]])
            return
        try:
            self.nm._send(c, [P.CONTROL_REPLY, msg[1], True, self.nm.control.handle(msg[2], msg[3])])
        except Exception as e:
            self.nm._send(c, [P.CONTROL_REPLY, msg[1], False, f"{type(e).__name__}: {e}"])

    def forward_node_died(self, node_id: str, cause: str, transfer: str | None) -> None:
        for c in list(self.nm.clients.values()):
            if c.worker_id is not None and not c.is_head_link:
                self.nm._send(c, [P.NODE_DIED, node_id, cause, transfer])


def node_record(e: cluster.NodeEntry) -> dict:
    """What the control store keeps of a node (not its moment-to-moment availability)."""
    return {k: v for k, v in e.public().items() if k != "available"}
