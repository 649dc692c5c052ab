"""``Queue``: a FIFO queue shared by tasks and actors, held by an async actor, as ``ray.util.queue``.

    q.put(x) ──▶ _QueueActor.put(x)      (an asyncio.Queue on the actor's event loop)
    q.get()  ──▶ _QueueActor.get() ──▶ x  (a blocked get waits on the loop, not in the caller's process)

The ``Queue`` object only holds the actor's handle, so it pickles: pass it to tasks and actors and
every holder talks to the same queue. The actor answers ``(ok, value)``; the caller turns a refusal
into :class:`Empty` / :class:`Full` (subclasses of the standard library's ``queue.Empty`` /
``queue.Full``), so callers never see a wrapped remote error for the ordinary "nothing there" case.
"""

from __future__ import annotations

import asyncio
import queue as _stdlib_queue
from collections.abc import Iterable
from typing import Any

from swarm import api


class Empty(_stdlib_queue.Empty):
    """``get`` found the queue empty (at once, or until its timeout)."""


class Full(_stdlib_queue.Full):
    """``put`` found the queue full (at once, or until its timeout)."""


class _QueueActor:
    """The actor behind a ``Queue``: all its methods run on one event loop, so no locking."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.queue: asyncio.Queue = asyncio.Queue(maxsize)

    def qsize(self) -> int:
        return self.queue.qsize()

    def empty(self) -> bool:
        return self.queue.empty()

    def full(self) -> bool:
        return self.queue.full()

    async def put(self, item: Any, timeout: float | None = None) -> bool:
        try:
            self.queue.put_nowait(item)  # room now: no waiting, even with timeout=0
            return True
        except asyncio.QueueFull:
            if timeout is not None and timeout <= 0:
                return False
        try:
            await asyncio.wait_for(self.queue.put(item), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def get(self, timeout: float | None = None) -> tuple[bool, Any]:
        try:
            return True, self.queue.get_nowait()
        except asyncio.QueueEmpty:
            if timeout is not None and timeout <= 0:
                return False, None
        try:
            return True, await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            return False, None

    def put_nowait(self, item: Any) -> bool:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            return False
        return True

    def put_nowait_batch(self, items: list) -> tuple[bool, str]:
        if self.maxsize > 0 and len(items) + self.queue.qsize() > self.maxsize:
            return False, (f"Cannot add {len(items)} items to queue of size {self.queue.qsize()} "
                           f"and maxsize {self.maxsize}.")
        for item in items:
            self.queue.put_nowait(item)
        return True, ""

    def get_nowait(self) -> tuple[bool, Any]:
        try:
            return True, self.queue.get_nowait()
        except asyncio.QueueEmpty:
            return False, None

    def get_nowait_batch(self, num_items: int) -> tuple[bool, Any]:
        if num_items > self.queue.qsize():
            return False, f"Cannot get {num_items} items from queue of size {self.queue.qsize()}."
        return True, [self.queue.get_nowait() for _ in range(num_items)]

    def shutdown_queue(self) -> None:
        from swarm.actor import exit_actor
        exit_actor()


_ACTOR_CLASS: Any = None


def _actor_class() -> Any:
    global _ACTOR_CLASS
    if _ACTOR_CLASS is None:
        _ACTOR_CLASS = api.remote(_QueueActor)
    return _ACTOR_CLASS


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")


class Queue:
    """A first-in first-out queue usable from the driver, tasks and actors alike.

    ``maxsize <= 0`` means unbounded. ``actor_options`` are passed to ``.options()`` of the backing
    actor (e.g. ``{"num_cpus": 0, "name": "jobs"}``).

    >>> q = Queue(maxsize=10)
    >>> q.put(1); q.get()
    1
    """

    def __init__(self, maxsize: int = 0, actor_options: dict | None = None) -> None:
        self.maxsize = maxsize
        self.actor: Any = _actor_class().options(**(actor_options or {})).remote(maxsize)

    def _handle(self) -> Any:
        if self.actor is None:
            raise RuntimeError("this Queue was shut down (Queue.shutdown()); create a new one")
        return self.actor

    def __len__(self) -> int:
        return self.size()

    def size(self) -> int:
        """The number of items in the queue (same as :meth:`qsize`)."""
        return self.qsize()

    def qsize(self) -> int:
        """The number of items in the queue."""
        return api.get(self._handle().qsize.remote())

    def empty(self) -> bool:
        """Whether the queue is empty."""
        return api.get(self._handle().empty.remote())

    def full(self) -> bool:
        """Whether the queue is full (never, when unbounded)."""
        return api.get(self._handle().full.remote())

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Add ``item``; if the queue is full, wait (up to ``timeout`` seconds) or raise :class:`Full`."""
        if not block:
            if not api.get(self._handle().put_nowait.remote(item)):
                raise Full
            return
        _check_timeout(timeout)
        if not api.get(self._handle().put.remote(item, timeout)):
            raise Full

    async def put_async(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """:meth:`put` for use inside a running event loop (``await q.put_async(x)``)."""
        if not block:
            if not await self._handle().put_nowait.remote(item):
                raise Full
            return
        _check_timeout(timeout)
        if not await self._handle().put.remote(item, timeout):
            raise Full

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return the oldest item; if empty, wait (up to ``timeout``) or raise :class:`Empty`."""
        if not block:
            ok, value = api.get(self._handle().get_nowait.remote())
        else:
            _check_timeout(timeout)
            ok, value = api.get(self._handle().get.remote(timeout))
        if not ok:
            raise Empty
        return value

    async def get_async(self, block: bool = True, timeout: float | None = None) -> Any:
        """:meth:`get` for use inside a running event loop (``await q.get_async()``)."""
        if not block:
            ok, value = await self._handle().get_nowait.remote()
        else:
            _check_timeout(timeout)
            ok, value = await self._handle().get.remote(timeout)
        if not ok:
            raise Empty
        return value

    def put_nowait(self, item: Any) -> None:
        """``put(item, block=False)``."""
        self.put(item, block=False)

    def put_nowait_batch(self, items: Iterable) -> None:
        """Add all ``items`` at once, or none of them (raising :class:`Full`) if they do not fit."""
        if not isinstance(items, Iterable):
            raise TypeError("Argument 'items' must be an Iterable")
        ok, msg = api.get(self._handle().put_nowait_batch.remote(list(items)))
        if not ok:
            raise Full(msg)

    def get_nowait(self) -> Any:
        """``get(block=False)``."""
        return self.get(block=False)

    def get_nowait_batch(self, num_items: int) -> list:
        """Remove and return ``num_items`` items, or none (raising :class:`Empty`) if fewer are there."""
        if not isinstance(num_items, int):
            raise TypeError("Argument 'num_items' must be an int")
        if num_items < 0:
            raise ValueError("'num_items' must be nonnegative")
        ok, value = api.get(self._handle().get_nowait_batch.remote(num_items))
        if not ok:
            raise Empty(value)
        return value

    def shutdown(self, force: bool = False, grace_period_s: int = 5) -> None:
        """Stop the backing actor: at once with ``force``, else after a graceful exit (killed if it
        takes longer than ``grace_period_s``). Items still in the queue are lost."""
        if self.actor is None:
            return
        if force:
            api.kill(self.actor, no_restart=True)
        else:
            done, _ = api.wait([self.actor.shutdown_queue.remote()], timeout=grace_period_s)
            if not done:
                api.kill(self.actor, no_restart=True)
        self.actor = None


__all__ = ["Queue", "Empty", "Full"]
