"""A ``concurrent.futures.Executor`` whose work runs as swarm tasks.

    from swarm.util import Executor

    with Executor() as ex:
        fut = ex.submit(pow, 2, 10)            # a concurrent.futures.Future
        squares = list(ex.map(square, range(100), chunksize=10))
    await loop.run_in_executor(Executor(), fn, x)

How it runs, on the public API only::

    submit(fn, *args) ──▶ a task (fn's own remote function, or _call(fn, *args) for other callables)
        ──▶ ref.future() ──done──▶ relay thread ──▶ the Future handed to the caller

The caller's Future is completed by a relay thread (one per process), not by swarm's connection
thread, so its done-callbacks may block or call swarm (``swarm.get`` included) — callbacks on a
``ref.future()`` itself run on swarm's connection thread and must not. ``max_workers`` (if given)
caps the tasks in flight; the rest wait in the executor, where ``Future.cancel()`` and
``shutdown(cancel_futures=True)`` can still cancel them; a submitted call is *running* as far as
``concurrent.futures`` is concerned. Top-level ``ObjectRef`` arguments are resolved to their values,
as for any task. Other keyword arguments of ``Executor`` are task options (``num_cpus``,
``resources``, ``max_retries``, ...).
"""

from __future__ import annotations

import collections
import concurrent.futures
import inspect
import itertools
import logging
import os
import queue
import threading
from typing import Any, Callable, Iterable, Iterator

import swarm

__all__ = ["Executor"]


def _call(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


def _call_chunk(fn: Callable[..., Any], chunk: list) -> list:
    return [fn(*args) for args in chunk]


def _initialized_call(init_key: str, initializer: Callable[..., Any], initargs: tuple,
                      fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Run ``initializer(*initargs)`` once per worker process (per executor), then ``fn``."""
    if init_key not in _INITIALIZED:
        initializer(*initargs)
        _INITIALIZED.add(init_key)
    return fn(*args, **kwargs)


_INITIALIZED: set = set()


class _Relay:
    """Threads moving results from swarm's futures to the callers' futures (see the module doc).

    One thread normally; when every relay thread is busy (a done-callback blocks, say on another
    executor future) and a result arrives, another one starts, so a blocking callback never stalls
    the others. Extra threads exit after being idle for a while."""

    MAX_THREADS = 64
    IDLE_EXIT_S = 5.0

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.threads = 0
        self.idle = 0
        self.local = threading.local()

    def forward(self, executor: Executor, src: concurrent.futures.Future,
                dst: concurrent.futures.Future, ref: Any) -> None:
        # the callback runs on swarm's thread: it only hands over
        src.add_done_callback(lambda s: self._put((executor, s, dst, ref)))

    def in_relay(self) -> bool:
        return getattr(self.local, "relay", False)

    def _put(self, item: tuple) -> None:
        self.queue.put(item)
        with self.lock:
            if self.idle > 0 or self.threads >= self.MAX_THREADS:
                return
            self.threads += 1
            first = self.threads == 1
        threading.Thread(target=self._run, args=(first,), name="swarm-executor-relay", daemon=True).start()

    def _run(self, first: bool) -> None:
        self.local.relay = True
        while True:
            with self.lock:
                self.idle += 1
            try:
                item = self.queue.get(timeout=None if first else self.IDLE_EXIT_S)
            except queue.Empty:
                with self.lock:
                    self.idle -= 1
                    if self.queue.empty():  # (checked under the lock _put takes: no item is stranded)
                        self.threads -= 1
                        return
                continue
            with self.lock:
                self.idle -= 1
            executor, src, dst, ref = item
            del item, ref
            try:
                executor._finished(src, dst)
            except BaseException:  # never let one bad call stop the relay
                logging.getLogger("swarm.util.executor").exception("settling a future failed")
            del executor, src, dst


_RELAY = _Relay()


class Executor(concurrent.futures.Executor):
    """``concurrent.futures.Executor`` on swarm tasks.

    ``max_workers``: most tasks in flight at once (default: no limit; swarm queues them by
    resources). ``initializer(*initargs)`` runs once per worker process before the first of this
    executor's calls there. ``thread_name_prefix`` and ``mp_context`` are accepted for
    compatibility and ignored. Any other keyword is a task option passed to ``.options()``.
    Calls ``swarm.init()`` if swarm is not initialized.
    """

    def __init__(self, max_workers: int | None = None, thread_name_prefix: str = "",
                 initializer: Callable[..., Any] | None = None, initargs: tuple = (),
                 mp_context: Any = None, **task_options: Any) -> None:
        if max_workers is not None and max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if not swarm.is_initialized():
            swarm.init()
        self._max_workers = max_workers
        self._initializer = initializer
        self._initargs = tuple(initargs)
        self._init_key = os.urandom(8).hex()
        self._task_options = task_options
        self._remotes: collections.OrderedDict = collections.OrderedDict()  # fn -> remote function
        self._remotes_lock = threading.Lock()
        self._remote_for(_call)  # (checks the task options now)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._inflight = 0  # calls submitted to swarm and not finished
        self._unsettled = 0  # futures handed out and not completed (or cancelled) yet
        self._pending: collections.deque = collections.deque()  # waiting for room (max_workers)
        self._shutdown = False

    # -- concurrent.futures.Executor --------------------------------------------------------------
    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        if not callable(fn):
            raise TypeError(f"submit() needs a callable, got {type(fn).__name__}")
        fut: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._unsettled += 1
            if self._max_workers is not None and self._inflight >= self._max_workers:
                self._pending.append((fut, fn, args, kwargs))
                return fut
            self._inflight += 1
        if not self._start(fut, fn, args, kwargs):
            self._task_done()
            self._settled()
        return fut

    def map(self, fn: Callable[..., Any], *iterables: Iterable, timeout: float | None = None,
            chunksize: int = 1) -> Iterator:
        """Like ``Executor.map``; ``chunksize`` > 1 sends that many calls per task (as
        ``ProcessPoolExecutor``)."""
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        if chunksize == 1:
            return super().map(fn, *iterables, timeout=timeout)
        chunks = _chunks(zip(*iterables, strict=False), chunksize)
        results = super().map(_call_chunk, itertools.repeat(fn), chunks, timeout=timeout)
        return _flatten(results)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            cancelled = list(self._pending) if cancel_futures else []
            if cancel_futures:
                self._pending.clear()
                self._unsettled -= len(cancelled)
                self._idle.notify_all()
        for fut, *_ in cancelled:
            fut.cancel()
        # (from a done-callback, on the relay thread, waiting would wait for itself)
        if wait and not _RELAY.in_relay():
            with self._idle:
                self._idle.wait_for(self._is_idle)

    # -- internals --------------------------------------------------------------------------------
    def _remote_for(self, fn: Callable[..., Any]) -> Any:
        """The remote function of a plain Python function (cached, with this executor's options);
        None for other callables (builtins, partials, bound methods, callable objects, classes)."""
        if not inspect.isfunction(fn):
            return None
        with self._remotes_lock:
            rf = self._remotes.get(fn)
            if rf is not None:
                self._remotes.move_to_end(fn)
                return rf
        rf = swarm.remote(fn)
        if self._task_options:
            rf = rf.options(**self._task_options)
        with self._remotes_lock:
            self._remotes[fn] = rf
            if len(self._remotes) > _REMOTES_CACHED:
                self._remotes.popitem(last=False)
        return rf

    def _start(self, fut: concurrent.futures.Future, fn: Callable[..., Any], args: tuple,
               kwargs: dict) -> bool:
        """Submit one call (already counted in flight); False if it is not running (cancelled while
        it waited, or it could not be submitted)."""
        if not fut.set_running_or_notify_cancel():
            return False
        try:
            if self._initializer is not None:
                ref = self._remote_for(_initialized_call).remote(
                    self._init_key, self._initializer, self._initargs, fn, *args, **kwargs)
            else:
                rf = self._remote_for(fn)
                ref = rf.remote(*args, **kwargs) if rf is not None else \
                    self._remote_for(_call).remote(fn, *args, **kwargs)
        except BaseException as e:  # e.g. an argument that cannot be pickled
            fut.set_exception(e)
            return False
        _RELAY.forward(self, ref.future(), fut, ref)
        return True

    def _finished(self, src: concurrent.futures.Future, dst: concurrent.futures.Future) -> None:
        """On the relay thread: a call's task finished."""
        self._task_done()  # first start what waits: keep the cluster busy
        try:
            dst.set_result(src.result())
        except concurrent.futures.InvalidStateError:
            pass
        except BaseException as e:
            try:
                dst.set_exception(e)
            except concurrent.futures.InvalidStateError:
                pass
        self._settled()

    def _task_done(self) -> None:
        """A task left the cluster: start waiting calls while there is room."""
        with self._lock:
            self._inflight -= 1
        while True:
            with self._lock:
                room = self._max_workers is None or self._inflight < self._max_workers
                if not self._pending or not room:
                    return
                nxt = self._pending.popleft()
                self._inflight += 1
            if not self._start(*nxt):  # cancelled while it waited, or not submittable: settled
                with self._lock:
                    self._inflight -= 1
                self._settled()

    def _settled(self) -> None:
        with self._lock:
            self._unsettled -= 1
            if self._is_idle():
                self._idle.notify_all()

    def _is_idle(self) -> bool:
        return self._unsettled == 0 and not self._pending


#: remote functions kept per executor (one per distinct plain function submitted, most recent)
_REMOTES_CACHED = 64


def _chunks(it: Iterator, size: int) -> Iterator[list]:
    while True:
        chunk = list(itertools.islice(it, size))
        if not chunk:
            return
        yield chunk


def _flatten(results: Iterator[list]) -> Iterator:
    try:
        for chunk in results:
            yield from chunk
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()
