"""Actor creation and actor calls on the caller's side.

    create_actor ──▶ (args ready) ──REQUEST_LEASE──▶ node manager ──LEASE_GRANTED──▶
        CREATE_ACTOR to the worker, ACTOR_BIND to the node manager; calls queued meanwhile follow it
    handle.m.remote() ──▶ ActorCaller.queue (FIFO: calls from one process run in the order made)
        ──ACTOR_TASK──▶ actor process ──TASK_DONE──▶ values

A process that got a handle from elsewhere asks the node manager where the actor lives. When the
connection to an actor closes, the node manager says why it died, and every pending call fails with
that cause. Everything here runs under the core worker's lock.
"""

from __future__ import annotations

import collections
import functools
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from swarm.core import ids, protocol as P, serialization
from swarm.core.submitter import FunctionEntry
from swarm.exceptions import ActorDiedError, SwarmError, TaskCancelledError, TaskUnschedulableError

if TYPE_CHECKING:
    from swarm.core.connection import Connection
    from swarm.core.core_worker import CoreWorker

log = logging.getLogger(__name__)


class ActorCallRecord:
    __slots__ = ("task_id", "fn", "method", "args_blob", "ref_args", "keep", "num_returns", "return_ids",
                 "deps_pending", "state", "shape", "retries_left", "unsent")

    def __init__(self, task_id: bytes, fn: FunctionEntry, method: str, args_blob: bytes, ref_args: list,
                 keep: Any, num_returns: int) -> None:
        self.task_id = task_id
        self.fn = fn
        self.method = method
        self.args_blob = args_blob
        self.ref_args = ref_args
        self.keep = keep
        self.num_returns = num_returns
        self.return_ids = ids.return_ids(task_id, num_returns)
        self.deps_pending = 0
        self.state = "queued until the actor is reachable"
        self.shape: dict = {}
        self.retries_left = 0
        self.unsent = False


class Creation:
    __slots__ = ("actor_id", "entry", "args_blob", "ref_args", "keep", "info", "deps_pending")

    def __init__(self, actor_id: bytes, entry: FunctionEntry, args_blob: bytes, ref_args: list, keep: Any,
                 info: dict) -> None:
        self.actor_id = actor_id
        self.entry = entry
        self.args_blob = args_blob
        self.ref_args = ref_args
        self.keep = keep
        self.info = info
        self.deps_pending = 0


class ActorCaller:
    """This process's view of one actor."""

    __slots__ = ("actor_id", "info", "address", "conn", "queue", "inflight", "dead", "resolving",
                 "creating", "entries", "terminated", "exit_when_sent")

    def __init__(self, actor_id: bytes, info: dict) -> None:
        self.actor_id = actor_id
        self.info = info
        self.address: str | None = None
        self.conn: Connection | None = None
        self.queue: collections.deque[ActorCallRecord] = collections.deque()
        self.inflight: dict[bytes, ActorCallRecord] = {}
        self.dead: BaseException | None = None
        self.resolving = False
        self.creating = False
        self.entries: dict[str, FunctionEntry] = {}
        self.terminated = False
        self.exit_when_sent = False   # no handle is left, but calls made before are still to be sent


class ActorSubmitter:
    def __init__(self, core: CoreWorker) -> None:
        self.core = core
        self.callers: dict[bytes, ActorCaller] = {}
        self.inflight: dict[bytes, ActorCaller] = {}
        self.creations: dict[int, Creation] = {}
        self.actor_leases: dict[bytes, bytes] = {}     # worker id -> actor id (actors we created)
        self.creations_by_actor: dict[bytes, Creation] = {}   # kept to re-run the constructor
        self.restarts: dict[bytes, int] = {}
        self.placement_failures: dict[bytes, int] = {}

    def caller(self, actor_id: bytes, info: dict) -> ActorCaller:
        c = self.callers.get(actor_id)
        if c is None:
            c = self.callers[actor_id] = ActorCaller(actor_id, info)
        return c

    # -- creation (owner) -------------------------------------------------------------------------
    def create(self, cr: Creation) -> None:
        c = self.caller(cr.actor_id, cr.info)
        c.creating = True
        core = self.core
        for _, ref in cr.ref_args:
            if ref._id not in core.values:
                cr.deps_pending += 1
                core.add_waiter(ref._id, functools.partial(self._creation_dep_ready, cr))
                if ref._id not in core.owned:
                    core.request_borrowed(ref._id)
        if cr.deps_pending == 0:
            self._request_lease(cr)

    def _creation_dep_ready(self, cr: Creation, _oid: bytes) -> None:
        cr.deps_pending -= 1
        if cr.deps_pending == 0:
            self._request_lease(cr)

    def _request_lease(self, cr: Creation) -> None:
        req_id = self.core.submitter.next_request_id()
        self.creations[req_id] = cr
        self.core.submitter._send_node([P.REQUEST_LEASE, req_id, cr.info["shape"], cr.info["class_name"],
                                        cr.info.get("strategy"), 0, self.core.worker_id])

    def _retry_lease(self, cr: Creation) -> None:
        with self.core._lock:
            c = self.callers.get(cr.actor_id)
            if c is not None and c.dead is None and not c.terminated:
                self._request_lease(cr)

    def owns_request(self, req_id: int) -> bool:
        return req_id in self.creations

    def on_spillback(self, req_id: int, address: str) -> bool:
        cr = self.creations.get(req_id)
        if cr is None:
            return False
        msg = [P.REQUEST_LEASE, req_id, cr.info["shape"], cr.info["class_name"], cr.info.get("strategy"), 1,
               self.core.worker_id]
        try:
            self.core.get_conn(address).send(msg)
        except (OSError, ConnectionError, SwarmError):
            self.core.submitter._send_node(msg)
        return True

    def on_node_died(self, node_id: str, cause: str) -> None:
        for worker_id, actor_id in list(self.actor_leases.items()):
            c = self.callers.get(actor_id)
            if c is not None and c.info.get("node_id") == node_id:
                self.on_worker_died(worker_id, {"text": f"its node {node_id} died ({cause})"})

    def on_lease_reply(self, m: list, nm_conn: Any = None) -> None:
        cr = self.creations.pop(m[1])
        c = self.callers.get(cr.actor_id)
        if c is None or c.terminated:  # every handle went away before it could start
            if m[0] == P.LEASE_GRANTED:
                self.core.submitter._send_node([P.RETURN_LEASE, m[2]])
            return
        if m[0] == P.LEASE_FAILED:
            self._mark_dead(c, TaskUnschedulableError(f"cannot create actor {cr.info['class_name']}: {m[2]}"))
            return
        _, _, worker_id, address, gpu_ids, node_id = m
        c.info["node_id"] = node_id
        resolved = []
        for pos, ref in cr.ref_args:
            v = self.core.values.get(ref._id)
            if v is None or v[0] == P.VALUE_ERROR:
                err = serialization.loads(v[1]) if v else SwarmError("argument vanished")
                self.core.submitter._send_node([P.RETURN_LEASE, worker_id])
                self._mark_dead(c, ActorDiedError(
                    f"actor {cr.info['class_name']} could not be created: an argument failed: {err}"))
                return
            if v[0] == P.VALUE_SHM:
                v = [P.VALUE_SHM, v[1], v[2], ref._id, v[3] if len(v) > 3 else None]
            resolved.append([pos, v])
        try:
            conn = self.core.get_conn(address)
        except (OSError, ConnectionError, SwarmError) as e:
            self.core.submitter._return_lease(worker_id, nm_conn)
            cr.deps_pending = 0
            tries = self.placement_failures.get(cr.actor_id, 0) + 1
            self.placement_failures[cr.actor_id] = tries
            if tries <= 10:   # a worker that died between its lease and our call: ask for another,
                # a little later each time (the node manager may not have reaped the dead one yet)
                log.info("the worker leased for actor %s is unreachable (%s); leasing another",
                         cr.info["class_name"], e)
                self.core.timers.call_later(0.05 * tries, lambda: self._retry_lease(cr))
            else:
                self._mark_dead(c, ActorDiedError(
                    f"cannot reach a worker for actor {cr.info['class_name']} after {tries} tries: {e}"))
            return
        opts = {"max_concurrency": cr.info["max_concurrency"], "is_async": cr.info["is_async"]}
        conn.send([P.CREATE_ACTOR, cr.actor_id, cr.entry.fn_id, cr.entry.blob, cr.entry.name, cr.args_blob,
                   resolved, opts, gpu_ids, self.core.address])
        wire_info = dict(cr.info, owner=self.core.address, actor_id=cr.actor_id, address=address,
                         owner_id=self.core.worker_id)
        # the node manager that granted the worker learns it hosts an actor, and tells the head
        bind = [P.ACTOR_BIND, cr.actor_id, worker_id, wire_info]
        if nm_conn is not None:
            nm_conn.send(bind)
        else:
            self.core.submitter._send_node(bind)
        self.actor_leases[worker_id] = cr.actor_id
        self.placement_failures.pop(cr.actor_id, None)
        if cr.info.get("max_restarts"):
            self.creations_by_actor[cr.actor_id] = cr
        else:
            cr.keep = None
        c.creating = False
        c.address = address
        c.conn = conn
        self.pump(c)

    def on_worker_died(self, worker_id: bytes, cause: dict) -> bool:
        actor_id = self.actor_leases.pop(worker_id, None)
        if actor_id is None:
            return False
        c = self.callers.get(actor_id)
        if c is None or c.dead is not None:
            return True
        cr = self.creations_by_actor.get(actor_id)
        max_restarts = c.info.get("max_restarts", 0)
        done = self.restarts.get(actor_id, 0)
        err = ActorDiedError(_cause_text(c.info, cause))
        if cr is None or cause.get("no_restart") or (max_restarts != -1 and done >= max_restarts):
            self._mark_dead(c, err)
            return True
        # restart: run the constructor again in a new worker; retry or fail the calls in flight
        self.restarts[actor_id] = done + 1
        log.info("restarting actor %s (%d/%s): %s", c.info.get("class_name"), done + 1,
                 "inf" if max_restarts == -1 else max_restarts, cause.get("text"))
        self._requeue_or_fail(c, err)
        c.conn = None
        c.address = None
        c.creating = True
        self._request_lease(cr)
        return True

    def _requeue_or_fail(self, c: ActorCaller, err: BaseException) -> None:
        """The actor process died: calls in flight run again if their retries allow, else fail."""
        retry = []
        value = [P.VALUE_ERROR, serialization.serialize(err).inband]
        for tid, rec in list(c.inflight.items()):
            self.inflight.pop(tid, None)
            if rec.unsent:
                rec.unsent = False
                retry.append(rec)
            elif rec.retries_left != 0:
                rec.retries_left -= 1
                retry.append(rec)
            else:
                self.core.submitter._fail_with_value(rec, value)
        c.inflight.clear()
        for rec in reversed(retry):
            c.queue.appendleft(rec)

    def killed(self, actor_id: bytes, info: dict) -> None:
        """``kill()`` from this process: no call made after it returns may run."""
        c = self.caller(actor_id, info)
        if c.dead is None:
            self._mark_dead(c, ActorDiedError(f"The actor {info.get('class_name')} is dead: it was killed by "
                                              f"swarm.kill()"))
        self.creations_by_actor.pop(actor_id, None)

    def terminate(self, actor_id: bytes) -> None:
        """No handle is left anywhere: let the actor finish its queue and exit (unless detached)."""
        c = self.callers.get(actor_id)
        if c is None or c.info.get("detached") or c.terminated:
            return
        if c.queue and c.dead is None:
            # `A.remote().m.remote()`: calls made before the last handle went still run, then it exits
            c.exit_when_sent = True
            return
        c.terminated = True
        if c.conn is not None and c.dead is None:
            try:
                c.conn.send([P.ACTOR_EXIT, actor_id])
            except OSError:
                pass
        elif c.creating:
            c.dead = ActorDiedError("the actor was never used: all its handles went out of scope")
        for wid, aid in list(self.actor_leases.items()):
            if aid == actor_id:
                del self.actor_leases[wid]
        self.callers.pop(actor_id, None)

    # -- calls ------------------------------------------------------------------------------------
    def submit(self, c: ActorCaller, rec: ActorCallRecord) -> None:
        core = self.core
        for rid in rec.return_ids:
            core.owned.add(rid)
            core.submitter.pending_returns[rid] = rec
        for _, ref in rec.ref_args:
            if ref._id not in core.values:
                rec.deps_pending += 1
                core.add_waiter(ref._id, functools.partial(self._dep_ready, c, rec))
                if ref._id not in core.owned:
                    core.request_borrowed(ref._id)
        c.queue.append(rec)
        self.pump(c)

    def _dep_ready(self, c: ActorCaller, rec: ActorCallRecord, _oid: bytes) -> None:
        rec.deps_pending -= 1
        if rec.deps_pending == 0:
            self.pump(c)

    def pump(self, c: ActorCaller) -> None:
        if c.dead is not None:
            err_value = [P.VALUE_ERROR, serialization.serialize(c.dead).inband]
            while c.queue:
                self.core.submitter._fail_with_value(c.queue.popleft(), err_value)
            return
        if c.conn is not None and c.queue and c.conn.peer_closed():
            return   # the actor's process is gone: calls wait here for its restart (or fail with it)
        if c.conn is None:
            if not c.creating and not c.resolving:
                c.resolving = True
                threading.Thread(target=self._resolve, args=(c,), daemon=True).start()
            return
        msgs = []
        values = self.core.values
        while c.queue and c.queue[0].deps_pending == 0:
            rec = c.queue.popleft()
            resolved = None
            failed = None
            if rec.ref_args:
                resolved = []
                for pos, ref in rec.ref_args:
                    v = values[ref._id]
                    if v[0] == P.VALUE_ERROR:
                        failed = v
                        break
                    if v[0] == P.VALUE_SHM:
                        v = [P.VALUE_SHM, v[1], v[2], ref._id, v[3] if len(v) > 3 else None]
                    resolved.append([pos, v])
            if failed is not None:
                self.core.submitter._fail_with_value(rec, failed)
                continue
            rec.state = "sent to the actor"
            c.inflight[rec.task_id] = rec
            self.inflight[rec.task_id] = c
            msgs.append([P.ACTOR_TASK, rec.task_id, c.actor_id, rec.method, rec.args_blob, resolved,
                         rec.num_returns, self.core.address])
        if msgs:
            try:
                c.conn.send_many(msgs)
            except OSError:
                # never delivered, so never ran: they wait for a restart instead of failing
                for m in msgs:
                    rec = c.inflight.get(m[1])  # type: ignore[call-overload]
                    if rec is not None:
                        rec.unsent = True
        if c.exit_when_sent and not c.queue:
            c.exit_when_sent = False
            self.terminate(c.actor_id)

    def _resolve(self, c: ActorCaller) -> None:
        """Ask the node manager where the actor lives (waiting while it is being created)."""
        try:
            actor_id = c.actor_id
            reply = self.core.nm_call(functools.partial(_get_actor_msg, actor_id, True), timeout=3600)
            info = reply[2]
            conn = None
            err: BaseException | None = None
            if info is None:
                err = ActorDiedError(f"actor {c.info.get('class_name')} ({c.actor_id.hex()}) is unknown to "
                                     f"the cluster: it died, or its creator exited")
            elif info.get("state") == "DEAD":
                err = ActorDiedError(_cause_text(info, {"text": info.get("death_cause")}))
            else:
                conn = self.core.get_conn(info["address"])
        except (OSError, ConnectionError, SwarmError) as e:
            err = ActorDiedError(f"cannot reach actor {c.info.get('class_name')}: {e}")
        with self.core._lock:
            c.resolving = False
            if err is not None:
                self._mark_dead(c, err)
            else:
                c.address = info["address"]  # type: ignore[index]
                c.conn = conn
                self.pump(c)

    def cancel(self, rec: ActorCallRecord) -> None:
        actor_id = self._caller_of(rec)
        c = self.callers.get(actor_id) if actor_id is not None else None
        if c is None:
            return
        if rec in c.queue:
            c.queue.remove(rec)
            self.core.submitter._fail(rec, TaskCancelledError(f"actor call {rec.fn.name} was cancelled"))
        elif rec.task_id in c.inflight:
            if c.conn is not None:
                try:
                    c.conn.send([P.CANCEL_TASK, rec.task_id, False, False])
                except OSError:
                    pass
            # the actor may be busy with an earlier call for a long time: fail it now, ignore its answer
            del c.inflight[rec.task_id]
            self.inflight.pop(rec.task_id, None)
            self.core.submitter._fail(rec, TaskCancelledError(f"actor call {rec.fn.name} was cancelled"))

    def _caller_of(self, rec: ActorCallRecord) -> bytes | None:
        c = self.inflight.get(rec.task_id)
        if c is not None:
            return c.actor_id
        for c in self.callers.values():
            if rec in c.queue:
                return c.actor_id
        return None

    def on_task_done(self, conn: Connection, m: list) -> None:
        task_id = m[1]
        c = self.inflight.pop(task_id)
        rec = c.inflight.pop(task_id, None)
        if rec is not None:
            self.core.submitter.store_returns(rec, m[2], m[4], conn)
            self.core.record_event(rec, m, actor_id=c.actor_id)

    def on_conn_closed(self, conn: Connection) -> None:
        # the owner learns of its actors' deaths from the node manager (WORKER_DIED), with the cause
        lost = [c for c in self.callers.values() if c.conn is conn and c.dead is None
                and c.actor_id not in self.core.owned_actors]
        if lost:
            threading.Thread(target=self._diagnose, args=(lost, conn.peer_address), daemon=True).start()

    def _diagnose(self, callers: list, old_address: str | None) -> None:
        """The connection to an actor closed: ask the node manager whether it died (and why) or was
        restarted elsewhere; fail or re-send what was pending accordingly."""
        for c in callers:
            info = None
            deadline = time.monotonic() + 10.0
            while time.monotonic() < deadline:
                try:
                    msg = functools.partial(_get_actor_msg, c.actor_id, True)
                    info = self.core.nm_call(msg, timeout=60)[2]
                except (OSError, SwarmError):
                    info = None
                    break
                if info is None or info.get("state") == "DEAD" or info.get("address") != old_address:
                    break
                time.sleep(0.05)  # the node manager has not noticed the death yet
            with self.core._lock:
                if c.dead is not None:
                    continue
                if info is None or info.get("state") != "ALIVE" or info.get("address") == old_address:
                    text = (info or {}).get("death_cause") or "its connection closed"
                    self._mark_dead(c, ActorDiedError(_cause_text(c.info, {"text": text})))
                    continue
                why = info.get("last_death_cause") or "it restarted"
                err = ActorDiedError(_cause_text(c.info, {"text": why}))
                self._requeue_or_fail(c, err)
                c.conn = None
                c.address = None
                self.pump(c)  # resolves the new address

    def _mark_dead(self, c: ActorCaller, err: BaseException) -> None:
        c.dead = err
        c.conn = None
        value = [P.VALUE_ERROR, serialization.serialize(err).inband]
        for tid, rec in list(c.inflight.items()):
            self.inflight.pop(tid, None)
            self.core.submitter._fail_with_value(rec, value)
        c.inflight.clear()
        while c.queue:
            self.core.submitter._fail_with_value(c.queue.popleft(), value)


def _get_actor_msg(actor_id: bytes, wait_alive: bool, req_id: int) -> list:
    return [P.GET_ACTOR, req_id, actor_id, None, None, wait_alive]


def _cause_text(info: dict, cause: dict) -> str:
    name = info.get("class_name", "actor")
    text = cause.get("text") or "unknown cause"
    msg = f"The actor {name} is dead: {text}"
    tail = cause.get("stderr_tail")
    if tail:
        msg += "\nlast lines it wrote to stderr:\n" + tail
    return msg


# -- entry points used by swarm.actor ---------------------------------------------------------------
def create_actor(core: CoreWorker, entry: FunctionEntry, args: tuple, kwargs: dict, info: dict,
                 get_if_exists: bool) -> Any:
    from swarm.actor import ActorHandle
    from swarm.core.core_worker import encode_args

    actor_id = core.ids.put_id()
    # registered before the handle exists anywhere, so any holder can look it up (and wait for it);
    # only a name needs the answer (is it taken?) before we go on
    wire = dict(info, owner=core.address, actor_id=actor_id, owner_id=core.worker_id)
    if not info.get("name"):
        core.node_conn.send([P.REGISTER_ACTOR, 0, actor_id, wire])
        existing = None
    else:
        existing = core.nm_call(lambda r: [P.REGISTER_ACTOR, r, actor_id, wire])[2]
    if existing is not None:
        if get_if_exists:
            return ActorHandle(existing["actor_id"], existing, existing["owner"], core)
        raise ValueError(f"an actor named {info['name']!r} already exists in namespace "
                         f"{info['namespace']!r}: pick another name, kill it first, or pass "
                         f"get_if_exists=True to get a handle to it")
    blob, ref_args, keep = encode_args(core, args, kwargs)
    handle = ActorHandle(actor_id, info, core.address, core, counted=True)
    with core._lock:
        core.refs[actor_id] = core.refs.get(actor_id, 0) + 1
        core.owned.add(actor_id)
        core.owned_actors.add(actor_id)
        core.actor_submitter.create(Creation(actor_id, entry, blob, ref_args, keep, info))
    return handle


def submit_call(core: CoreWorker, handle: Any, method: str, args: tuple, kwargs: dict,
                num_returns: int) -> list:
    from swarm.core.core_worker import encode_args
    from swarm.object_ref import ObjectRef

    if core._decrefs:
        core.process_decrefs()
    blob, ref_args, keep = encode_args(core, args, kwargs)
    address = core.address
    with core._lock:
        c = core.actor_submitter.caller(handle._id, handle._info)
        fn = c.entries.get(method)
        if fn is None:
            fn = c.entries[method] = FunctionEntry(b"", b"", f"{handle._info['class_name']}.{method}")
        rec = ActorCallRecord(core.ids.task_id(), fn, method, blob, ref_args, keep, num_returns)
        rec.retries_left = handle._info.get("max_task_retries", 0)
        refs = [ObjectRef(rid, address, core, True) for rid in rec.return_ids]
        for rid in rec.return_ids:
            core.refs[rid] = 1
        core.actor_submitter.submit(c, rec)
    return refs
