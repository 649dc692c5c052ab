"""A worker process: runs the tasks that owners push to it, one at a time, in its main thread.

    reader threads (one per owner connection) ──PUSH_TASK batches──▶ queue ──▶ main thread:
        load function (cached by id) → resolve arguments (inline bytes or read-only views of the
        arena) → call → store returns (inline, or in the arena for the owner) → TASK_DONE
    replies are sent in batches: when the queue runs dry, a task took longer than 1 ms, or 2 ms
    have passed since the oldest unsent reply.

A task blocked in ``get`` hands the tasks queued behind it back to their owners (TASKS_RETURNED)
and tells the node manager, which lends its CPU to someone else meanwhile.
"""

from __future__ import annotations

import collections
import io
import os
import queue
import signal
import socket
import sys
import threading
import time
from typing import Any

from swarm._runtime_env import RuntimeEnvFunction
from swarm.core import core_worker, protocol as P, serialization
from swarm.core.submitter import EMPTY_ARGS
from swarm.exceptions import SerializationError, SwarmError, TaskCancelledError
from swarm.util import rpdb

TAG = "\x1e"


class TaggedStream(io.TextIOBase):
    """stdout/stderr of a worker: before the first output of a new task, a tag line names the task
    (``TAG name \\x1f task id``), so the node manager can prefix every line with where it came from and
    mark in the log file where each task's output begins (``node/log_service.py``). The task id is
    read here, when something is written, so tasks that print nothing cost nothing."""

    core: Any = None   # the worker's core worker, once it exists (its current_task_id)

    def __init__(self, fd: int) -> None:
        self._raw = open(fd, "w", buffering=1, closefd=False, encoding="utf-8", errors="replace")
        self.tag = "worker"
        self._emitted: str | None = None
        self._emitted_task: bytes | None = None
        self._open_line = False

    def write(self, s: str) -> int:
        if not s:
            return 0
        task = self.core.current_task_id if self.core is not None else None
        if self.tag != self._emitted or task != self._emitted_task:
            # an unfinished line of the previous task is ended first, or the tag would join it
            self._raw.write(("\n" if self._open_line else "") + TAG + self.tag
                            + ("\x1f" + task.hex() if task else "") + "\n")
            self._emitted = self.tag
            self._emitted_task = task
        self._open_line = not s.endswith("\n")
        return self._raw.write(s)

    def flush(self) -> None:
        self._raw.flush()

    def fileno(self) -> int:
        return self._raw.fileno()

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"


class _LoadFailure:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class TaskExecutor:
    def __init__(self, core: core_worker.CoreWorker) -> None:
        self.core = core
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.local: collections.deque = collections.deque()
        self.local_lock = threading.Lock()   # the reader thread takes tasks back while one runs (reclaim)
        self.functions: dict[bytes, Any] = {}
        self.held_return_refs: dict[bytes, list] = {}
        self.replies: dict[Any, list] = {}
        self.oldest_reply = 0.0
        self.streams = (sys.stdout, sys.stderr)
        self.cancelled_ids: set[bytes] = set()
        self.where = [os.getpid(), core.node_id, core.worker_id.hex()]
        self.cancel_requested: bytes | None = None
        from swarm.core.actor_host import ActorHost
        self.actors = ActorHost(self)

    def _take_queued(self) -> tuple[list, bool]:
        """Under local_lock: everything queued here and not started (and whether shutdown was asked)."""
        items = list(self.local)
        self.local.clear()
        stop = False
        while True:
            try:
                batch = self.queue.get_nowait()
            except queue.Empty:
                break
            if batch is None:
                stop = True
            else:
                items.extend(batch)
        return items, stop

    def reclaim(self, conn: Any) -> None:
        """Reader thread: the owner on ``conn`` wants back the tasks it queued here that have not
        started (the one running takes far longer than it expected; other workers can run them)."""
        with self.local_lock:
            items, stop = self._take_queued()
            mine = [msg[1] for c, msg in items if c is conn and msg[0] == P.PUSH_TASK]
            self.local.extend(item for item in items if not (item[0] is conn and item[1][0] == P.PUSH_TASK))
            if stop:
                self.queue.put(None)
        try:
            conn.send([P.TASKS_RETURNED, mine])
        except OSError:
            pass

    def return_queued(self) -> None:
        """Hand every queued, not yet started task back to its owner (we are about to block)."""
        with self.local_lock:
            items, stop = self._take_queued()
            if stop:
                self.queue.put(None)
        by_conn: dict[Any, list] = {}
        for conn, msg in items:
            if msg[0] == P.PUSH_TASK:
                by_conn.setdefault(conn, []).append(msg[1])
            else:  # actor calls must run here: keep them, in order
                self.local.append((conn, msg))
        self.flush()
        for conn, task_ids in by_conn.items():
            try:
                conn.send([P.TASKS_RETURNED, task_ids])
            except OSError:
                pass

    def flush(self) -> None:
        replies, self.replies = self.replies, {}
        for conn, msgs in replies.items():
            try:
                conn.send_many(msgs)
            except OSError:
                pass

    def run_forever(self) -> None:
        local = self.local
        lock = self.local_lock
        while True:
            if not local:
                try:
                    batch = self.queue.get_nowait()
                except queue.Empty:
                    self.flush()
                    batch = self.queue.get()
                if batch is None:
                    return
                with lock:
                    local.extend(batch)
            with lock:
                if not local:
                    continue   # taken back meanwhile
                conn, msg = local.popleft()
            t0 = time.perf_counter()
            reply: list | None
            if self.cancelled_ids and msg[1] in self.cancelled_ids:
                self.cancelled_ids.discard(msg[1])
                reply = self._cancelled_reply(msg)
            else:
                try:
                    reply = self.execute(conn, msg)
                except KeyboardInterrupt:  # a cancel that arrived just after its task ended
                    continue
            if reply is None:
                continue
            now = time.perf_counter()
            if not self.replies:
                self.oldest_reply = now
            self.replies.setdefault(conn, []).append(reply)
            if now - t0 > 0.001 or now - self.oldest_reply > 0.002:
                self.flush()

    def execute(self, conn: Any, msg: list) -> list | None:
        kind = msg[0]
        if kind == P.PUSH_TASK:
            _, task_id, fn_id, blob, fn_name, args_blob, resolved, num_returns, gpu_ids, _owner = msg
            fn = self.functions.get(fn_id)
            if fn is None:
                try:
                    if blob is None:
                        raise SwarmError(f"function {fn_name} was never shipped to this worker")
                    fn = serialization.loads(blob)
                except Exception as e:
                    fn = _LoadFailure(e)  # the owner ships it once: remember why it cannot load
                self.functions[fn_id] = fn
            if type(fn) is _LoadFailure:
                return self._error_reply(task_id, fn_name, fn.error, num_returns)
            self._set_gpus(gpu_ids)
            self._set_tag(fn_name)
            if type(fn) is RuntimeEnvFunction:   # set its environment up before its arguments are read
                return fn.run(self, fn_name, task_id, args_blob, resolved, num_returns)
            return self.invoke(fn, fn_name, task_id, args_blob, resolved, num_returns)
        if kind == P.ACTOR_TASK:
            return self.actors.call(conn, msg)
        if kind == P.CREATE_ACTOR:
            self._set_gpus(msg[8])
            self._set_tag(msg[4])
            self.actors.create(msg)
            return None
        if kind == P.ACTOR_EXIT:
            self.flush()
            self.actors.exit("all handles to the actor went out of scope")
        return None

    def _cancelled_reply(self, msg: list) -> list:
        n = msg[7] if msg[0] == P.PUSH_TASK else msg[6]
        name = msg[4] if msg[0] == P.PUSH_TASK else msg[3]
        err = TaskCancelledError(f"task {name} was cancelled before it started")
        return [P.TASK_DONE, msg[1], [[P.VALUE_ERROR, serialization.serialize(err).inband]] * n, 0.0, []]

    def on_cancel(self, conn: Any, task_id: bytes, force: bool, recursive: bool) -> None:
        """From a reader thread: cancel a task that is running here or queued here."""
        core = self.core
        if core.current_task_id == task_id:
            if force:
                os.kill(os.getpid(), signal.SIGKILL)
            if recursive:
                core.submitter.cancel_all()
            self.cancel_requested = task_id
            os.kill(os.getpid(), signal.SIGINT)  # KeyboardInterrupt in the main thread (see _on_sigint)
        elif not self.actors.cancel(task_id):
            self.cancelled_ids.add(task_id)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self.cancel_requested is not None and self.core.current_task_id == self.cancel_requested:
            self.cancel_requested = None
            raise KeyboardInterrupt

    def _set_tag(self, name: str) -> None:
        for s in self.streams:
            if isinstance(s, TaggedStream):
                s.tag = name

    def _set_gpus(self, gpu_ids: list) -> None:
        if gpu_ids:
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpu_ids)
        elif "CUDA_VISIBLE_DEVICES" in os.environ:
            os.environ["CUDA_VISIBLE_DEVICES"] = ""  # a task without GPUs must not use one

    def _error_reply(self, task_id: bytes, fn_name: str, e: BaseException, num_returns: int) -> list:
        err = core_worker.format_task_exception(fn_name, e, self.core.node_id, e.__traceback__)
        data = serialization.serialize(err).inband
        return [P.TASK_DONE, task_id, [[P.VALUE_ERROR, data]] * num_returns, 0.0, []]

    def resolve_args(self, args_blob: bytes, resolved: list | None) -> tuple[Any, dict]:
        if args_blob == EMPTY_ARGS:
            args, kwargs = [], {}
        else:
            args, kwargs = serialization.loads(args_blob)
        if resolved:
            arena = self.core.arena
            for pos, v in resolved:
                if v[0] == P.VALUE_SHM:
                    val = arena.read(v[3], v[4] if len(v) > 4 else None)
                else:
                    val = serialization.loads(v[1])
                if type(pos) is int:
                    args[pos] = val
                else:
                    kwargs[pos] = val
        return args, kwargs

    def invoke(self, fn: Any, fn_name: str, task_id: bytes, args_blob: bytes, resolved: list | None,
               num_returns: int) -> list:
        """Run one call in this thread; returns its TASK_DONE message."""
        core = self.core
        core.current_task_id = task_id
        core.current_task_name = fn_name
        t0 = time.perf_counter()
        started = time.time()
        contained: list = []
        core.executing = True
        try:
            args, kwargs = self.resolve_args(args_blob, resolved)
            result = fn(*args, **kwargs)
            del args, kwargs
            returns = self._store_returns(task_id, fn_name, result, num_returns, contained)
        except Exception as e:
            rpdb.maybe_post_mortem(e)   # SWARM_DEBUG_POST_MORTEM=1: a `swarm debug` session first
            err = core_worker.format_task_exception(fn_name, e, core.node_id)
            data = serialization.serialize(err).inband
            returns = [[P.VALUE_ERROR, data]] * num_returns
            contained = []
        except KeyboardInterrupt:
            cancelled = TaskCancelledError(f"task {fn_name} was cancelled while it ran")
            returns = [[P.VALUE_ERROR, serialization.serialize(cancelled).inband]] * num_returns
            contained = []
        finally:
            core.executing = False
            core.current_task_id = None
        exec_s = time.perf_counter() - t0
        return [P.TASK_DONE, task_id, returns, exec_s, contained, started, self.where]

    def _store_returns(self, task_id: bytes, fn_name: str, result: Any, num_returns: int,
                       contained: list) -> list:
        if num_returns == 1:
            values = [result]
        else:
            if not isinstance(result, (tuple, list)) or len(result) != num_returns:
                raise ValueError(f"{fn_name} was declared with num_returns={num_returns} but returned "
                                 f"{type(result).__name__}"
                                 + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else ""))
            values = list(result)
        owner = task_id[:8]
        out = []
        held = []
        for i, value in enumerate(values, 1):
            try:
                what = "return value" if num_returns == 1 else f"return value {i}"
                s = serialization.serialize(value, what)
            except SerializationError as e:
                raise SerializationError(f"{fn_name} returned a value that cannot be pickled: {e}") from None
            oid = task_id + i.to_bytes(4, "big")
            out.append(self.core.store_value(oid, s, value, owner))
            if s.contained_refs:
                held.extend(s.contained_refs)
        if held:
            self.held_return_refs[task_id] = held
            contained.extend([r._id, r._owner] for r in held)
        return out


def run_worker(opts: dict) -> None:
    from swarm import api

    ctl = socket.socket(fileno=opts["ctl_fd"])
    listener = socket.socket(fileno=opts["listen_fd"])
    sys.stdout = TaggedStream(1)
    sys.stderr = TaggedStream(2)
    sys.breakpointhook = rpdb.breakpointhook   # breakpoint() in a task waits for `swarm debug`
    core = core_worker.CoreWorker(
        mode="worker", worker_id=opts["worker_id"], node_sock=ctl, arena_fd=opts["arena_fd"],
        token=opts["token"], listen_sock=listener, address=opts["address"],
        node_info={"node_id": opts["node_id"], "session_dir": opts["session_dir"],
                   "transfer_address": opts.get("transfer_address"), "capacity": opts["capacity"]})
    TaggedStream.core = core
    executor = TaskExecutor(core)
    core.on_tasks = executor.queue.put
    core.on_tasks_returned_request = executor.return_queued
    core.on_reclaim = executor.reclaim
    core.on_return_refs_held = executor.held_return_refs.pop
    core.on_cancel = executor.on_cancel
    signal.signal(signal.SIGINT, executor._on_sigint)
    core.namespace = "default"  # type: ignore[attr-defined]
    core_worker.set_current(core)
    api._set_worker(core)
    core.start()
    core.node_conn.send([P.WORKER_READY, opts["worker_id"], os.getpid()])
    if opts.get("preload"):
        threading.Thread(target=_preload, args=(opts["preload"],), name="swarm-preload", daemon=True).start()
    executor.run_forever()


def _preload(modules: list) -> None:
    """Import, while idle, the heavy libraries the driver uses (a task needing one meanwhile simply
    waits on the import lock): the first numpy task does not pay numpy's import."""
    import importlib
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:
            pass
