"""``@serve.batch``: concurrent calls of an async method are grouped into one call on a list.

    call(x1) ─┐                          ┌─▶ result 1
    call(x2) ─┼─▶ BatchQueue ─▶ fn([x1, x2, x3]) ─┼─▶ result 2
    call(x3) ─┘  (up to max_batch_size, or        └─▶ result 3
                  batch_wait_timeout_s after the first)

One ``BatchQueue`` per instance (per decorated function for plain functions), made on first use in
the running event loop; its batching task lives as long as that loop (the replica's).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import inspect
import logging
from typing import Any, Callable

log = logging.getLogger(__name__)


class _Item:
    __slots__ = ("args", "kwargs", "future")

    def __init__(self, args: tuple, kwargs: dict, future: asyncio.Future) -> None:
        self.args = args
        self.kwargs = kwargs
        self.future = future


class BatchQueue:
    def __init__(self, handler: Callable, max_batch_size: int, batch_wait_timeout_s: float,
                 max_concurrent_batches: int) -> None:
        self.handler = handler
        self.max_batch_size = max_batch_size
        self.batch_wait_timeout_s = batch_wait_timeout_s
        self.items: collections.deque[_Item] = collections.deque()
        self.arrived = asyncio.Event()
        self.slots = asyncio.Semaphore(max_concurrent_batches)
        self.loop = asyncio.get_running_loop()
        self.task = self.loop.create_task(self._run())

    def put(self, args: tuple, kwargs: dict) -> asyncio.Future:
        fut = self.loop.create_future()
        self.items.append(_Item(args, kwargs, fut))
        self.arrived.set()
        return fut

    async def _next_batch(self) -> list[_Item]:
        while not self.items:
            self.arrived.clear()
            await self.arrived.wait()
        deadline = self.loop.time() + self.batch_wait_timeout_s
        while len(self.items) < self.max_batch_size:
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                break
            self.arrived.clear()
            try:  # waiting on an Event loses nothing when it times out (unlike Queue.get)
                await asyncio.wait_for(self.arrived.wait(), remaining)
            except asyncio.TimeoutError:
                break
        n = min(len(self.items), self.max_batch_size)
        return [self.items.popleft() for _ in range(n)]

    async def _run(self) -> None:
        while True:
            await self.slots.acquire()
            try:
                batch = [i for i in await self._next_batch() if not i.future.cancelled()]
            except BaseException:
                self.slots.release()
                raise
            if not batch:
                self.slots.release()
                continue
            task = self.loop.create_task(self._process(batch))
            task.add_done_callback(lambda _t: self.slots.release())

    async def _process(self, batch: list[_Item]) -> None:
        nargs = len(batch[0].args)
        try:
            if any(len(i.args) != nargs or i.kwargs.keys() != batch[0].kwargs.keys() for i in batch):
                raise TypeError("all calls of a @serve.batch method must pass the same arguments (by "
                                "position and by keyword)")
            args = [[i.args[k] for i in batch] for k in range(nargs)]
            kwargs = {key: [i.kwargs[key] for i in batch] for key in batch[0].kwargs}
            results = await self.handler(*args, **kwargs)
            if not isinstance(results, (list, tuple)) or len(results) != len(batch):
                got = f"{len(results)} results" if isinstance(results, (list, tuple)) else repr(type(results))
                raise TypeError(f"the @serve.batch function {_name(self.handler)} got a batch of "
                                f"{len(batch)} inputs and must return a list of {len(batch)} results, but "
                                f"returned {got}")
        except BaseException as e:
            for i in batch:
                if not i.future.done():
                    i.future.set_exception(e)
            if not isinstance(e, Exception):
                raise
            return
        for i, r in zip(batch, results, strict=True):
            if not i.future.done():
                i.future.set_result(r)


def _name(fn: Callable) -> str:
    return getattr(fn, "__qualname__", repr(fn))


def batch(_func: Callable | None = None, *, max_batch_size: int = 10, batch_wait_timeout_s: float = 0.01,
          max_concurrent_batches: int = 1) -> Any:
    """``@serve.batch`` or ``@serve.batch(max_batch_size=, batch_wait_timeout_s=)`` on an async method
    (or function) that takes lists and returns a list of the same length."""
    if not isinstance(max_batch_size, int) or max_batch_size < 1:
        raise ValueError(f"max_batch_size must be an int >= 1, got {max_batch_size!r}")
    if not isinstance(batch_wait_timeout_s, (int, float)) or batch_wait_timeout_s < 0:
        raise ValueError(f"batch_wait_timeout_s must be a number >= 0, got {batch_wait_timeout_s!r}")
    if not isinstance(max_concurrent_batches, int) or max_concurrent_batches < 1:
        raise ValueError(f"max_concurrent_batches must be an int >= 1, got {max_concurrent_batches!r}")

    def decorate(fn: Callable) -> Callable:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"@serve.batch goes on an async function (async def), and {_name(fn)} is not")
        attr = f"__serve_batch_queue_{fn.__name__}"
        plain_queue: list[BatchQueue] = []

        def queue_for(args: tuple) -> tuple[BatchQueue, tuple]:
            this = args[0] if args else None
            member = getattr(type(this), fn.__name__, None) if this is not None else None
            bound = member is not None and (member is wrapper or getattr(member, "__wrapped__", None) is fn)
            if bound:
                q = this.__dict__.get(attr)
                if q is None or q.loop is not asyncio.get_running_loop():
                    q = BatchQueue(functools.partial(fn, this), max_batch_size, batch_wait_timeout_s,
                                   max_concurrent_batches)
                    this.__dict__[attr] = q
                return q, args[1:]
            if not plain_queue or plain_queue[0].loop is not asyncio.get_running_loop():
                plain_queue[:] = [BatchQueue(fn, max_batch_size, batch_wait_timeout_s,
                                             max_concurrent_batches)]
            return plain_queue[0], args

        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            q, item_args = queue_for(args)
            return await q.put(item_args, kwargs)

        wrapper._serve_batch = True  # type: ignore[attr-defined]
        return wrapper

    if _func is not None:
        return decorate(_func)
    return decorate
