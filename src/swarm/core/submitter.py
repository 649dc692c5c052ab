"""Task submission on the owner side: dependencies, leases, pipelining, retries.

    submit ──▶ waiting on deps ──(all ready)──▶ KeyQueue.ready ──pump──▶ Lease (a leased worker)
                                                  │  ▲                      │ PUSH_TASK (batched)
                       REQUEST_LEASE ◀────────────┘  └── TASKS_RETURNED      ▼
                       (node manager)                    (worker blocked)  TASK_DONE ──▶ values

Tasks with the same resource shape share a queue and its leases. A lease takes several tasks at once
when the function is short (the worker never idles for a round trip) and one at a time when it is
long (so no task waits behind a slow one while a CPU is free). A lease idle for ``lease_linger_s`` is
returned to the node manager. Everything here runs under the core worker's lock.
"""

from __future__ import annotations

import collections
import functools
import itertools
import logging
import math
import time
from typing import TYPE_CHECKING, Any

from swarm._config import CONFIG
from swarm.core import ids, protocol as P, serialization
from swarm.exceptions import (
    NodeDiedError,
    ObjectLostError,
    OutOfMemoryError,
    SwarmError,
    TaskCancelledError,
    TaskError,
    TaskUnschedulableError,
    WorkerCrashedError,
)

if TYPE_CHECKING:
    from swarm.core.connection import Connection
    from swarm.core.core_worker import CoreWorker

log = logging.getLogger(__name__)

MAX_PENDING_LEASE_REQUESTS = 8
PRIME_DEPTH = 2
QUEUED = "queued, waiting for a worker"
EMPTY_ARGS = serialization.serialize(((), {})).inband


class FunctionEntry:
    """A remote function as shipped: pickled once, sent to each worker once, cached there by id."""

    __slots__ = ("fn_id", "blob", "name")

    def __init__(self, fn_id: bytes, blob: bytes, name: str) -> None:
        self.fn_id = fn_id
        self.blob = blob
        self.name = name


class TaskRecord:
    __slots__ = ("task_id", "fn", "args_blob", "ref_args", "keep", "num_returns", "return_ids", "key",
                 "shape", "retries_left", "retry_exceptions", "deps_pending", "lease", "state", "cancelled",
                 "oom_retries_left", "strategy", "long")

    def __init__(self, task_id: bytes, fn: FunctionEntry, args_blob: bytes, ref_args: list, keep: Any,
                 num_returns: int, shape: dict, max_retries: int, retry_exceptions: Any) -> None:
        self.task_id = task_id
        self.fn = fn
        self.args_blob = args_blob
        self.ref_args = ref_args          # [(position or keyword, ObjectRef)]
        self.keep = keep                  # refs nested in the arguments, alive until the task is done
        self.num_returns = num_returns
        self.return_ids = ids.return_ids(task_id, num_returns)
        self.shape = shape
        self.key: tuple = tuple(sorted(shape.items()))
        self.strategy: dict | None = None
        self.retries_left = max_retries
        self.retry_exceptions = retry_exceptions
        self.deps_pending = 0
        self.lease: Lease | None = None
        self.state = "waiting for its arguments"
        self.cancelled = False
        self.long = False       # sent while its function's run time was unknown or long
        self.oom_retries_left = CONFIG.task_oom_retries


class Lease:
    __slots__ = ("worker_id", "address", "conn", "inflight", "idle_since", "gpu_ids", "key", "blocked",
                 "sent_functions", "nm_conn", "node_id", "long", "progress_at", "reclaiming")

    def __init__(self, worker_id: bytes, address: str, conn: Connection, gpu_ids: list, key: tuple,
                 nm_conn: Any = None, node_address: str | None = None) -> None:
        self.nm_conn = nm_conn          # the node manager that granted it (None: ours)
        self.node_id = node_address
        self.worker_id = worker_id
        self.address = address
        self.conn = conn
        self.inflight: dict[bytes, TaskRecord] = {}
        self.idle_since: float | None = time.monotonic()
        self.gpu_ids = gpu_ids
        self.key = key
        self.blocked = False
        self.long = 0                   # tasks in flight here that are (or may be) long
        self.sent_functions: set[bytes] = set()
        self.progress_at = 0.0          # when its current task began, as far as we know (push or done)
        self.reclaiming = False         # asked for its queued tasks back; until the answer or a done


class KeyQueue:
    __slots__ = ("shape", "ready", "leases", "pending_requests", "strategy", "remote_requests")

    def __init__(self, shape: dict, strategy: dict | None = None) -> None:
        self.shape = shape
        self.strategy = strategy
        self.ready: collections.deque[TaskRecord] = collections.deque()
        self.leases: dict[bytes, Lease] = {}
        self.pending_requests: set[int] = set()
        self.remote_requests: dict[int, Any] = {}   # sent on to another node: req id -> its connection


# a worker's queue is asked back once its running task is this late and 50x past its function's estimate
RECLAIM_AFTER_S = 0.1


def pipeline_depth(exec_ema: float | None) -> int:
    """How many tasks of a function to queue on one worker: enough to cover a round trip."""
    if exec_ema is None:  # unknown length: never queue a task behind one that may be long
        return 1
    d = CONFIG.pipeline_target_s / max(exec_ema, 1e-6)
    return max(1, min(CONFIG.pipeline_max_depth, int(d)))


class TaskSubmitter:
    def __init__(self, core: CoreWorker) -> None:
        self.core = core
        self.queues: dict[tuple, KeyQueue] = {}
        self.lease_requests: dict[int, KeyQueue] = {}
        self.leases: dict[bytes, Lease] = {}
        self.pending_returns: dict[bytes, Any] = {}
        self.dirty: list[KeyQueue] = []
        self.exec_ema: dict[bytes, float] = {}
        # lineage: finished tasks whose outputs live in shared memory, to re-run if a copy is lost
        self.lineage: collections.OrderedDict[bytes, TaskRecord] = collections.OrderedDict()
        self._req_ids = iter(range(1, 1 << 62))

    # -- submission -------------------------------------------------------------------------------
    def submit(self, rec: TaskRecord) -> None:
        core = self.core
        for rid in rec.return_ids:
            core.owned.add(rid)
            self.pending_returns[rid] = rec
        self.submit_again(rec)

    def submit_again(self, rec: TaskRecord) -> None:
        """Queue ``rec`` once its arguments exist (they may be being rebuilt too)."""
        core = self.core
        for _, ref in rec.ref_args:
            oid = ref._id
            if oid not in core.values:
                rec.deps_pending += 1
                core.add_waiter(oid, functools.partial(self._dep_ready, rec))
                if oid not in core.owned:
                    core.request_borrowed(oid)
        if rec.deps_pending == 0:
            self._enqueue(rec)

    def _dep_ready(self, rec: TaskRecord, _oid: bytes) -> None:
        rec.deps_pending -= 1
        if rec.deps_pending == 0 and not rec.cancelled:
            self._enqueue(rec)

    def _enqueue(self, rec: TaskRecord, front: bool = False) -> None:
        kq = self.queues.get(rec.key)
        if kq is None:
            kq = self.queues[rec.key] = KeyQueue(rec.shape, rec.strategy)
        rec.state = QUEUED
        if front:
            kq.ready.appendleft(rec)
        else:
            kq.ready.append(rec)
        # From the submitting thread, only prime each worker with PRIME_DEPTH tasks: the rest go in
        # batches when replies come back (pump_dirty), one send carrying many tasks.
        self.pump(kq, PRIME_DEPTH)

    def pump_dirty(self) -> None:
        dirty, self.dirty = self.dirty, []
        for kq in dirty:
            self.pump(kq)

    def pump(self, kq: KeyQueue, max_depth: int | None = None) -> None:
        ready = kq.ready
        ema = self.exec_ema
        target = CONFIG.pipeline_target_s
        if ready and kq.leases:
            while ready:
                head = ema.get(ready[0].fn.fn_id)
                depth = pipeline_depth(head)
                if max_depth is not None and max_depth < depth:
                    depth = max_depth
                best = None
                for lease in kq.leases.values():
                    # nothing queues behind a task that is (or may be) long: it would wait for nothing
                    if lease.blocked or (lease.long and lease.inflight):
                        continue
                    n = len(lease.inflight)
                    if n < depth and (best is None or n < len(best.inflight)):
                        best = lease
                if best is None:
                    break
                room = depth - len(best.inflight)
                msgs = []
                while room and ready:
                    rec = ready.popleft()
                    msg = self._build_push(rec, best)
                    if msg is not None:
                        msgs.append(msg)
                        room -= 1
                        length = ema.get(rec.fn.fn_id)
                        if length is None or length > target:
                            rec.long = True
                            best.long += 1
                            break   # a long one goes last on this worker
                if msgs:
                    if best.idle_since is not None or len(best.inflight) == len(msgs):
                        best.progress_at = time.monotonic()
                    best.idle_since = None
                    try:
                        best.conn.send_many(msgs)
                    except OSError:
                        pass  # the worker died: WORKER_DIED from the node manager retries these
        if ready:
            want = min(math.ceil(len(ready) / pipeline_depth(self.exec_ema.get(ready[0].fn.fn_id))),
                       MAX_PENDING_LEASE_REQUESTS)
            for _ in range(want - len(kq.pending_requests)):
                self._request_lease(kq, ready[0].fn.name)
        elif kq.pending_requests:
            ids_ = list(kq.pending_requests)
            kq.pending_requests.clear()
            for r in ids_:
                self.lease_requests.pop(r, None)
            self._send_node([P.CANCEL_LEASE_REQUESTS, ids_])

    def _build_push(self, rec: TaskRecord, lease: Lease) -> list | None:
        values = self.core.values
        resolved = None
        if rec.ref_args:
            resolved = []
            for pos, ref in rec.ref_args:
                v = values.get(ref._id)
                if v is None:  # freed meanwhile (cannot happen while rec holds the ref)
                    self._fail(rec, SwarmError(f"argument {ref} vanished before the task ran"))
                    return None
                if v[0] == P.VALUE_ERROR:
                    self._fail_with_value(rec, v)
                    return None
                if v[0] == P.VALUE_SHM:
                    v = [P.VALUE_SHM, v[1], v[2], ref._id, v[3] if len(v) > 3 else None]
                resolved.append([pos, v])
        fn = rec.fn
        blob = None
        if fn.fn_id not in lease.sent_functions:
            lease.sent_functions.add(fn.fn_id)
            blob = fn.blob
        lease.inflight[rec.task_id] = rec
        rec.lease = lease
        rec.state = f"running on worker {lease.worker_id.hex()}"
        return [P.PUSH_TASK, rec.task_id, fn.fn_id, blob, fn.name, rec.args_blob, resolved, rec.num_returns,
                lease.gpu_ids, self.core.address]

    def next_request_id(self) -> int:
        return next(self._req_ids)

    def _request_lease(self, kq: KeyQueue, fn_name: str) -> None:
        req_id = next(self._req_ids)
        kq.pending_requests.add(req_id)
        self.lease_requests[req_id] = kq
        self._send_node([P.REQUEST_LEASE, req_id, kq.shape, fn_name, kq.strategy, 0, self.core.worker_id])

    def on_spillback(self, req_id: int, address: str, hops_msg: list) -> bool:
        """A node manager said: ask that node instead. True when the request was ours."""
        kq = self.lease_requests.get(req_id)
        if kq is None:
            return False
        try:
            conn = self.core.get_conn(address)
            conn.send([P.REQUEST_LEASE, req_id, kq.shape, "", kq.strategy, 1, self.core.worker_id])
            kq.remote_requests[req_id] = conn
        except (OSError, ConnectionError, SwarmError) as e:
            log.warning("cannot reach node %s for a lease: %s; asking our node again", address, e)
            self._send_node([P.REQUEST_LEASE, req_id, kq.shape, "", kq.strategy, 1, self.core.worker_id])
        return True

    def _send_node(self, msg: list) -> None:
        try:
            self.core.node_conn.send(msg)
        except OSError:
            pass

    # -- replies ----------------------------------------------------------------------------------
    def _return_lease(self, worker_id: bytes, nm_conn: Any) -> None:
        if nm_conn is None:
            self._send_node([P.RETURN_LEASE, worker_id])
        else:
            try:
                nm_conn.send([P.RETURN_LEASE, worker_id])
            except OSError:
                pass

    def on_node_message(self, m: list, nm_conn: Any = None) -> None:
        """A message from a node manager: ours (nm_conn None) or another node's (spillback)."""
        kind = m[0]
        if kind == P.LEASE_GRANTED:
            _, req_id, worker_id, address, gpu_ids, node_id = m
            kq = self.lease_requests.pop(req_id, None)
            if kq is not None:
                kq.pending_requests.discard(req_id)
                kq.remote_requests.pop(req_id, None)
            if kq is None or not kq.ready:
                self._return_lease(worker_id, nm_conn)
                return
            try:
                conn = self.core.get_conn(address)
            except (OSError, ConnectionError, SwarmError) as e:
                log.warning("cannot reach leased worker %s: %s", worker_id.hex(), e)
                self._return_lease(worker_id, nm_conn)
                self.pump(kq)
                return
            key = next(k for k, q in self.queues.items() if q is kq)
            lease = Lease(worker_id, address, conn, gpu_ids, key, nm_conn, node_id)
            kq.leases[worker_id] = lease
            self.leases[worker_id] = lease
            self.pump(kq)
        elif kind == P.LEASE_FAILED:
            kq = self.lease_requests.pop(m[1], None)
            if kq is None:
                return
            kq.pending_requests.discard(m[1])
            err = TaskUnschedulableError(m[2])
            while kq.ready:
                self._fail(kq.ready.popleft(), err)
        elif kind == P.WORKER_DIED:
            self._on_worker_died(m[1], m[2])
        elif kind == P.LEASE_SPILLBACK:
            if not self.on_spillback(m[1], m[2], m):
                self.core.actor_submitter.on_spillback(m[1], m[2])
        elif kind == P.LEASE_WARNING:
            log.warning("%s", m[2])
        elif kind == P.NODE_DIED:
            self.on_node_died(m[1], m[2])
            if len(m) > 3 and m[3]:
                self.objects_lost(m[3])

    def on_task_done(self, conn: Connection, m: list) -> None:
        task_id, returns, exec_s, contained = m[1], m[2], m[3], m[4]
        lease = self.leases.get(conn.peer_id) if conn.peer_id else None
        rec = None
        if lease is not None:
            rec = lease.inflight.pop(task_id, None)
        if rec is None:
            for lease in self.leases.values():
                rec = lease.inflight.pop(task_id, None)
                if rec is not None:
                    break
        if rec is None or lease is None:
            return
        if rec.long:
            rec.long = False
            lease.long -= 1
        lease.blocked = False
        lease.reclaiming = False
        lease.progress_at = time.monotonic()
        kq = self.queues[lease.key]
        # per function, not per resource shape: a slow function must not inherit a fast one's depth
        fn_id = rec.fn.fn_id
        ema = self.exec_ema.get(fn_id)
        self.exec_ema[fn_id] = exec_s if ema is None else 0.8 * ema + 0.2 * exec_s
        if kq.ready and kq not in self.dirty:
            self.dirty.append(kq)
        if returns and returns[0][0] == P.VALUE_ERROR and rec.retry_exceptions and rec.retries_left != 0:
            if self._should_retry_exception(rec, returns[0]):
                rec.retries_left -= 1
                rec.lease = None
                self._enqueue(rec, front=True)
                self._after_done(kq, lease)
                return
        self.store_returns(rec, returns, contained, conn)
        self.core.record_event(rec, m)
        self._after_done(kq, lease)

    def store_returns(self, rec: Any, returns: list, contained: list, conn: Connection) -> None:
        core = self.core
        if contained:
            from swarm.object_ref import ObjectRef
            held = [ObjectRef(oid, owner, core) for oid, owner in contained]
            core.contained[rec.return_ids[0]] = held
            try:
                conn.send([P.RETURN_REFS_HELD, rec.task_id])
            except OSError:
                pass
        rebuildable = isinstance(rec, TaskRecord) and rec.retries_left != 0
        keep_lineage = False
        for rid, value in zip(rec.return_ids, returns, strict=True):
            self.pending_returns.pop(rid, None)
            if rebuildable and value[0] == P.VALUE_SHM and core.refs.get(rid):
                self.lineage[rid] = rec
                keep_lineage = True
            core.set_value(rid, value)
            if not core.refs.get(rid):
                core._maybe_free(rid)
        rec.state = "finished"
        if keep_lineage:   # its arguments stay alive too: a re-run needs them
            while len(self.lineage) > CONFIG.max_lineage_tasks:
                _, old = self.lineage.popitem(last=False)
                old.keep = None
                old.ref_args = []
        else:
            rec.keep = None
            rec.ref_args = []

    def _after_done(self, kq: KeyQueue, lease: Lease) -> None:
        if not kq.ready and not lease.inflight:
            lease.idle_since = time.monotonic()

    def _should_retry_exception(self, rec: TaskRecord, value: list) -> bool:
        if rec.retry_exceptions is True:
            return True
        try:
            err = serialization.loads(value[1])
        except Exception:
            return False
        cause = err.cause if isinstance(err, TaskError) else err
        return isinstance(cause, tuple(rec.retry_exceptions))

    def on_tasks_returned(self, conn: Connection, task_ids: list) -> None:
        lease = self.leases.get(conn.peer_id) if conn.peer_id else None
        if lease is None:
            for candidate in self.leases.values():
                if candidate.conn is conn:
                    lease = candidate
                    break
        if lease is None:
            return
        lease.blocked = True
        lease.reclaiming = False
        kq = self.queues[lease.key]
        for tid in reversed(task_ids):
            rec = lease.inflight.pop(tid, None)
            if rec is not None:
                lease.sent_functions.discard(rec.fn.fn_id)   # it may have come with this task, unread
                if rec.long:
                    rec.long = False
                    lease.long -= 1
                rec.lease = None
                kq.ready.appendleft(rec)
        self.pump(kq)

    def _on_worker_died(self, worker_id: bytes, cause: dict) -> None:
        lease = self.leases.pop(worker_id, None)
        if lease is None:
            return
        kq = self.queues.get(lease.key)
        if kq is not None:
            kq.leases.pop(worker_id, None)
        lease.conn.close()
        for rec in list(lease.inflight.values()):
            rec.lease = None
            rec.long = False
            if rec.cancelled:
                err = TaskCancelledError(f"task {rec.fn.name} was cancelled (its worker was killed)")
                self._fail(rec, err)
            elif cause.get("oom"):
                if rec.oom_retries_left > 0 and rec.retries_left != 0:
                    rec.oom_retries_left -= 1
                    self._enqueue(rec, front=True)
                else:
                    self._fail(rec, OutOfMemoryError(f"task {rec.fn.name} failed: {cause.get('reason')}"))
            elif rec.retries_left != 0:
                rec.retries_left -= 1
                log.info("retrying %s: its worker died (%s)", rec.fn.name, cause.get("text"))
                self._enqueue(rec, front=True)
            elif cause.get("node_died"):
                self._fail(rec, NodeDiedError(_death_message(rec, cause)))
            else:
                self._fail(rec, WorkerCrashedError(_death_message(rec, cause)))
        lease.inflight.clear()
        if kq is not None:
            self.pump(kq)

    def on_conn_closed(self, conn: Connection) -> None:
        """A leased worker's death is reported by the node manager, with its cause; but lease requests
        waiting at a node whose manager went away will never be answered: ask again."""
        self._drop_remote_requests(lambda c: c is conn)

    def _drop_remote_requests(self, gone: Any) -> None:
        for kq in self.queues.values():
            lost = [r for r, c in kq.remote_requests.items() if gone(c)]
            for req_id in lost:
                del kq.remote_requests[req_id]
                kq.pending_requests.discard(req_id)
                self.lease_requests.pop(req_id, None)
            if lost and kq.ready:
                self.pump(kq)

    def on_node_lost(self) -> None:
        err = SwarmError("the node manager is gone: the cluster was shut down or crashed")
        for kq in self.queues.values():
            while kq.ready:
                self._fail(kq.ready.popleft(), err)
        for lease in list(self.leases.values()):
            for rec in list(lease.inflight.values()):
                self._fail(rec, err)
            lease.inflight.clear()

    def on_tick(self) -> None:
        now = time.monotonic()
        linger = CONFIG.lease_linger_s
        for lease in self.leases.values():
            if len(lease.inflight) > 1 and not lease.reclaiming and not lease.blocked:
                self._maybe_reclaim(lease, now)
        for worker_id, lease in list(self.leases.items()):
            if lease.idle_since is not None and not lease.inflight and now - lease.idle_since >= linger:
                kq = self.queues[lease.key]
                if kq.ready:
                    continue
                del self.leases[worker_id]
                kq.leases.pop(worker_id, None)
                self._return_lease(worker_id, lease.nm_conn)

    def _maybe_reclaim(self, lease: Lease, now: float) -> None:
        """Tasks were queued on this worker because their function looked quick, but the one running
        now has taken far longer: remember the function is slow, and ask every worker holding queued
        calls of it for them back, so other workers (new leases) run them."""
        running = next(iter(lease.inflight.values()))
        fn_id = running.fn.fn_id
        ema = self.exec_ema.get(fn_id)
        if ema is None or now - lease.progress_at < max(RECLAIM_AFTER_S, 50 * ema):
            return
        self.exec_ema[fn_id] = max(ema, now - lease.progress_at)
        for other in self.leases.values():
            if len(other.inflight) > 1 and not other.reclaiming and not other.blocked and \
                    any(rec.fn.fn_id == fn_id for rec in itertools.islice(other.inflight.values(), 1, None)):
                other.reclaiming = True
                try:
                    other.conn.send([P.RECLAIM_TASKS])
                except OSError:
                    other.reclaiming = False

    def on_node_died(self, node_id: str, cause: str) -> None:
        """Leases on a dead node: their tasks run again elsewhere (within their retries); lease requests
        sent on to other nodes are asked again (the dead one's would never be answered)."""
        self._drop_remote_requests(lambda c: True)
        for worker_id, lease in list(self.leases.items()):
            if lease.node_id == node_id:
                self._on_worker_died(worker_id, {"text": f"died with its node {node_id} ({cause})",
                                                 "node_died": node_id})

    # -- failure ----------------------------------------------------------------------------------
    def _fail(self, rec: Any, err: BaseException) -> None:
        self._fail_with_value(rec, [P.VALUE_ERROR, serialization.serialize(err).inband])

    def _fail_with_value(self, rec: Any, value: list) -> None:
        core = self.core
        for rid in rec.return_ids:
            self.pending_returns.pop(rid, None)
            core.set_value(rid, value)
            if not core.refs.get(rid):
                core._maybe_free(rid)
        rec.keep = None
        rec.ref_args = []
        rec.state = "failed"

    # -- cancellation -----------------------------------------------------------------------------
    def cancel(self, rec: TaskRecord, force: bool, recursive: bool) -> None:
        if rec.state in ("finished", "failed"):
            return
        rec.cancelled = True
        if rec.lease is None:  # not dispatched: drop it here
            kq = self.queues.get(rec.key)
            if kq is not None:
                try:
                    kq.ready.remove(rec)
                except ValueError:
                    pass
            self._fail(rec, TaskCancelledError(f"task {rec.fn.name} was cancelled before it started"))
            return
        try:
            rec.lease.conn.send([P.CANCEL_TASK, rec.task_id, force, recursive])
        except OSError:
            pass

    def cancel_all(self) -> None:
        """Cancel every task this process submitted that has not finished (recursive cancel)."""
        for rec in {id(r): r for r in self.pending_returns.values() if isinstance(r, TaskRecord)}.values():
            self.cancel(rec, False, True)

    # -- lineage ----------------------------------------------------------------------------------
    def forget_lineage(self, oid: bytes) -> None:
        rec = self.lineage.pop(oid, None)
        if rec is not None and not any(r in self.lineage for r in rec.return_ids):
            rec.keep = None
            rec.ref_args = []

    def objects_lost(self, source: str) -> None:
        """A node died with the primary copies of some of our objects: re-run the tasks that made them
        (their own lost inputs first, by the same rule); objects from ``put`` are lost for good."""
        core = self.core
        lost = [oid for oid, v in core.values.items()
                if oid in core.owned and v[0] == P.VALUE_SHM and len(v) > 3 and v[3] == source]
        rerun: dict[bytes, TaskRecord] = {}
        for oid in lost:
            rec = self.lineage.get(oid)
            if rec is None or rec.retries_left == 0:
                what = "it was created with put()" if oid[16:] == b"\0\0\0\0" else \
                    "its task has no retries left to rebuild it"
                err = ObjectLostError(f"object {oid.hex()} was lost with its node and cannot be rebuilt: "
                                      f"{what}")
                core.values[oid] = [P.VALUE_ERROR, serialization.serialize(err).inband]
                continue
            del core.values[oid]
            rerun[rec.task_id] = rec
        for rec in rerun.values():
            rec.retries_left -= 1
            rec.deps_pending = 0
            rec.lease = None
            rec.long = False
            for rid in rec.return_ids:
                self.lineage.pop(rid, None)
                if rid in core.owned:
                    core.values.pop(rid, None)
                    self.pending_returns[rid] = rec
            log.info("rebuilding the outputs of %s: they were lost with their node", rec.fn.name)
            self.submit_again(rec)

    # -- introspection ----------------------------------------------------------------------------
    def is_pending_return(self, oid: bytes) -> bool:
        return oid in self.pending_returns

    def describe(self, oid: bytes, node: dict | None = None) -> str:
        rec = self.pending_returns.get(oid)
        if rec is None:
            if oid in self.core.owned:
                return f"{oid.hex()}: ready"
            owner = self.core.borrowed_owner.get(oid, "?")
            return f"{oid.hex()}: owned by another process ({owner})"
        state = rec.state
        if state is QUEUED:
            state = f"queued: needs {_fmt(rec.shape)}"
            if node:
                held = [f"{lease['fn_name'] or 'a task'} (pid {lease['pid']})" for lease in node["leases"]
                        if not lease["blocked"] and any(lease["shape"].get(k) for k in rec.shape)]
                state += (f"; the node has {_fmt(node['total'])} in total, "
                          f"{_fmt({k: v for k, v in node['available'].items() if k in rec.shape})} free"
                          + (f", held by {', '.join(held[:6])}" if held else ""))
        elif rec.deps_pending:
            deps = [self.describe(ref._id) for _, ref in rec.ref_args if ref._id not in self.core.values]
            state = "waiting for its arguments: " + "; ".join(deps[:3])
        return f"task {rec.fn.name} ({rec.task_id.hex()}): {state}"


def _fmt(shape: dict) -> str:
    return ", ".join(f"{v:g} {k}" for k, v in sorted(shape.items())
                     if k != "object_store_memory" and "_group_" not in k) or "no resources"


def _death_message(rec: TaskRecord, cause: dict) -> str:
    if cause.get("node_died"):
        return f"task {rec.fn.name} ({rec.task_id.hex()}) failed: its worker {cause.get('text')}"
    msg = (f"task {rec.fn.name} ({rec.task_id.hex()}) failed: the worker process running it "
           f"(pid {cause.get('pid')}) {cause.get('text')}")
    if cause.get("reason"):
        msg += f" [{cause['reason']}]"
    if cause.get("signal") == 9:
        msg += "; SIGKILL often means it ran out of memory or was killed from outside"
    tail = cause.get("stderr_tail")
    if tail:
        msg += "\nlast lines it wrote to stderr:\n" + tail
    return msg
