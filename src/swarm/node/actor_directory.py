"""Actors as the node managers see them. On the head: the cluster's actor directory (who lives where,
names, restarts, death causes), waiters for actors still being created, and deadlock detection between
actors blocked on each other. On other nodes: what concerns their own workers, with the rest passed on
to the head (replies relayed back to the asker).

    core worker ──REGISTER_ACTOR / ACTOR_BIND / GET_ACTOR / KILL_ACTOR──▶ its node manager ──▶ head
    head: ActorDirectory ──ACTOR_INFO──▶ asker (relayed)      ──KILL_ACTOR──▶ the actor's node
    node manager: an actor's worker exited ──ACTOR_EXITED──▶ head: RESTARTING (its owner re-creates it)
                                                                    or DEAD (with the cause)
The directory's entries are control-store records (control/store.py): with a persistent storage every
change is written behind, so a restarted head knows its actors again.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from swarm.core import protocol as P

if TYPE_CHECKING:
    from swarm.control.store import ActorTable
    from swarm.node.node_manager import Client, NodeManager, Worker

log = logging.getLogger("swarm.node")


class ActorDirectory:
    def __init__(self, nm: NodeManager, actors: ActorTable) -> None:
        self.nm = nm
        self.actors = actors                            # actor id -> its record
        self.names: dict[tuple[str, str], bytes] = {}   # (namespace, name) -> actor id, while not dead
        self.waiters: dict[bytes, list] = {}            # actor id -> (client, req) waiting for it to start
        self.causes: dict[bytes, str] = {}              # what an actor said before it exited
        self.gone_owners: set[bytes] = set()            # owners that disconnected (no restarts for them)
        self.wait_edges: dict[bytes, tuple] = {}        # actor -> (worker, via node link, awaited actors)

    def handle(self, c: Client, msg: list) -> None:
        """The actor directory lives on the head; other node managers keep only what concerns their
        own workers and pass the rest on (relaying replies back to the asker)."""
        kind = msg[0]
        if not self.nm.is_head and not c.is_head_link:
            if kind == P.ACTOR_BIND:
                self.nm._bind_local_worker(msg[1], msg[2], msg[3])
                bound = self.nm.workers.get(msg[2])
                info = dict(msg[3], node_id=self.nm.node_id, pid=bound.pid if bound is not None else None)
                msg = [P.ACTOR_BIND, msg[1], msg[2], info]
            elif kind == P.ACTOR_DEAD:
                self.causes[msg[1]] = msg[2]
            elif kind == P.ACTOR_INFO:
                return
            if kind in (P.REGISTER_ACTOR, P.GET_ACTOR):
                relay_id = next(self.nm.relay_ids)
                self.nm.relays[relay_id] = (c, msg[1])
                msg = [kind, relay_id, *msg[2:]]
            # (while the head is away, the asker waits: bounded by its own deadline)
            self.nm.cluster.send_head(msg)
            return
        if kind == P.ACTOR_INFO:           # a relayed reply from the head
            asker = self.nm.relays.pop(msg[1], None)
            if asker is not None:
                self.nm._send(asker[0], [P.ACTOR_INFO, asker[1], msg[2]])
            return
        if kind == P.KILL_ACTOR and not self.nm.is_head:   # the head asks us to kill one of our workers
            _, actor_id, cause, no_restart = msg
            for host in self.nm.workers.values():
                if host.actor_id == actor_id:
                    host.no_restart = no_restart
                    self.nm._kill(host, cause)
            return
        a: dict | None
        if kind == P.REGISTER_ACTOR:
            _, req_id, actor_id, info = msg
            if info.get("name"):
                key = (info["namespace"], info["name"])
                existing = self.actors.get(self.names.get(key, b""))
                if existing is not None and existing["state"] != "DEAD":
                    self.nm._send(c, [P.ACTOR_INFO, req_id, existing])
                    return
                self.names[key] = actor_id
            if actor_id not in self.actors:   # (a bind that overtook this message already made it)
                self.actors[actor_id] = dict(info, state="PENDING", owner_id=info.get("owner_id"))
            if req_id:
                self.nm._send(c, [P.ACTOR_INFO, req_id, None])
        elif kind == P.ACTOR_BIND:
            _, actor_id, worker_id, info = msg
            a = self.actors.setdefault(actor_id, dict(info))
            assert a is not None
            if a.get("state") == "DEAD":   # killed while it was being created
                if c.node_id is None:
                    late = self.nm.workers.get(worker_id)
                    if late is not None:
                        self.nm._kill(late, a.get("death_cause") or "it was killed")
                else:
                    self.nm._send(c, [P.KILL_ACTOR, actor_id, a.get("death_cause") or "it was killed", True])
                return
            if c.node_id is None:   # bound on this (head) node
                w = self.nm.workers.get(worker_id)
                if w is None:
                    a.update(state="DEAD", death_cause="its worker died before the actor started")
                    self.notify_waiters(actor_id)
                    return
                self.nm._bind_local_worker(actor_id, worker_id, info)
                a.update(pid=w.pid, node_id=self.nm.node_id)
            else:
                a.update(node_id=c.node_id, pid=info.get("pid"))
            if a.get("state") == "RESTARTING":
                a["num_restarts"] = a.get("num_restarts", 0) + 1
            a.update(state="ALIVE", address=info.get("address"), worker_id=worker_id)
            self.notify_waiters(actor_id)
        elif kind == P.GET_ACTOR:
            _, req_id, actor_id, name, namespace, wait_alive = msg
            if actor_id is None:
                actor_id = self.names.get((namespace, name))
            a = self.actors.get(actor_id) if actor_id is not None else None
            if a is not None and wait_alive and a["state"] in ("PENDING", "RESTARTING"):
                self.waiters.setdefault(actor_id, []).append((c, req_id))
            else:
                self.nm._send(c, [P.ACTOR_INFO, req_id, a])
        elif kind == P.KILL_ACTOR:
            _, actor_id, cause, no_restart = msg
            a = self.actors.get(actor_id)
            if a is None or a["state"] == "DEAD":
                return
            a["no_restart"] = no_restart
            if a.get("node_id") in (None, self.nm.node_id):
                victim = self.nm.workers.get(a.get("worker_id", b""))
                if victim is not None:
                    victim.no_restart = no_restart
                    self.nm._kill(victim, cause)
                    return
            else:
                node = next((cl for cl in self.nm.clients.values() if cl.node_id == a["node_id"]), None)
                if node is not None:
                    self.nm._send(node, msg)
                    return
            a.update(state="DEAD", death_cause=cause)
            self.forget_name(a)
            self.notify_waiters(actor_id)
        elif kind == P.ACTOR_DEAD:
            self.causes[msg[1]] = msg[2]
        elif kind == P.ACTOR_EXITED:
            self.state_after_death(msg[1], msg[2], msg[3])
        elif kind == P.CLIENT_GONE:
            self.gone_owners.add(msg[1])

    def handle_wait_edges(self, c: Client, msg: list) -> None:
        """Actors blocked in ``get`` on calls to other actors: a cycle can never finish, so every
        actor in it is told (its ``get`` raises DeadlockError naming the cycle)."""
        if msg[0] == P.DEADLOCK:   # from the head, for one of our workers
            target = self.nm.by_worker_id.get(msg[1])
            if target is not None:
                self.nm._send(target, msg)
            return
        if not self.nm.is_head:
            if self.nm.cluster.head_link is not None:
                self.nm._send(self.nm.cluster.head_link, msg)
            return
        _, actor_id, worker_id, awaited = msg
        if not awaited:
            self.wait_edges.pop(actor_id, None)
            return
        self.wait_edges[actor_id] = (worker_id, c if c.node_id is not None else None, list(awaited))
        cycle = self._find_cycle(actor_id)
        if cycle is None:
            return
        names = [f"{self.actors.get(a, {}).get('class_name', 'actor')}({a.hex()[:8]}…{a.hex()[-6:]})"
                 for a in cycle]
        text = ("deadlock: these actors wait on each other in a cycle and none can ever finish: "
                + " -> ".join(names + names[:1])
                + "; make one of the calls without waiting (pass refs instead of get), or give the actors "
                  "max_concurrency > 1")
        log.warning(text)
        for a in cycle:
            wid, via, _ = self.wait_edges.pop(a)
            if via is not None:
                self.nm._send(via, [P.DEADLOCK, wid, text])
            else:
                target = self.nm.by_worker_id.get(wid)
                if target is not None:
                    self.nm._send(target, [P.DEADLOCK, wid, text])

    def _find_cycle(self, start: bytes) -> list | None:
        path = [start]
        seen = {start}

        def walk(node: bytes) -> list | None:
            for nxt in self.wait_edges.get(node, (None, None, []))[2]:
                if nxt == start:
                    return list(path)
                if nxt in seen or nxt not in self.wait_edges:
                    continue
                seen.add(nxt)
                path.append(nxt)
                found = walk(nxt)
                if found:
                    return found
                path.pop()
            return None
        return walk(start)

    def worker_died(self, w: Worker, exit_text: str) -> str:
        """An actor's worker exited here: its cause in words; the head updates the directory."""
        cause = self.causes.pop(w.actor_id, None) or w.killed_reason  # type: ignore[arg-type]
        if not cause:
            cause = f"its worker process (pid {w.pid}) {exit_text}"
            tail = "\n".join(w.stderr_tail)
            if tail:
                cause += "; last lines it wrote to stderr:\n" + tail
        if self.nm.is_head:
            self.state_after_death(w.actor_id, cause, w.no_restart)  # type: ignore[arg-type]
        else:
            self.nm.cluster.send_head([P.ACTOR_EXITED, w.actor_id, cause, w.no_restart])
        return cause

    def state_after_death(self, actor_id: bytes, cause: str, no_restart: bool) -> None:
        a = self.actors.get(actor_id)
        if a is None:
            return
        max_restarts = a.get("max_restarts", 0)
        owner_alive = a.get("owner_id") not in self.gone_owners
        if (not no_restart and not a.get("no_restart") and owner_alive
                and (max_restarts == -1 or a.get("num_restarts", 0) < max_restarts)):
            a.update(state="RESTARTING", last_death_cause=cause)   # the owner re-creates it
            return
        a.update(state="DEAD", death_cause=cause)
        self.forget_name(a)
        self.notify_waiters(actor_id)

    def forget_name(self, a: dict) -> None:
        key = (a.get("namespace"), a.get("name"))
        if a.get("name") and self.names.get(key) == a.get("actor_id"):  # type: ignore[arg-type]
            del self.names[key]  # type: ignore[arg-type]

    def notify_waiters(self, actor_id: bytes) -> None:
        for c, req_id in self.waiters.pop(actor_id, []):
            self.nm._send(c, [P.ACTOR_INFO, req_id, self.actors.get(actor_id)])
