"""The core worker: the runtime inside every driver and every worker process.

    user thread ── submit_task / put / get / wait ──┐
                                                    ▼
                          ┌──────────────── CoreWorker (one lock) ────────────────┐
                          │ refs: live ObjectRef counts   values: ready objects    │
                          │ owned: borrowers, contained refs   waiters             │
                          │ TaskSubmitter: leases, queues, pipelining (submitter.py)│
                          └──────┬───────────────────────────────┬─────────────────┘
          node manager conn ◀────┘ leases, ALLOC/SEAL/PIN         └──▶ peer conns (one reader thread
          (reader thread)                                             each): PUSH_TASK, TASK_DONE,
                                                                     GET_OBJECT, OBJECT_VALUE, REF_UPDATE
          timer thread: lease linger, deferred ref drops, slow-get warnings

Objects this process created (``put``, or returns of tasks it submitted) are *owned* here: their
small values live in ``values``; large ones in the node's arena, released when no ref is left
here or at a borrower. Refs from other owners are *borrowed*: the owner is told when the first
and the last local instance appears and disappears.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import os
import socket
import sys
import threading
import time
import traceback
from typing import Any, Callable

from swarm._config import CONFIG
from swarm.core import connection, ids, protocol as P, serialization
from swarm.core.shm import ArenaAccess
from swarm.exceptions import (
    DeadlockError,
    GetTimeoutError,
    ObjectLostError,
    ObjectStoreFullError,
    OwnerDiedError,
    SwarmError,
    TaskError,
)

log = logging.getLogger(__name__)

_current: CoreWorker | None = None


def current() -> CoreWorker | None:
    return _current


def set_current(w: CoreWorker | None) -> None:
    global _current
    _current = w


_NODE_MESSAGE_KINDS = frozenset((P.LEASE_GRANTED, P.LEASE_FAILED, P.WORKER_DIED, P.LEASE_SPILLBACK,
                                 P.LEASE_WARNING, P.NODE_DIED))


class Waiter:
    """Counts down as awaited objects become ready; wakes its thread at zero."""

    __slots__ = ("remaining", "event")

    def __init__(self, remaining: int) -> None:
        self.remaining = remaining
        self.event = threading.Event()

    def __call__(self, _oid: bytes) -> None:
        self.remaining -= 1
        if self.remaining <= 0:
            self.event.set()


class Timers:
    """One thread running callbacks at deadlines (lease linger, deferred ref drops, warnings)."""

    def __init__(self, tick: Callable[[], None], tick_s: float) -> None:
        self._heap: list = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._stopped = False
        self._tick = tick
        self._tick_s = tick_s
        self._thread = threading.Thread(target=self._run, name="swarm-timers", daemon=True)
        self._thread.start()

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), fn))
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if self._thread is not threading.current_thread():
            self._thread.join(5)

    def _run(self) -> None:
        next_tick = time.monotonic() + self._tick_s
        while True:
            with self._cond:
                while not self._stopped:
                    now = time.monotonic()
                    due = self._heap[0][0] if self._heap else next_tick
                    if due <= now or next_tick <= now:
                        break
                    self._cond.wait(min(due, next_tick) - now)
                if self._stopped:
                    return
                now = time.monotonic()
                ready = []
                while self._heap and self._heap[0][0] <= now:
                    ready.append(heapq.heappop(self._heap)[2])
            for fn in ready:
                try:
                    fn()
                except Exception:
                    log.exception("timer callback failed")
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + self._tick_s
                try:
                    self._tick()
                except Exception:
                    log.exception("periodic tick failed")


class CoreWorker:
    def __init__(self, *, mode: str, worker_id: bytes, node_sock: socket.socket, arena_fd: int,
                 token: bytes, listen_sock: socket.socket, address: str, node_info: dict,
                 job_id: str = "01", log_to_driver: bool = True) -> None:
        from swarm.core.actor_submitter import ActorSubmitter
        from swarm.core.submitter import TaskSubmitter

        self.mode = mode
        self.worker_id = worker_id
        self.address = address
        self.token = token
        self.node_info = node_info
        self.node_id: str = node_info["node_id"]
        self.job_id = job_id
        self.log_to_driver = log_to_driver
        self.ids = ids.IdFactory(worker_id)
        self._lock = threading.RLock()
        self.refs: dict[bytes, int] = {}
        self.values: dict[bytes, list] = {}
        self.owned: set[bytes] = set()
        self.borrowers: dict[bytes, int] = {}
        self.contained: dict[bytes, list] = {}
        self.borrowed_owner: dict[bytes, str] = {}
        self.requested: set[bytes] = set()
        self.waiters: dict[bytes, list] = {}
        self._decrefs: collections.deque[bytes] = collections.deque()
        self.arena = ArenaAccess(arena_fd, int(node_info.get("capacity") or 0), self._pin, self._unpin)
        self.conns_by_addr: dict[str, connection.Connection] = {}
        self._conn_lock = threading.Lock()
        self._all_conns: set[connection.Connection] = set()
        self._nm_pending: dict[int, list] = {}
        self._req_ids = itertools.count(1)
        self.node_conn = connection.Connection(node_sock, "node")
        self.transfers_in = 0
        self._callback_queue: Any = None
        self._callback_thread: threading.Thread | None = None
        self._events_out: list = []            # finished since the last report to the head (≤ the ring size)
        self._events_sent_at = 0.0
        self._live_reported = False
        self.listen_sock = listen_sock
        self.current_task_id: bytes | None = None
        self.current_task_name: str | None = None
        self.executing = False
        self.blocked_depth = 0
        self.shutting_down = False
        self.submitter = TaskSubmitter(self)
        self.actor_submitter = ActorSubmitter(self)
        self.owned_actors: set[bytes] = set()
        self.current_actor_id: bytes | None = None
        self.deadlock: BaseException | None = None
        self._blocking_waiter: Waiter | None = None
        self._reported_wait = False
        self.on_tasks: Callable[[list], None] | None = None
        self.on_tasks_returned_request: Callable[[], None] | None = None
        self.on_reclaim: Callable[[Any], None] | None = None
        self.on_return_refs_held: Callable[..., Any] | None = None
        self.on_cancel: Callable[..., Any] | None = None
        self.timers = Timers(self._tick, 0.05)

    # -- start / stop -----------------------------------------------------------------------------
    def start(self) -> None:
        self.node_conn.start_reader(self._on_node_messages, self._on_node_closed)
        self._accept_thread = threading.Thread(target=self._accept_loop, name="swarm-accept", daemon=True)
        self._accept_thread.start()

    def shutdown(self) -> None:
        self.shutting_down = True
        self.timers.stop()
        if self._callback_queue is not None:
            self._callback_queue.put(None)
        try:
            self.listen_sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.listen_sock.close()
        except OSError:
            pass
        for c in list(self._all_conns):
            c.close()
        self.node_conn.close()
        for c in list(self._all_conns):
            c.join_reader(2)
        self.node_conn.join_reader(2)
        self._accept_thread.join(2)

    def _accept_loop(self) -> None:
        while not self.shutting_down:
            try:
                sock, _ = self.listen_sock.accept()
            except OSError:
                return
            threading.Thread(target=self._admit, args=(sock,), daemon=True).start()

    def _admit(self, sock: socket.socket) -> None:
        if not connection.server_handshake(sock, self.token):
            sock.close()
            return
        conn = connection.Connection(sock, "inbound")
        with self._conn_lock:
            self._all_conns.add(conn)
        conn.start_reader(self._on_messages, self._on_conn_closed)

    def get_conn(self, address: str) -> connection.Connection:
        conn = self.conns_by_addr.get(address)
        if conn is not None and not conn.closed:
            return conn
        with self._conn_lock:
            conn = self.conns_by_addr.get(address)
            if conn is not None and not conn.closed:
                return conn
            sock = connection.connect(address, self.token)
            conn = connection.Connection(sock, address)
            conn.peer_address = address
            conn.send([P.HELLO, self.worker_id, self.address])
            self.conns_by_addr[address] = conn
            self._all_conns.add(conn)
        conn.start_reader(self._on_messages, self._on_conn_closed)
        return conn

    def _on_conn_closed(self, conn: connection.Connection) -> None:
        with self._conn_lock:
            self._all_conns.discard(conn)
            if conn.peer_address and self.conns_by_addr.get(conn.peer_address) is conn:
                del self.conns_by_addr[conn.peer_address]
        if not self.shutting_down and conn.peer_address:
            with self._lock:
                self._owner_gone(conn.peer_address)
                self.submitter.on_conn_closed(conn)
        if not self.shutting_down:
            with self._lock:
                self.actor_submitter.on_conn_closed(conn)

    def _on_node_closed(self, conn: connection.Connection) -> None:
        if not self.shutting_down:
            log.error("lost the connection to the node manager")
            if self.mode == "worker":
                os._exit(1)
            with self._lock:
                self.submitter.on_node_lost()

    # -- node manager requests --------------------------------------------------------------------
    def nm_call(self, build: Callable[[int], list], timeout: float | None = None,
                conn: connection.Connection | None = None) -> list:
        """A request to our node manager (or, with ``conn``, another node's) and its reply."""
        req_id = next(self._req_ids)
        slot: list = [threading.Event(), None]
        self._nm_pending[req_id] = slot
        try:
            (conn or self.node_conn).send(build(req_id))
            if not slot[0].wait(timeout or CONFIG.request_timeout_s):
                raise SwarmError(f"the node manager did not answer within "
                                 f"{timeout or CONFIG.request_timeout_s:.0f} s")
        finally:
            self._nm_pending.pop(req_id, None)
        return slot[1]

    def control_call(self, op: str, args: list, timeout: float | None = None) -> Any:
        """A request to the cluster's control store on the head (relayed by our node manager)."""
        reply = self.nm_call(lambda r: [P.CONTROL, r, op, args], timeout=timeout)
        if not reply[2]:
            raise SwarmError(f"the control store refused {op}: {reply[3]}")
        return reply[3]

    def _on_node_messages(self, conn: connection.Connection, msgs: list) -> None:
        for m in msgs:
            kind = m[0]
            if kind in (P.ALLOC_REPLY, P.PIN_REPLY, P.CLUSTER_INFO_REPLY, P.ACTOR_INFO, P.LIST_OBJECTS_REPLY,
                        P.BUNDLE_REPLY, P.CONTROL_REPLY):
                slot = self._nm_pending.get(m[1])
                if slot is not None:
                    slot[1] = m
                    slot[0].set()
            elif kind == P.LOG_LINES:
                _print_worker_lines(m[1])
            elif kind == P.DEADLOCK:
                self.deadlock = DeadlockError(m[2])
                waiter = self._blocking_waiter
                if waiter is not None:
                    waiter.event.set()
            else:
                with self._lock:
                    if kind in (P.LEASE_GRANTED, P.LEASE_FAILED) and self.actor_submitter.owns_request(m[1]):
                        self.actor_submitter.on_lease_reply(m)
                    elif kind == P.WORKER_DIED and self.actor_submitter.on_worker_died(m[1], m[2]):
                        pass
                    elif kind == P.NODE_DIED:
                        self.submitter.on_node_message(m)
                        self.actor_submitter.on_node_died(m[1], m[2])
                    else:
                        self.submitter.on_node_message(m)

    # -- peer messages ----------------------------------------------------------------------------
    def _on_messages(self, conn: connection.Connection, msgs: list) -> None:
        tasks = None
        done = False
        with self._lock:
            for m in msgs:
                kind = m[0]
                if kind == P.PUSH_TASK or kind == P.ACTOR_TASK or kind == P.CREATE_ACTOR or \
                        kind == P.ACTOR_EXIT:
                    if tasks is None:
                        tasks = []
                    tasks.append((conn, m))
                elif kind == P.BUNDLE_REPLY:
                    slot = self._nm_pending.get(m[1])
                    if slot is not None:
                        slot[1] = m
                        slot[0].set()
                elif kind in _NODE_MESSAGE_KINDS:
                    if kind in (P.LEASE_GRANTED, P.LEASE_FAILED) and self.actor_submitter.owns_request(m[1]):
                        self.actor_submitter.on_lease_reply(m, conn)
                    elif kind == P.WORKER_DIED and self.actor_submitter.on_worker_died(m[1], m[2]):
                        pass
                    else:
                        self.submitter.on_node_message(m, conn)
                        if kind == P.NODE_DIED:
                            self.actor_submitter.on_node_died(m[1], m[2])
                elif kind == P.TASK_DONE:
                    if m[1] in self.actor_submitter.inflight:
                        self.actor_submitter.on_task_done(conn, m)
                    else:
                        self.submitter.on_task_done(conn, m)
                        done = True
                elif kind == P.GET_OBJECT:
                    self._serve_get_object(conn, m[1])
                elif kind == P.OBJECT_VALUE:
                    self._on_object_value(m[1], m[2])
                elif kind == P.REF_UPDATE:
                    for oid in m[1]:
                        self.borrowers[oid] = self.borrowers.get(oid, 0) + 1
                    for oid in m[2]:
                        n = self.borrowers.get(oid, 0) - 1
                        if n > 0:
                            self.borrowers[oid] = n
                        else:
                            self.borrowers.pop(oid, None)
                            self._maybe_free(oid)
                elif kind == P.CANCEL_TASK:
                    if self.on_cancel is not None:
                        self.on_cancel(conn, m[1], m[2], m[3])
                elif kind == P.RETURN_REFS_HELD:
                    if self.on_return_refs_held is not None:
                        self.on_return_refs_held(m[1], None)
                elif kind == P.TASKS_RETURNED:
                    self.submitter.on_tasks_returned(conn, m[1])
                elif kind == P.RECLAIM_TASKS:
                    if self.on_reclaim is not None:
                        self.on_reclaim(conn)
                elif kind == P.HELLO:
                    conn.peer_id = m[1]
                    conn.peer_address = m[2]
                    with self._conn_lock:
                        existing = self.conns_by_addr.get(m[2])
                        if existing is None or existing.closed:
                            self.conns_by_addr[m[2]] = conn
                else:
                    log.warning("unexpected message kind %s from %s", kind, conn.name)
            if done:
                self.submitter.pump_dirty()
        if tasks is not None and self.on_tasks is not None:
            self.on_tasks(tasks)
        if self._decrefs:
            self.process_decrefs()

    # -- references -------------------------------------------------------------------------------
    def add_local_ref(self, oid: bytes, owner_address: str) -> None:
        with self._lock:
            n = self.refs.get(oid, 0)
            self.refs[oid] = n + 1
            if n or oid in self.owned or owner_address == self.address:
                return
            self.borrowed_owner[oid] = owner_address
        self._send_to(owner_address, [P.REF_UPDATE, [oid], []])

    def remove_local_ref(self, oid: bytes) -> None:
        # Called from __del__, possibly inside GC while this thread holds a send lock: no I/O here.
        self._decrefs.append(oid)

    def process_decrefs(self) -> None:
        removes: dict[str, list] = {}
        with self._lock:
            pop = self._decrefs.popleft
            while self._decrefs:
                oid = pop()
                n = self.refs.get(oid, 0) - 1
                if n > 0:
                    self.refs[oid] = n
                    continue
                self.refs.pop(oid, None)
                if oid in self.owned:
                    self._maybe_free(oid)
                    continue
                owner = self.borrowed_owner.pop(oid, None)
                self.values.pop(oid, None)
                self.requested.discard(oid)
                if owner is not None:
                    removes.setdefault(owner, []).append(oid)
        for owner, oids in removes.items():
            self._send_to(owner, [P.REF_UPDATE, [], oids])

    def _send_to(self, address: str, msg: list) -> None:
        try:
            self.get_conn(address).send(msg)
        except (OSError, ConnectionError, SwarmError):
            pass  # the owner is gone; nothing to tell it

    def _maybe_free(self, oid: bytes) -> None:
        """Under the lock: free an owned object nobody refers to any more."""
        if self.refs.get(oid) or self.borrowers.get(oid) or oid not in self.owned:
            return
        if self.submitter.is_pending_return(oid):
            return  # freed when the task reports back
        self.owned.discard(oid)
        if self.submitter.lineage:
            self.submitter.forget_lineage(oid)
        if oid in self.owned_actors:
            self.owned_actors.discard(oid)
            self.actor_submitter.terminate(oid)
            return
        self.contained.pop(oid, None)
        value = self.values.pop(oid, None)
        self.waiters.pop(oid, None)
        if value is not None and value[0] == P.VALUE_SHM:
            source = value[3] if len(value) > 3 else None
            if source and source != self.node_info.get("transfer_address"):
                self._send_to(source, [P.RELEASE, [oid]])   # it lives on another node
            else:
                self._release_shm([oid])  # the node manager frees it once no reader pins it

    def _release_shm(self, oids: list) -> None:
        try:
            self.node_conn.send([P.RELEASE, oids])
        except OSError:
            pass

    def _pin(self, oid: bytes, source: str | None = None) -> tuple[int, int]:
        """Pin a shared-memory object for reading; (offset, size) where it lives now on this node."""
        reply = self.nm_call(lambda r: [P.PIN, r, oid])
        if reply[2] >= 0:
            return reply[2], reply[3]
        if source and source != self.node_info.get("transfer_address"):
            return self._pull(oid, source)
        raise ObjectLostError(f"object {oid.hex()} is no longer in the object store"
                              + (f": {reply[4]}" if len(reply) > 4 and reply[4] else ""))

    def _pull(self, oid: bytes, source: str) -> tuple[int, int]:
        """Copy an object from another node's store into ours, in chunks, straight into shared memory
        (a 1 GB object never needs 1 GB of heap here), and pin the copy."""
        try:
            sock = connection.connect(source, self.token)
        except (OSError, ConnectionError, SwarmError) as e:   # (a node dying mid-handshake looks like auth)
            raise ObjectLostError(f"object {oid.hex()} lives on a node that cannot be reached ({source}): "
                                  f"{e}") from None
        try:
            sock.settimeout(CONFIG.request_timeout_s)
            sock.sendall(P.encode([P.FETCH_OBJECT, oid]))
            (n,) = P.HEADER.unpack(connection._recv_exact(sock, 4))
            header = P.decode(connection._recv_exact(sock, n))
            size = header[1]
            if size < 0:
                raise ObjectLostError(f"object {oid.hex()} is gone from the node that had it: {header[2]}")
            offset = self._alloc(size)
            with self.arena.writable(offset, size) as view:
                pos = 0
                while pos < size:
                    got = sock.recv_into(view[pos:pos + (8 << 20)])
                    if not got:
                        raise ObjectLostError(f"the transfer of object {oid.hex()} from {source} was cut")
                    pos += got
            self.transfers_in += 1
            reply = self.nm_call(lambda r: [P.SEAL_COPY, r, oid, offset, size])
            return reply[2], reply[3]
        except (OSError, ConnectionError) as e:   # the node went away mid-transfer
            raise ObjectLostError(f"object {oid.hex()} could not be copied from {source}: {e}") from None
        finally:
            sock.close()

    def _unpin(self, oid: bytes) -> None:
        if self.shutting_down:
            return
        try:
            self.node_conn.send([P.UNPIN, [oid]])
        except OSError:
            pass

    def _owner_gone(self, address: str) -> None:
        """Under the lock: a peer closed; objects it owned can no longer be fetched."""
        for oid, owner in list(self.borrowed_owner.items()):
            if owner == address and oid not in self.values and oid in self.requested:
                err = OwnerDiedError(
                    f"object {oid.hex()} is lost: its owner (the process at {address}, which created it "
                    f"with put or submitted its task) died")
                self.set_value(oid, [P.VALUE_ERROR, serialization.serialize(err).inband])

    # -- values -----------------------------------------------------------------------------------
    def set_value(self, oid: bytes, value: list) -> None:
        """Under the lock: an object became ready."""
        self.values[oid] = value
        ws = self.waiters.pop(oid, None)
        if ws:
            for w in ws:
                w(oid)

    def add_waiter(self, oid: bytes, w: Callable[[bytes], None]) -> None:
        self.waiters.setdefault(oid, []).append(w)

    def _serve_get_object(self, conn: connection.Connection, oid: bytes) -> None:
        value = self.values.get(oid)
        if value is not None:
            conn.send([P.OBJECT_VALUE, oid, value])
            return
        if oid in self.owned:
            def reply(_oid: bytes) -> None:
                try:
                    conn.send([P.OBJECT_VALUE, oid, self.values[oid]])
                except (OSError, KeyError):
                    pass
            self.add_waiter(oid, reply)
            return
        err = ObjectLostError(f"object {oid.hex()} was already freed by its owner")
        conn.send([P.OBJECT_VALUE, oid, [P.VALUE_ERROR, serialization.serialize(err).inband]])

    def _on_object_value(self, oid: bytes, value: list) -> None:
        if self.refs.get(oid) or oid in self.waiters:
            self.set_value(oid, value)

    def request_borrowed(self, oid: bytes) -> None:
        """Under the lock: ask the owner for the value of a borrowed ref (once)."""
        if oid in self.requested or oid in self.values:
            return
        self.requested.add(oid)
        owner = self.borrowed_owner.get(oid)
        if owner is None:
            return
        try:
            self.get_conn(owner).send([P.GET_OBJECT, oid])
        except (OSError, ConnectionError, SwarmError):
            self._owner_gone(owner)

    # -- put / get / wait -------------------------------------------------------------------------
    def pending_object(self) -> tuple[Any, Callable[[Any], None]]:
        """A ref owned here whose value is set later by calling the returned function."""
        from swarm.object_ref import ObjectRef

        oid = self.ids.put_id()
        with self._lock:
            self.owned.add(oid)
            self.refs[oid] = 1

        def fulfil(value: Any) -> None:
            data = serialization.serialize(value).inband
            with self._lock:
                if oid in self.owned:
                    self.set_value(oid, [P.VALUE_INLINE, data])
        return ObjectRef(oid, self.address, self, True), fulfil

    def put(self, value: Any) -> Any:
        from swarm.object_ref import ObjectRef

        if self._decrefs:
            self.process_decrefs()
        oid = self.ids.put_id()
        s = serialization.serialize(value, "value")
        stored = self.store_value(oid, s, value, self.worker_id)
        with self._lock:
            self.owned.add(oid)
            if s.contained_refs:
                self.contained[oid] = s.contained_refs
            self.values[oid] = stored
        return ObjectRef(oid, self.address, self)

    def store_value(self, oid: bytes, s: serialization.Serialized, value: Any, owner: bytes) -> list:
        """Inline bytes for small values; otherwise write into the arena and seal for ``owner``."""
        if s.total <= CONFIG.inline_object_max_bytes:
            return [P.VALUE_INLINE, serialization.inline_bytes(s, value)]
        size = s.shm_size()
        offset = self._alloc(size)
        self.arena.write(offset, s, size)
        self.nm_call(lambda r: [P.SEAL, r, oid, offset, size, owner])
        source = self.node_info.get("transfer_address")
        return [P.VALUE_SHM, offset, size, source] if source else [P.VALUE_SHM, offset, size]

    def _alloc(self, size: int) -> int:
        deadline = time.monotonic() + CONFIG.object_store_full_timeout_s
        delay = 0.01
        while True:
            reply = self.nm_call(lambda r: [P.ALLOC, r, size])
            if reply[2] >= 0:
                return reply[2]
            # full of objects that readers pin right now: slow the producer down before failing it
            if not reply[4] or time.monotonic() + delay > deadline:
                raise ObjectStoreFullError(reply[3])
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    def resolve_value(self, oid: bytes, value: list) -> Any:
        kind = value[0]
        if kind == P.VALUE_INLINE:
            return serialization.loads(value[1])
        if kind == P.VALUE_SHM:
            return self.arena.read(oid, value[3] if len(value) > 3 else None)
        err = serialization.loads(value[1])
        if isinstance(err, TaskError):
            raise err.as_instanceof_cause()
        raise err

    def get(self, refs: list, timeout: float | None) -> list:
        if self._decrefs:
            self.process_decrefs()
        values = self.values
        missing = None
        with self._lock:
            for r in refs:
                oid = r._id
                if oid not in values:
                    if missing is None:
                        missing = []
                    missing.append(oid)
            if missing:
                waiter = Waiter(len(missing))
                for oid in missing:
                    self.add_waiter(oid, waiter)
                    if oid not in self.owned:
                        self.request_borrowed(oid)
        if missing:
            self._wait_for(waiter, timeout, missing)
        out = []
        for r in refs:
            for attempt in range(3):
                try:
                    out.append(self.resolve_value(r._id, values[r._id]))
                    break
                except ObjectLostError:
                    # its only copy was on a node that is gone: re-run the task that made it, if we can
                    if attempt == 2 or not self._rebuild(r._id):
                        raise
                    self.get([r], timeout)
        return out

    def _rebuild(self, oid: bytes) -> bool:
        with self._lock:
            if self.submitter.is_pending_return(oid):
                return True   # already being rebuilt (the node's death was reported meanwhile)
            value = self.values.get(oid)
            if (value is None or value[0] != P.VALUE_SHM or len(value) < 4 or not value[3]
                    or oid not in self.submitter.lineage):
                return False
            self.submitter.objects_lost(value[3])
            return oid not in self.values or self.values[oid][0] != P.VALUE_SHM

    def _wait_for(self, waiter: Waiter, timeout: float | None, oids: list) -> None:
        if waiter.event.is_set():
            return
        self._enter_blocked(oids)
        self._blocking_waiter = waiter
        try:
            if timeout is None:
                warned = False
                while not waiter.event.wait(CONFIG.get_warn_after_s if not warned else None):
                    warned = True
                    log.warning("get() has waited %.0f s for %d objects; still waiting for: %s",
                                CONFIG.get_warn_after_s, waiter.remaining, self.describe_pending(oids))
            elif not waiter.event.wait(timeout):
                with self._lock:
                    for oid in oids:
                        ws = self.waiters.get(oid)
                        if ws and waiter in ws:
                            ws.remove(waiter)
                raise GetTimeoutError(
                    f"get() timed out after {timeout} s: {waiter.remaining} of {len(oids)} objects not "
                    f"ready ({self.describe_pending(oids)})")
            if self.deadlock is not None and waiter.remaining > 0:
                err, self.deadlock = self.deadlock, None
                raise err
        finally:
            self._blocking_waiter = None
            self._leave_blocked()

    def describe_pending(self, oids: list) -> str:
        """What the objects still wait for, in words: the task's state, its resources, its arguments."""
        try:
            node = self.nm_call(lambda r: [P.CLUSTER_INFO, r], timeout=5)[2]
        except (OSError, SwarmError):
            node = None
        with self._lock:
            missing = [oid for oid in oids if oid not in self.values]
            parts = [self.submitter.describe(oid, node) for oid in missing[:3]]
        return "; ".join(parts) or "nothing"

    def _enter_blocked(self, oids: list | None = None) -> None:
        if self.mode != "worker" or not self.executing:
            return
        self.blocked_depth += 1
        if self.blocked_depth == 1:
            if self.on_tasks_returned_request is not None:
                self.on_tasks_returned_request()
            try:
                self.node_conn.send([P.WORKER_BLOCKED])
                if self.current_actor_id is not None and oids:
                    awaited = self._awaited_actors(oids)
                    if awaited:   # the head looks for cycles of actors waiting on each other
                        self.node_conn.send([P.WAIT_EDGES, self.current_actor_id, self.worker_id, awaited])
                        self._reported_wait = True
            except OSError:
                pass

    def _awaited_actors(self, oids: list) -> list:
        from swarm.core.actor_submitter import ActorCallRecord
        out = []
        with self._lock:
            for oid in oids:
                rec = self.submitter.pending_returns.get(oid)
                if isinstance(rec, ActorCallRecord):
                    actor_id = self.actor_submitter._caller_of(rec)
                    if actor_id is not None and actor_id not in out:
                        out.append(actor_id)
        return out

    def _leave_blocked(self) -> None:
        if self.mode != "worker" or not self.executing or self.blocked_depth == 0:
            return
        self.blocked_depth -= 1
        if self.blocked_depth == 0 and self._reported_wait:
            self._reported_wait = False
            try:
                self.node_conn.send([P.WAIT_EDGES, self.current_actor_id, self.worker_id, []])
            except OSError:
                pass
        if self.blocked_depth == 0:
            try:
                self.node_conn.send([P.WORKER_UNBLOCKED])
            except OSError:
                pass

    def wait(self, refs: list, num_returns: int, timeout: float | None, fetch_local: bool) -> tuple:
        if self._decrefs:
            self.process_decrefs()
        values = self.values
        with self._lock:
            ready_n = sum(1 for r in refs if r._id in values)
            waiter = None
            if ready_n < num_returns and timeout != 0:
                pending = [r._id for r in refs if r._id not in values]
                waiter = Waiter(num_returns - ready_n)
                for oid in pending:
                    self.add_waiter(oid, waiter)
                    if oid not in self.owned:
                        self.request_borrowed(oid)
        if waiter is not None:
            self._enter_blocked()
            try:
                if timeout is None:
                    warned = False
                    while not waiter.event.wait(CONFIG.get_warn_after_s if not warned else None):
                        warned = True
                        log.warning("wait() has waited %.0f s for %d more of %d objects; still waiting "
                                    "for: %s", CONFIG.get_warn_after_s, waiter.remaining, len(pending),
                                    self.describe_pending(pending))
                else:
                    waiter.event.wait(timeout)
            finally:
                self._leave_blocked()
                with self._lock:
                    for oid in pending:
                        ws = self.waiters.get(oid)
                        if ws is not None:
                            try:
                                ws.remove(waiter)
                            except ValueError:
                                pass
                            if not ws:
                                del self.waiters[oid]
        ready: list = []
        not_ready: list = []
        for r in refs:
            if len(ready) < num_returns and r._id in values:
                ready.append(r)
            else:
                not_ready.append(r)
        return ready, not_ready

    def when_ready(self, ref: Any, fut: Any) -> None:
        oid = ref._id

        def resolve(value: list, _keep_alive: Any = ref) -> None:
            if not fut.set_running_or_notify_cancel():
                return
            try:
                fut.set_result(self.resolve_value(oid, value))
            except BaseException as e:
                fut.set_exception(e)

        def complete(_oid: bytes) -> None:
            # not here: we may hold the lock on a connection's reader thread, and the future's
            # callbacks (user code) may call get(), which needs that thread
            value = self.values[oid]
            self._callbacks().put(lambda: resolve(value))

        with self._lock:
            if oid in self.values:
                ready = True
            else:
                ready = False
                self.add_waiter(oid, complete)
                if oid not in self.owned:
                    self.request_borrowed(oid)
        if ready:
            complete(oid)

    def _callbacks(self) -> Any:
        """The queue of the thread that completes futures (started on first use)."""
        q = self._callback_queue
        if q is None:
            import queue
            q = self._callback_queue = queue.SimpleQueue()

            def run() -> None:
                while True:
                    fn = q.get()
                    if fn is None:
                        return
                    try:
                        fn()
                    except Exception:
                        log.exception("a future's callback failed")
            self._callback_thread = threading.Thread(target=run, name="swarm-futures", daemon=True)
            self._callback_thread.start()
        return q

    def cancel(self, oid: bytes, force: bool, recursive: bool) -> None:
        from swarm.core.actor_submitter import ActorCallRecord
        with self._lock:
            rec = self.submitter.pending_returns.get(oid)
            if rec is None:
                if oid not in self.owned and oid in self.refs:
                    raise ValueError("only the process that submitted a task can cancel it")
                return  # finished already
            if isinstance(rec, ActorCallRecord):
                if force:
                    raise ValueError("force=True cannot be used to cancel an actor call; use swarm.kill() "
                                     "on the actor instead")
                self.actor_submitter.cancel(rec)
            else:
                self.submitter.cancel(rec, force, recursive)

    # -- task events (state API, timeline) ---------------------------------------------------------
    def record_event(self, rec: Any, done: list, actor_id: bytes | None = None) -> None:
        """Under the lock: remember a finished task or actor call (a bounded ring; oldest go first)."""
        returns = done[2]
        failed = bool(returns) and returns[0][0] == P.VALUE_ERROR
        where = done[6] if len(done) > 6 else [None, None, None]
        ev = (rec.task_id, rec.fn.name, "FAILED" if failed else "FINISHED",
              done[5] if len(done) > 5 else None, done[3], where[0], where[1], where[2],
              actor_id, returns[0][1] if failed else None)
        if self._report_events:
            self._events_out.append(ev)
            if len(self._events_out) > CONFIG.task_events_max:   # the head keeps no more than that anyway
                del self._events_out[:len(self._events_out) // 2]

    _report_events = CONFIG.task_events_max > 0

    def report_task_events(self) -> None:
        """Send the head what finished since the last report and what is queued or running now (the
        cluster-wide state API reads it there). Called from the timer thread about once a second, and
        before a state query so it sees this process's latest."""
        if self.mode != "driver" and self.mode != "worker":
            return
        from swarm.core.actor_submitter import ActorCallRecord
        with self._lock:
            out, self._events_out = self._events_out, []
            live_rows: list[dict] = []
            counts: dict[tuple[str, str], int] = {}
            seen: set[int] = set()
            for rec in self.submitter.pending_returns.values():
                if id(rec) in seen:
                    continue
                seen.add(id(rec))
                state = "RUNNING" if getattr(rec, "lease", None) is not None or \
                    rec.state == "sent to the actor" else "PENDING"
                counts[(rec.fn.name, state)] = counts.get((rec.fn.name, state), 0) + 1
                if len(live_rows) < 1000:
                    kind = "ACTOR_TASK" if isinstance(rec, ActorCallRecord) else "NORMAL_TASK"
                    live_rows.append({"task_id": rec.task_id.hex(), "name": rec.fn.name, "state": state,
                                      "detail": rec.state if isinstance(rec.state, str) else "",
                                      "type": kind, "owner_id": self.worker_id.hex()})
        live: dict | None = None
        if live_rows or self._live_reported:
            live = {"rows": live_rows, "counts": [[n, s, c] for (n, s), c in counts.items()]}
            self._live_reported = bool(live_rows)
        if not out and live is None:
            return
        rows = []
        for task_id, name, state, start, dur, pid, node, worker, actor, err in out:
            text = None
            if err is not None:
                try:
                    text = str(serialization.loads(err))
                except Exception:
                    text = "(the error could not be loaded)"
            rows.append([task_id, name, state, start, dur, pid, node, worker, actor, text, self.worker_id])
        try:
            self.node_conn.send([P.TASK_EVENTS, self.worker_id, rows, live])
        except (OSError, ConnectionError):
            pass
        self._events_sent_at = time.monotonic()

    # -- periodic ---------------------------------------------------------------------------------
    def _tick(self) -> None:
        if self._decrefs:
            self.process_decrefs()
        with self._lock:
            self.submitter.on_tick()
        if time.monotonic() - self._events_sent_at > 1.0 and \
                (self._events_out or self.submitter.pending_returns or self._live_reported):
            self.report_task_events()


PROGRESS_MAGIC = "__swarm_tqdm__"   # starts the bar-state lines of swarm.experimental.tqdm in tasks


def _print_worker_lines(lines: list, _bars_done: bool = False) -> None:
    if not _bars_done and ("swarm.experimental.tqdm" in sys.modules
                           or any(item[2].startswith(PROGRESS_MAGIC) for item in lines)):
        from swarm.experimental import tqdm as progress  # bar states are drawn as bars, not printed
        progress.print_forwarded(lines, lambda rest: _print_worker_lines(rest, True))
        return
    for stream, prefix, line in lines:
        out = sys.stderr if stream == 2 else sys.stdout
        try:
            out.write(f"({prefix}) {line}\n")
        except Exception:
            pass
    try:
        sys.stdout.flush()
    except Exception:
        pass


_SWARM_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def format_task_exception(fn_name: str, e: BaseException, node: str, tb_obj: Any = None) -> TaskError:
    start = tb_obj if tb_obj is not None else e.__traceback__
    # the user's frames only: the worker's own call into the task is noise in every traceback
    while start is not None and start.tb_next is not None and \
            start.tb_frame.f_code.co_filename.startswith(_SWARM_DIR):
        start = start.tb_next
    tb = "".join(traceback.format_exception(type(e), e, start))
    cause: BaseException | None = e
    # a nested task error: its (importable) innermost class, not the dynamic TaskError(X) class
    cause_class: type | None = e.cause_class if isinstance(e, TaskError) else type(e)
    try:  # the owner must be able to rebuild it: custom __init__ signatures often cannot be
        serialization.loads(serialization.serialize(e).inband)
    except Exception:
        cause = None
        try:
            serialization.serialize(type(e))
        except Exception:
            cause_class = None
    return TaskError(fn_name, tb, cause, os.getpid(), node, repr(e), cause_class)


def _find_top_level_refs(args: tuple, kwargs: dict) -> tuple[list, dict, list]:
    from swarm.object_ref import ObjectRef

    ref_args = []
    plain_args = list(args)
    for i, a in enumerate(args):
        if type(a) is ObjectRef:
            ref_args.append((i, a))
            plain_args[i] = None
    plain_kwargs = kwargs
    if kwargs:
        plain_kwargs = dict(kwargs)
        for k, v in kwargs.items():
            if type(v) is ObjectRef:
                ref_args.append((k, v))
                plain_kwargs[k] = None
    return plain_args, plain_kwargs, ref_args


def submit_task(core: CoreWorker, fn: Any, args: tuple, kwargs: dict, num_returns: int, shape: dict,
                max_retries: int, retry_exceptions: Any, strategy: dict | None = None) -> list:
    """Serialize the arguments, register the task with the submitter, return its ObjectRefs."""
    from swarm.core.submitter import TaskRecord
    from swarm.object_ref import ObjectRef

    if core._decrefs:
        core.process_decrefs()
    blob, ref_args, keep = encode_args(core, args, kwargs)
    rec = TaskRecord(core.ids.task_id(), fn, blob, ref_args, keep, num_returns, shape, max_retries,
                     retry_exceptions)
    if strategy is not None:
        rec.strategy = strategy
        rec.key = (rec.key, tuple(sorted(strategy.items())))
    address = core.address
    refs = [ObjectRef(rid, address, core, True) for rid in rec.return_ids]
    with core._lock:
        for rid in rec.return_ids:
            core.refs[rid] = 1
        core.submitter.submit(rec)
    return refs


def encode_args(core: CoreWorker, args: tuple, kwargs: dict) -> tuple[bytes, list, Any]:
    """(args blob, top-level ref args, refs nested in the args to keep alive until the call is done)."""
    from swarm.core.submitter import EMPTY_ARGS

    keep = None
    if not args and not kwargs:
        return EMPTY_ARGS, [], None
    else:
        plain_args, plain_kwargs, ref_args = _find_top_level_refs(args, kwargs)
        s = _serialize_args(plain_args, plain_kwargs)
        if s.total > CONFIG.inline_object_max_bytes:
            # large arguments by value go through the object store (one copy, then zero-copy reads)
            for i, a in enumerate(plain_args):
                if a is not None and serialization.serialize(a).total > CONFIG.inline_object_max_bytes // 4:
                    ref_args.append((i, core.put(a)))
                    plain_args[i] = None
            for k, v in list(plain_kwargs.items()):
                if v is not None and serialization.serialize(v).total > CONFIG.inline_object_max_bytes // 4:
                    ref_args.append((k, core.put(v)))
                    plain_kwargs[k] = None
            s = _serialize_args(plain_args, plain_kwargs)
        blob = serialization.inline_bytes(s, (plain_args, plain_kwargs))
        keep = s.contained_refs or None
    return blob, ref_args, keep


def _serialize_args(args: list, kwargs: dict) -> serialization.Serialized:
    try:
        return serialization.serialize((args, kwargs), "args")
    except SwarmError:
        # find the culprit argument to name its path precisely
        for i, a in enumerate(args):
            serialization.serialize(a, f"args[{i}]")
        for k, v in kwargs.items():
            serialization.serialize(v, f"kwargs[{k!r}]")
        raise
