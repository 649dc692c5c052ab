"""``multiprocessing.Pool`` on swarm actors: change one import, keep the code.

    from swarm.util.multiprocessing import Pool

    with Pool() as pool:                      # processes = the cluster's CPUs
        squares = pool.map(square, range(10_000))

How it runs, on the public API only::

    Pool ──▶ one actor per process slot (_PoolWorker, num_cpus=1; initializer in __init__)
    map/imap/apply ──▶ a job whose items are cut into batches (chunks) lazily; the first batches
                       leave from the caller's thread, the rest from the dispatcher thread
    dispatcher thread ──▶ keeps 2 batches in flight per actor (4 while batches are short, see
                          INFLIGHT_SHORT_BATCHES): actor.run_batch.remote(fn, items, mode)
        ◀── ref.future() done ── (an event on a queue; results are filed by the dispatcher thread,
                                  which also runs callback / error_callback, as the stdlib's
                                  result-handler thread does)

A batch is one actor call that runs ``fn`` over its items and returns their results, so 10,000
trivial items cost a handful of calls (``chunksize=None`` picks the stdlib's size:
``len / (4 * processes)`` rounded up). A batch that raises fails as a whole, with the worker
function's exception (swarm's ``TaskError`` is also an instance of the user's exception class), as
a failed chunk does in the standard library. ``maxtasksperchild`` counts items: an actor gets no
more than that many (batches are cut to fit), then it is killed and replaced once its batches are
back. An actor that dies (killed, crashed, ``sys.exit`` in a function) fails its batches with
``ActorDiedError`` and is replaced.

Differences from the standard library: results pending when the pool is terminated fail with
``RuntimeError`` instead of never completing; ``imap``/``imap_unordered`` take items from the
iterable lazily (as workers free up) rather than all at once; with more ``processes`` than the
cluster has CPUs each actor asks for a fraction of a CPU, so they all fit.
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import itertools
import logging
import multiprocessing
import os
import queue
import threading
import time
import types
import weakref
from typing import Any, Callable, Iterable

import swarm
from swarm.exceptions import ActorDiedError

__all__ = ["Pool", "AsyncResult", "ApplyResult", "MapResult", "IMapIterator", "IMapUnorderedIterator",
           "TimeoutError"]

log = logging.getLogger("swarm.util.multiprocessing")

#: the exception ``get(timeout)`` / ``next(timeout)`` raise: the standard library's own
TimeoutError = multiprocessing.TimeoutError

#: batches kept in flight per actor: one running, one queued behind it, so an actor never idles
#: waiting for the dispatcher
INFLIGHT_PER_ACTOR = 2
#: ... and up to this many while batches are short (under SHORT_BATCH_S). A worker holds the replies
#: of short calls until its queue is empty (or 2 ms), so with 2 in flight an actor would finish both,
#: reply, then idle for a round trip; a deeper queue hides that, and with batches this short the
#: load balance it costs is negligible.
INFLIGHT_SHORT_BATCHES = 4
SHORT_BATCH_S = 0.002

# how a batch calls fn on each item
_ONE, _STAR, _CALL = 0, 1, 2


class _PoolWorker:
    """The actor behind one process slot of the pool."""

    def __init__(self, initializer: Callable[..., Any] | None, initargs: tuple) -> None:
        if initializer is not None:
            initializer(*initargs)

    def run_batch(self, fn: Callable[..., Any], items: list, mode: int) -> list:
        if mode == _ONE:
            return [fn(x) for x in items]
        if mode == _STAR:
            return [fn(*x) for x in items]
        return [fn(*args, **kwargs) for args, kwargs in items]

    def pid(self) -> int:
        return os.getpid()


_PoolActor = swarm.remote(num_cpus=1)(_PoolWorker)


# --------------------------------------------------------------------------------------- results


class ApplyResult:
    """The result of ``apply_async`` (and the base of ``MapResult``), as ``multiprocessing.pool``'s."""

    def __init__(self, pool: Pool, callback: Callable[[Any], Any] | None = None,
                 error_callback: Callable[[BaseException], Any] | None = None) -> None:
        self._pool: Pool | None = pool  # keeps the pool alive while the result is pending (as stdlib)
        self._event = threading.Event()
        self._callback = callback
        self._error_callback = error_callback
        self._success = True
        self._value: Any = None

    def ready(self) -> bool:
        return self._event.is_set()

    def successful(self) -> bool:
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._success

    def wait(self, timeout: float | None = None) -> None:
        self._event.wait(timeout)

    def get(self, timeout: float | None = None) -> Any:
        self.wait(timeout)
        if not self.ready():
            raise TimeoutError
        if self._success:
            return self._value
        raise self._value

    # -- filled in by the dispatcher --------------------------------------------------------------
    def _set_length(self, n: int) -> None:
        pass

    def _set_chunk(self, start: int, count: int, ok: bool, value: Any) -> None:
        self._success = ok
        self._value = value[0] if ok else value
        self._finish()

    def _finish(self) -> None:
        pool, self._pool = self._pool, None
        if self._success:
            _call_back(self._callback, self._value)
        else:
            _call_back(self._error_callback, self._value)
        self._event.set()
        if pool is not None:
            pool._core.forget(self)

    def _abort(self, exc: BaseException) -> None:
        if not self.ready():
            self._success = False
            self._value = exc
            self._finish()

    __class_getitem__: Any = classmethod(types.GenericAlias)


AsyncResult = ApplyResult


class MapResult(ApplyResult):
    """The result of ``map_async`` / ``starmap_async``: a list in input order once every item is done;
    the first failure wins and is raised (once all batches are back, as stdlib)."""

    def __init__(self, pool: Pool, length: int, callback: Callable[[Any], Any] | None = None,
                 error_callback: Callable[[BaseException], Any] | None = None) -> None:
        super().__init__(pool, callback, error_callback)
        self._value = [None] * length
        self._left = length
        if length == 0:  # as stdlib: ready at once, no callback
            self._pool = None
            self._event.set()

    def _set_chunk(self, start: int, count: int, ok: bool, value: Any) -> None:
        if ok:
            if self._success:
                self._value[start:start + count] = value
        elif self._success:
            self._success = False
            self._value = value
        self._left -= count
        if self._left <= 0:
            self._finish()


class IMapIterator:
    """The iterator ``imap`` returns: results in input order; ``next(timeout)`` raises
    ``multiprocessing.TimeoutError`` when the next result is not ready in time. A failed batch raises
    its exception once, at its first item's place, then iteration goes on with the next batch."""

    _ordered = True

    def __init__(self, pool: Pool) -> None:
        self._pool: Pool | None = pool
        self._cond = threading.Condition(threading.Lock())
        self._by_index: dict[int, tuple[bool, Any] | None] = {}  # None: an item of a failed batch
        self._done: collections.deque[tuple[bool, Any]] = collections.deque()  # unordered
        self._index = 0  # the next index to yield (ordered)
        self._accounted = 0  # items whose outcome arrived
        self._length: int | None = None
        self._aborted: BaseException | None = None
        self._stopped = False

    def __iter__(self) -> IMapIterator:
        return self

    def next(self, timeout: float | None = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                item = self._pop()
                if item is not None:
                    ok, value = item
                    if ok:
                        return value
                    raise value
                if self._aborted is not None:
                    exc, self._aborted, self._stopped = self._aborted, None, True
                    raise exc
                if self._stopped or self._exhausted():
                    raise StopIteration
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError
                self._cond.wait(remaining)

    __next__ = next

    def _pop(self) -> tuple[bool, Any] | None:
        if not self._ordered:
            return self._done.popleft() if self._done else None
        by_index = self._by_index
        while self._index in by_index:
            item = by_index.pop(self._index)
            self._index += 1
            if item is not None:
                return item
        return None

    def _exhausted(self) -> bool:
        if self._length is None:
            return False
        return self._index >= self._length if self._ordered else self._accounted >= self._length

    # -- filled in by the dispatcher --------------------------------------------------------------
    def _set_length(self, n: int) -> None:
        with self._cond:
            self._length = n
            self._cond.notify_all()
        self._maybe_forget()

    def _set_chunk(self, start: int, count: int, ok: bool, value: Any) -> None:
        with self._cond:
            if self._ordered:
                if ok:
                    for i, v in enumerate(value):
                        self._by_index[start + i] = (True, v)
                else:
                    self._by_index[start] = (False, value)
                    for i in range(start + 1, start + count):
                        self._by_index[i] = None
            elif ok:
                self._done.extend((True, v) for v in value)
            else:
                self._done.append((False, value))
            self._accounted += count
            self._cond.notify_all()
        self._maybe_forget()

    def _maybe_forget(self) -> None:
        if self._length is not None and self._accounted >= self._length:
            pool, self._pool = self._pool, None
            if pool is not None:
                pool._core.forget(self)

    def _abort(self, exc: BaseException) -> None:
        with self._cond:
            if self._length is not None and self._accounted >= self._length:
                return
            self._aborted = exc
            self._cond.notify_all()
        self._pool = None


class IMapUnorderedIterator(IMapIterator):
    """The iterator ``imap_unordered`` returns: results in the order they complete."""

    _ordered = False


def _call_back(fn: Callable[[Any], Any] | None, value: Any) -> None:
    if fn is None:
        return
    try:
        fn(value)
    except Exception:
        log.exception("a Pool callback raised (ignored; callbacks should not raise)")


# --------------------------------------------------------------------------------------- dispatcher


class _Feeder:
    """The items of one job, taken from its iterable lazily, a batch at a time."""

    __slots__ = ("job", "fn", "mode", "it", "chunksize", "next_index", "exhausted")

    def __init__(self, job: Any, fn: Callable[..., Any], mode: int, iterable: Iterable,
                 chunksize: int, length: int | None) -> None:
        self.job = job
        self.fn = fn
        self.mode = mode
        self.it = iter(iterable)
        self.chunksize = max(1, chunksize)
        self.next_index = 0
        self.exhausted = False
        if length is not None:
            job._set_length(length)
            if length == 0:
                self.exhausted = True

    def take(self, limit: int) -> tuple[int, list] | None:
        n = min(self.chunksize, limit)
        start = self.next_index
        try:
            items = list(itertools.islice(self.it, n))
        except Exception as e:  # the iterable itself raised: that item fails, and the job ends there
            self.exhausted = True
            self.job._set_length(start + 1)
            self.job._set_chunk(start, 1, False, e)
            return None
        self.next_index += len(items)
        if len(items) < n:
            self.exhausted = True
            self.job._set_length(self.next_index)
        return (start, items) if items else None


class _Slot:
    """One process slot: its current actor and what is in flight to it."""

    __slots__ = ("index", "handle", "generation", "inflight", "assigned", "retiring", "dead", "last_done")

    def __init__(self, index: int) -> None:
        self.index = index
        self.handle: Any = None
        self.generation = 0
        self.inflight = 0
        self.assigned = 0  # items sent to the current actor
        self.retiring = False  # reached maxtasksperchild: replace once its batches are back
        self.dead = False
        self.last_done = 0.0  # when its last batch came back


class _Batch:
    __slots__ = ("slot", "generation", "job", "start", "count", "ref", "submitted")

    def __init__(self, slot: _Slot, job: Any, start: int, count: int, ref: Any) -> None:
        self.submitted = time.monotonic()
        self.slot = slot
        self.generation = slot.generation
        self.job = job
        self.start = start
        self.count = count
        self.ref = ref  # keeps the result alive until it is filed


_WAKE = ("wake",)
_TERMINATE = ("terminate",)


class _Core:
    """Everything the pool's dispatcher thread works on; holds no reference to the ``Pool`` object, so
    an unreferenced pool is collected and its actors stopped."""

    def __init__(self, processes: int, initializer: Callable[..., Any] | None, initargs: tuple,
                 maxtasksperchild: int | None, actor_options: dict) -> None:
        self.processes = processes
        self.initializer = initializer
        self.initargs = initargs
        self.maxtasks = maxtasksperchild
        self.actor_options = actor_options
        self.lock = threading.RLock()
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.feeders: collections.deque[_Feeder] = collections.deque()
        self.jobs: set = set()  # results not yet complete (stdlib's pool._cache)
        self.state = "RUN"  # RUN -> CLOSE -> (drained) -> STOPPED;  RUN/CLOSE -> TERMINATE -> STOPPED
        self.slots = [_Slot(i) for i in range(processes)]
        self.killed: list = []  # handles killed when the pool stopped (join waits for them)
        self.batch_s: float | None = None  # moving average of how long a batch keeps an actor busy
        with self.lock:
            for slot in self.slots:
                self._start_actor(slot)
        self.thread = threading.Thread(target=self._run, name="swarm-pool-dispatcher", daemon=True)
        self.thread.start()

    # -- called from user threads -------------------------------------------------------------------
    def add(self, feeder: _Feeder) -> None:
        with self.lock:
            if self.state != "RUN":
                raise ValueError("Pool not running")
            if not feeder.exhausted:  # (an empty map is complete already)
                self.jobs.add(feeder.job)
                self.feeders.append(feeder)
                self._fill()  # start it from this thread: no hop through the dispatcher
                if not self.feeders:
                    return
        self.events.put(_WAKE)

    def forget(self, job: Any) -> None:
        with self.lock:
            self.jobs.discard(job)

    def close(self) -> None:
        with self.lock:
            if self.state == "RUN":
                self.state = "CLOSE"
        self.events.put(_WAKE)

    def terminate(self) -> None:
        with self.lock:
            if self.state == "STOPPED":
                return
            self.state = "TERMINATE"
            self._kill_all()
            self.feeders.clear()
        self.events.put(_WAKE)  # the dispatcher fails what is pending, and stops

    def _abort_jobs(self) -> None:
        with self.lock:
            jobs, self.jobs = list(self.jobs), set()
        err = RuntimeError("the Pool was terminated before this result was ready")
        for job in jobs:
            job._abort(err)

    def terminate_soon(self) -> None:
        """From the garbage collector (any thread, any locks held): let the dispatcher terminate."""
        self.events.put(_TERMINATE)

    def actor_handles(self) -> list:
        with self.lock:
            return [s.handle for s in self.slots if s.handle is not None]

    # -- the dispatcher thread ----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                ev = self.events.get()
                while True:  # file everything that has arrived before dispatching more
                    if ev is _TERMINATE:
                        self.terminate()
                    elif ev is not _WAKE:
                        self._completed(*ev)
                    try:
                        ev = self.events.get_nowait()
                    except queue.Empty:
                        break
                if self.state == "TERMINATE":
                    self._abort_jobs()
                    self.state = "STOPPED"
                    return
                with self.lock:
                    self._recycle()
                    self._fill()
                    if self.state == "CLOSE" and not self.feeders and \
                            not any(s.inflight for s in self.slots):
                        self._kill_all()
                        self.state = "STOPPED"
                        return
        except BaseException:  # never leave results hanging because the dispatcher died
            log.exception("the Pool's dispatcher thread failed")
            with self.lock:
                self.state = "TERMINATE"
                self._kill_all()
            self._abort_jobs()
            self.state = "STOPPED"
            raise

    def _completed(self, batch: _Batch, fut: Any) -> None:
        try:
            value, ok = fut.result(), True
        except BaseException as e:
            value, ok = e, False
        with self.lock:
            if self.state in ("TERMINATE", "STOPPED"):
                return
            slot = batch.slot
            if slot.generation == batch.generation:
                slot.inflight -= 1
                now = time.monotonic()  # how long this batch kept the actor busy
                service = now - max(batch.submitted, slot.last_done)
                slot.last_done = now
                self.batch_s = service if self.batch_s is None else 0.7 * self.batch_s + 0.3 * service
                if not ok and isinstance(value, ActorDiedError):
                    slot.dead = True
        batch.job._set_chunk(batch.start, batch.count, ok, value)

    def _fill(self) -> None:
        """Under the lock: hand batches to actors with room, oldest job first."""
        while self.feeders:
            slot = self._free_slot()
            if slot is None:
                return
            feeder = self.feeders[0]
            limit = self.maxtasks - slot.assigned if self.maxtasks else feeder.chunksize
            chunk = feeder.take(limit)
            if feeder.exhausted:
                self.feeders.popleft()
            if chunk is not None:
                self._submit(slot, feeder, *chunk)

    def _free_slot(self) -> _Slot | None:
        best = None
        depth = INFLIGHT_SHORT_BATCHES if self.batch_s is not None and self.batch_s < SHORT_BATCH_S \
            else INFLIGHT_PER_ACTOR
        for s in self.slots:
            if s.handle is None or s.dead or s.retiring or s.inflight >= depth:
                continue
            if best is None or s.inflight < best.inflight:
                best = s
        return best

    def _submit(self, slot: _Slot, feeder: _Feeder, start: int, items: list) -> None:
        try:
            ref = slot.handle.run_batch.remote(feeder.fn, items, feeder.mode)
        except Exception as e:  # e.g. an argument that cannot be pickled: that batch fails (filed
            failed: concurrent.futures.Future = concurrent.futures.Future()  # by the loop, unlocked)
            failed.set_exception(e)
            batch = _Batch(slot, feeder.job, start, len(items), None)
            batch.generation = -1  # counts nothing against the slot
            self.events.put((batch, failed))
            return
        slot.inflight += 1
        slot.assigned += len(items)
        if self.maxtasks and slot.assigned >= self.maxtasks:
            slot.retiring = True
        batch = _Batch(slot, feeder.job, start, len(items), ref)
        ref.future().add_done_callback(functools.partial(_post, self.events, batch))

    def _recycle(self) -> None:
        """Under the lock: replace actors that reached maxtasksperchild or died, once idle."""
        if self.state == "TERMINATE" or (self.state == "CLOSE" and not self.feeders):
            return
        for slot in self.slots:
            if slot.handle is not None and (slot.retiring or slot.dead) and slot.inflight == 0:
                _kill(slot.handle)
                self._start_actor(slot)

    def _start_actor(self, slot: _Slot) -> None:
        slot.handle = _PoolActor.options(**self.actor_options).remote(self.initializer, self.initargs)
        slot.generation += 1
        slot.inflight = slot.assigned = 0
        slot.retiring = slot.dead = False

    def _kill_all(self) -> None:
        for slot in self.slots:
            handle, slot.handle = slot.handle, None
            slot.generation += 1
            slot.inflight = 0
            if handle is not None:
                _kill(handle)
                self.killed.append(handle)

    def await_exit(self, timeout: float = 10.0) -> None:
        """After the pool stopped: return once every killed actor is gone (a call on it fails)."""
        with self.lock:
            handles, self.killed = self.killed, []
        deadline = time.monotonic() + timeout
        for handle in handles:
            while time.monotonic() < deadline:
                try:
                    swarm.get(handle.pid.remote(), timeout=max(0.0, deadline - time.monotonic()))
                except Exception:  # ActorDiedError: gone (or swarm is shutting down)
                    break
                time.sleep(0.01)  # the call overtook the kill: look again


def _post(events: queue.SimpleQueue, batch: _Batch, fut: Any) -> None:
    # runs on whichever swarm thread completed the future: only hand the event over
    events.put((batch, fut))


def _kill(handle: Any) -> None:
    try:
        swarm.kill(handle)
    except Exception:  # already dead, or swarm already shut down
        pass


# --------------------------------------------------------------------------------------- the pool


class Pool:
    """A drop-in for ``multiprocessing.Pool`` whose processes are swarm actors (spanning the cluster).

    ``processes`` defaults to the cluster's CPU count; ``initializer(*initargs)`` runs once in each
    actor; ``maxtasksperchild`` replaces an actor after that many items. ``context`` is accepted and
    ignored. ``swarm_remote_args`` (alias ``ray_remote_args``) are extra actor options
    (``num_cpus``, ``resources``, ...). Calls ``swarm.init()`` if swarm is not initialized.
    """

    def __init__(self, processes: int | None = None, initializer: Callable[..., Any] | None = None,
                 initargs: Iterable = (), maxtasksperchild: int | None = None, context: Any = None,
                 swarm_remote_args: dict | None = None, ray_remote_args: dict | None = None) -> None:
        if not swarm.is_initialized():
            swarm.init()
        cpus = float(swarm.cluster_resources().get("CPU", 1))
        if processes is None:
            processes = max(1, int(cpus))
        if not isinstance(processes, int) or isinstance(processes, bool):
            raise TypeError(f"processes must be an int, got {type(processes).__name__}")
        if processes < 1:
            raise ValueError("Number of processes must be at least 1")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if maxtasksperchild is not None and (not isinstance(maxtasksperchild, int)
                                             or maxtasksperchild <= 0):
            raise ValueError("maxtasksperchild must be a positive int or None")
        options: dict = {"num_cpus": min(1.0, cpus / processes) if cpus > 0 else 0}
        options.update(ray_remote_args or {})
        options.update(swarm_remote_args or {})
        self._processes = processes
        self._maxtasksperchild = maxtasksperchild
        self._core = _Core(processes, initializer, tuple(initargs), maxtasksperchild, options)
        self._finalizer = weakref.finalize(self, self._core.terminate_soon)

    # -- helpers --------------------------------------------------------------------------------------
    def _check_running(self) -> None:
        if self._core.state != "RUN":
            raise ValueError("Pool not running")

    def _default_chunksize(self, n: int) -> int:
        chunksize, extra = divmod(n, self._processes * 4)
        return chunksize + 1 if extra else chunksize

    def _map_async(self, fn: Callable[..., Any], iterable: Iterable, mode: int, chunksize: int | None,
                   callback: Callable[[Any], Any] | None,
                   error_callback: Callable[[BaseException], Any] | None) -> MapResult:
        self._check_running()
        if not hasattr(iterable, "__len__"):
            iterable = list(iterable)
        n = len(iterable)  # type: ignore[arg-type]
        if chunksize is None:
            chunksize = self._default_chunksize(n)
        elif chunksize < 1:
            raise ValueError(f"Chunksize must be 1+, not {chunksize}")
        result = MapResult(self, n, callback, error_callback)
        self._core.add(_Feeder(result, fn, mode, iterable, chunksize, n))
        return result

    def _imap(self, cls: type, fn: Callable[..., Any], iterable: Iterable, mode: int,
              chunksize: int | None) -> IMapIterator:
        self._check_running()
        length = len(iterable) if hasattr(iterable, "__len__") else None  # type: ignore[arg-type]
        if chunksize is None:
            chunksize = self._default_chunksize(length) if length else 1
        elif chunksize < 1:
            raise ValueError(f"Chunksize must be 1+, not {chunksize:n}")
        result = cls(self)
        self._core.add(_Feeder(result, fn, mode, iterable, chunksize, length))
        return result

    # -- the multiprocessing.Pool surface -------------------------------------------------------------
    def apply(self, func: Callable[..., Any], args: Iterable = (), kwds: dict | None = None) -> Any:
        """``func(*args, **kwds)`` in a pool process; blocks for the result."""
        return self.apply_async(func, args, kwds).get()

    def apply_async(self, func: Callable[..., Any], args: Iterable = (), kwds: dict | None = None,
                    callback: Callable[[Any], Any] | None = None,
                    error_callback: Callable[[BaseException], Any] | None = None) -> ApplyResult:
        self._check_running()
        result = ApplyResult(self, callback, error_callback)
        self._core.add(_Feeder(result, func, _CALL, [(tuple(args), dict(kwds or {}))], 1, 1))
        return result

    def map(self, func: Callable[..., Any], iterable: Iterable, chunksize: int | None = None) -> list:
        """``[func(x) for x in iterable]`` across the pool, in order; blocks for the list."""
        return self._map_async(func, iterable, _ONE, chunksize, None, None).get()

    def map_async(self, func: Callable[..., Any], iterable: Iterable, chunksize: int | None = None,
                  callback: Callable[[Any], Any] | None = None,
                  error_callback: Callable[[BaseException], Any] | None = None) -> MapResult:
        return self._map_async(func, iterable, _ONE, chunksize, callback, error_callback)

    def starmap(self, func: Callable[..., Any], iterable: Iterable[Iterable],
                chunksize: int | None = None) -> list:
        """``[func(*args) for args in iterable]`` across the pool, in order."""
        return self._map_async(func, iterable, _STAR, chunksize, None, None).get()

    def starmap_async(self, func: Callable[..., Any], iterable: Iterable[Iterable],
                      chunksize: int | None = None, callback: Callable[[Any], Any] | None = None,
                      error_callback: Callable[[BaseException], Any] | None = None) -> MapResult:
        return self._map_async(func, iterable, _STAR, chunksize, callback, error_callback)

    def imap(self, func: Callable[..., Any], iterable: Iterable, chunksize: int | None = 1) -> IMapIterator:
        """An iterator of ``func(x)`` in input order (``next(timeout)`` supported)."""
        return self._imap(IMapIterator, func, iterable, _ONE, chunksize)

    def imap_unordered(self, func: Callable[..., Any], iterable: Iterable,
                       chunksize: int | None = 1) -> IMapIterator:
        """An iterator of ``func(x)`` in completion order."""
        return self._imap(IMapUnorderedIterator, func, iterable, _ONE, chunksize)

    def close(self) -> None:
        """No more work: the actors exit once what was submitted is done."""
        self._core.close()

    def terminate(self) -> None:
        """Stop now: the actors are killed; results still pending fail with ``RuntimeError``."""
        self._finalizer.detach()
        self._core.terminate()

    def join(self) -> None:
        """Wait until the pool has stopped (call ``close()`` or ``terminate()`` first)."""
        if self._core.state in ("RUN",):
            raise ValueError("Pool is still running")
        if self._core.thread is not threading.current_thread():
            self._core.thread.join()
            self._core.await_exit()

    def __enter__(self) -> Pool:
        self._check_running()
        return self

    def __exit__(self, *exc: object) -> None:
        self.terminate()

    def __reduce__(self) -> Any:
        raise NotImplementedError("pool objects cannot be passed between processes or pickled")

    def __repr__(self) -> str:
        return f"<{type(self).__module__}.Pool state={self._core.state} processes={self._processes}>"
