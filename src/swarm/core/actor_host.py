"""The actor side of an actor's worker process: holds the instance and runs its method calls.

    CREATE_ACTOR ──▶ construct the instance (a constructor error is kept: every call then raises it)
    ACTOR_TASK  ──▶ sync actor:     run in the main thread, in arrival order
                    threaded actor: a pool of ``max_concurrency`` threads
                    async actor:    coroutines on one event loop thread, ``max_concurrency`` at a time
    ACTOR_EXIT / exit_actor() ──▶ tell the node manager why, flush replies, exit the process
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import os
import sys
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any

from swarm.core import protocol as P, serialization
from swarm.exceptions import ActorDiedError, TaskCancelledError

if TYPE_CHECKING:
    from swarm.core.worker_main import TaskExecutor


class ActorHost:
    def __init__(self, executor: TaskExecutor) -> None:
        self.ex = executor
        self.core = executor.core
        self.instance: Any = None
        self.error: BaseException | None = None
        self.actor_id: bytes | None = None
        self.class_name = ""
        self.pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.sem: asyncio.Semaphore | None = None
        self.running: dict[bytes, Any] = {}       # async calls in progress, cancellable

    def create(self, msg: list) -> None:
        _, actor_id, _class_id, blob, class_name, args_blob, resolved, opts, _gpus, _owner = msg
        self.actor_id = actor_id
        self.class_name = class_name
        self.core.current_actor_id = actor_id
        try:
            cls = serialization.loads(blob)
            args, kwargs = self.ex.resolve_args(args_blob, resolved)
            self.core.executing = True
            try:
                self.instance = cls(*args, **kwargs)
            finally:
                self.core.executing = False
        except Exception as e:
            tb = traceback.format_exc()
            self.error = ActorDiedError(
                f"The actor {class_name} is dead: its constructor (__init__) raised {e!r}:\n{tb}")
            self._tell_node(f"its constructor raised {e!r}:\n{tb}")
            return
        if opts.get("is_async"):
            self.loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run_loop() -> None:
                asyncio.set_event_loop(self.loop)
                self.sem = asyncio.Semaphore(opts["max_concurrency"])
                ready.set()
                self.loop.run_forever()  # type: ignore[union-attr]
            threading.Thread(target=run_loop, name="swarm-actor-loop", daemon=True).start()
            ready.wait()
        elif opts.get("max_concurrency", 1) > 1:
            self.pool = concurrent.futures.ThreadPoolExecutor(opts["max_concurrency"],
                                                              thread_name_prefix="swarm-actor")

    def call(self, conn: Any, msg: list) -> list | None:
        _, task_id, _actor_id, method, args_blob, resolved, num_returns, _caller = msg
        name = f"{self.class_name}.{method}"
        if self.error is not None:
            data = serialization.serialize(self.error).inband
            return [P.TASK_DONE, task_id, [[P.VALUE_ERROR, data]] * num_returns, 0.0, []]
        fn = getattr(self.instance, method, None)
        if fn is None:
            return self.ex._error_reply(task_id, name, AttributeError(
                f"actor {self.class_name} has no method {method!r}"), num_returns)
        if self.loop is not None:
            fut = asyncio.run_coroutine_threadsafe(
                self._run_async(conn, fn, name, task_id, args_blob, resolved, num_returns), self.loop)
            self.running[task_id] = fut
            fut.add_done_callback(lambda _f: self.running.pop(task_id, None))
            return None
        if self.pool is not None:
            self.pool.submit(self._run_threaded, conn, fn, name, task_id, args_blob, resolved, num_returns)
            return None
        try:
            return self.ex.invoke(fn, name, task_id, args_blob, resolved, num_returns)
        except SystemExit as e:
            self._exit_after_call(conn, task_id, num_returns, e)
            return None

    def cancel(self, task_id: bytes) -> bool:
        """Cancel an async call in progress; False when it is not one (it may still be queued)."""
        fut = self.running.get(task_id)
        if fut is None:
            return False
        fut.cancel()
        return True

    def _run_threaded(self, conn: Any, fn: Any, name: str, task_id: bytes, args_blob: bytes,
                      resolved: list | None, num_returns: int) -> None:
        try:
            reply = self.ex.invoke(fn, name, task_id, args_blob, resolved, num_returns)
        except SystemExit as e:
            self._exit_after_call(conn, task_id, num_returns, e)
            return
        try:
            conn.send(reply)
        except OSError:
            pass

    async def _run_async(self, conn: Any, fn: Any, name: str, task_id: bytes, args_blob: bytes,
                         resolved: list | None, num_returns: int) -> None:
        assert self.sem is not None
        async with self.sem:
            t0 = time.perf_counter()
            contained: list = []
            try:
                args, kwargs = self.ex.resolve_args(args_blob, resolved)
                result = fn(*args, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
                returns = self.ex._store_returns(task_id, name, result, num_returns, contained)
                reply = [P.TASK_DONE, task_id, returns, time.perf_counter() - t0, contained,
                         time.time() - (time.perf_counter() - t0), self.ex.where]
            except SystemExit as e:
                self._exit_after_call(conn, task_id, num_returns, e)
                return
            except asyncio.CancelledError:
                err = TaskCancelledError(f"actor call {name} was cancelled")
                value = [P.VALUE_ERROR, serialization.serialize(err).inband]
                reply = [P.TASK_DONE, task_id, [value] * num_returns, time.perf_counter() - t0, []]
            except Exception as e:
                from swarm.util import rpdb
                rpdb.maybe_post_mortem(e)   # SWARM_DEBUG_POST_MORTEM=1 (pauses this actor's loop meanwhile)
                reply = self.ex._error_reply(task_id, name, e, num_returns)
        try:
            conn.send(reply)
        except OSError:
            pass

    def _exit_after_call(self, conn: Any, task_id: bytes, num_returns: int, e: SystemExit) -> None:
        from swarm.actor import ActorExit
        cause = "it called exit_actor()" if isinstance(e, ActorExit) else f"it called sys.exit({e.code!r})"
        err = ActorDiedError(f"The actor {self.class_name} is dead: {cause}")
        try:
            value = [P.VALUE_ERROR, serialization.serialize(err).inband]
            conn.send([P.TASK_DONE, task_id, [value] * num_returns, 0.0, []])
        except OSError:
            pass
        self.exit(cause)

    def _tell_node(self, cause: str) -> None:
        try:
            self.core.node_conn.send([P.ACTOR_DEAD, self.actor_id, cause])
        except OSError:
            pass

    def exit(self, cause: str) -> None:
        """Leave the process: the node manager records ``cause`` for callers to see."""
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        self.ex.flush()
        self._tell_node(cause)
        for s in (sys.stdout, sys.stderr):
            try:
                s.flush()
            except Exception:
                pass
        os._exit(0)
