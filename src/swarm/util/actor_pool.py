"""``ActorPool``: spread work over a fixed set of actors, as ``ray.util.ActorPool`` does.

    pool.submit(fn, v) ──▶ an idle actor a: ref = fn(a, v)  (none idle: queued until one frees up)
    pool.get_next()    ──▶ results in submission order;  get_next_unordered() ──▶ first finished
    a result taken ──▶ its actor is idle again and picks up the oldest queued submission

``fn`` is ``lambda actor, value: actor.method.remote(value)``; it may also return a list of refs
(a method with ``num_returns > 1``), whose result is then the list of values. An actor whose call
fails with ``ActorDiedError`` leaves the pool, so the remaining actors keep making progress.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

from swarm import api
from swarm.exceptions import ActorDiedError

_TIMEOUT_MSG = "Timed out waiting for result"


def _key(future: Any) -> Any:
    """A hashable key for what ``fn`` returned (a ref, or a list of refs)."""
    return tuple(future) if isinstance(future, list) else future


def _probe(future: Any) -> Any:
    """The ref that tells when ``future`` is done: all refs of one call finish together."""
    if isinstance(future, (list, tuple)):
        if not future:
            raise ValueError("the function given to ActorPool returned an empty list of refs")
        return future[0]
    return future


class ActorPool:
    """A fixed pool of actors; ``fn(actor, value)`` must start a call and return its ref(s).

    >>> pool = ActorPool([a1, a2])
    >>> list(pool.map(lambda a, v: a.double.remote(v), [1, 2, 3, 4]))
    [2, 4, 6, 8]
    """

    def __init__(self, actors: Iterable[Any]) -> None:
        self._idle_actors: list[Any] = list(actors)
        self._future_to_actor: dict[Any, tuple[int, Any]] = {}  # key -> (submission index, actor)
        self._index_to_future: dict[int, Any] = {}
        self._next_task_index = 0
        self._next_return_index = 0
        self._pending_submits: list[tuple[Callable, Any]] = []

    # -- bulk ---------------------------------------------------------------------------------------
    def map(self, fn: Callable[[Any, Any], Any], values: Iterable[Any]) -> Iterator[Any]:
        """Apply ``fn`` over ``values`` on the pool; an iterator of results in the order of ``values``.

        Results not yet taken from earlier submissions are dropped first (as Ray does).
        """
        self._drop_outstanding(ordered=True)
        for v in values:
            self.submit(fn, v)

        def results() -> Iterator[Any]:
            while self.has_next():
                yield self.get_next()
        return results()

    def map_unordered(self, fn: Callable[[Any, Any], Any], values: Iterable[Any]) -> Iterator[Any]:
        """Like :meth:`map`, but yields each result as soon as it is ready."""
        self._drop_outstanding(ordered=False)
        for v in values:
            self.submit(fn, v)

        def results() -> Iterator[Any]:
            while self.has_next():
                yield self.get_next_unordered()
        return results()

    def _drop_outstanding(self, ordered: bool) -> None:
        while self.has_next():
            try:
                if ordered:
                    self.get_next(timeout=0, ignore_if_timedout=True)
                else:
                    self.get_next_unordered(timeout=0, ignore_if_timedout=True)
            except TimeoutError:
                pass
            except Exception:  # a dropped result that failed: nobody asked for it any more
                pass

    # -- one at a time ------------------------------------------------------------------------------
    def submit(self, fn: Callable[[Any, Any], Any], value: Any) -> None:
        """Start ``fn(actor, value)`` on an idle actor, or queue it until one is free."""
        if not self._idle_actors:
            self._pending_submits.append((fn, value))
            return
        actor = self._idle_actors.pop()
        future = fn(actor, value)
        index = self._next_task_index
        self._future_to_actor[_key(future)] = (index, actor)
        self._index_to_future[index] = future
        self._next_task_index += 1

    def has_next(self) -> bool:
        """Whether some submitted result has not been returned yet."""
        return bool(self._future_to_actor)

    def get_next(self, timeout: float | None = None, ignore_if_timedout: bool = False) -> Any:
        """The next result in submission order, waiting up to ``timeout`` seconds for it.

        On timeout raises ``TimeoutError``; with ``ignore_if_timedout=True`` the late call is
        dropped first (its actor returns to the pool) so the next ``get_next`` moves past it.
        """
        if not self.has_next():
            raise StopIteration("No more results to get")
        if self._next_return_index >= self._next_task_index:
            raise ValueError("It is not allowed to call get_next() after get_next_unordered().")
        index = self._next_return_index
        future = self._index_to_future[index]
        timed_out = False
        if timeout is not None:
            ready, _ = api.wait([_probe(future)], num_returns=1, timeout=timeout)
            if not ready:
                if not ignore_if_timedout:
                    raise TimeoutError(_TIMEOUT_MSG)
                timed_out = True
        del self._index_to_future[index]
        self._next_return_index += 1
        _, actor = self._future_to_actor.pop(_key(future))
        if timed_out:
            self._return_actor(actor)
            raise TimeoutError(f"{_TIMEOUT_MSG}. The task {future} has been ignored.")
        return self._get_result(future, actor)

    def get_next_unordered(self, timeout: float | None = None, ignore_if_timedout: bool = False) -> Any:
        """Whichever result is ready first, waiting up to ``timeout`` seconds.

        On timeout raises ``TimeoutError``; with ``ignore_if_timedout=True`` the oldest outstanding
        call is dropped first (its actor returns to the pool).
        """
        if not self.has_next():
            raise StopIteration("No more results to get")
        by_probe = {_probe(f): k for k, f in ((_key(f), f) for f in self._index_to_future.values())}
        ready, _ = api.wait(list(by_probe), num_returns=1, timeout=timeout)
        timed_out = not ready
        if timed_out:
            if not ignore_if_timedout:
                raise TimeoutError(_TIMEOUT_MSG)
            index = min(self._index_to_future)
            key = _key(self._index_to_future[index])
        else:
            key = by_probe[ready[0]]
            index = self._future_to_actor[key][0]
        future = self._index_to_future.pop(index)
        _, actor = self._future_to_actor.pop(key)
        self._next_return_index = max(self._next_return_index, index + 1)
        if timed_out:
            self._return_actor(actor)
            raise TimeoutError(f"{_TIMEOUT_MSG}. The task {future} has been ignored.")
        return self._get_result(future, actor)

    def _get_result(self, future: Any, actor: Any) -> Any:
        alive = True
        try:
            return api.get(future)
        except ActorDiedError:
            alive = False
            raise
        finally:
            self._return_actor(actor, alive)

    def _return_actor(self, actor: Any, alive: bool = True) -> None:
        if alive:
            self._idle_actors.append(actor)
        if self._pending_submits and self._idle_actors:
            self.submit(*self._pending_submits.pop(0))

    # -- membership ---------------------------------------------------------------------------------
    def has_free(self) -> bool:
        """Whether an actor is idle and no submission is waiting for one."""
        return bool(self._idle_actors) and not self._pending_submits

    def pop_idle(self) -> Any:
        """Remove and return an idle actor, or ``None`` when none is free."""
        if self.has_free():
            return self._idle_actors.pop()
        return None

    def push(self, actor: Any) -> None:
        """Add an actor to the pool (it takes a queued submission at once if there is one)."""
        busy = [a for _, a in self._future_to_actor.values()]
        if actor in self._idle_actors or actor in busy:
            raise ValueError("Actor already belongs to current ActorPool")
        self._return_actor(actor)


__all__ = ["ActorPool"]
