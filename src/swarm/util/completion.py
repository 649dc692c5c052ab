"""``as_completed(refs)``: yield object refs in the order their values become ready.

    refs ──▶ wait(pending, num_returns=len, timeout=0)   everything ready right now, no waiting
              └─ none ready? wait(pending, num_returns=1, timeout=left) ──▶ block for the next one

Looking first without blocking takes every ref that finished meanwhile in one pass, so a loop over
10,000 refs does not register 10,000 waiters per finished ref. It is how a driver shows progress
over work it submitted: ``for ref in tqdm(as_completed(refs), total=len(refs)): ...``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

from swarm.exceptions import GetTimeoutError
from swarm.object_ref import ObjectRef


def as_completed(refs: Iterable[ObjectRef], timeout: float | None = None) -> Iterator[ObjectRef]:
    """Yield each of ``refs`` once, as it becomes ready (finished or failed: ``get`` it to see which).

    ``timeout`` (seconds) bounds the whole iteration: when it runs out with refs still pending,
    ``GetTimeoutError`` says how many. Refs are not fetched or deserialized here.
    """
    from swarm import api

    pending = list(refs)
    for i, r in enumerate(pending):
        if not isinstance(r, ObjectRef):
            raise TypeError(f"as_completed() expects ObjectRefs, but element {i} is a {type(r).__name__}: "
                            f"{r!r:.80}")
    if len(set(pending)) != len(pending):
        raise ValueError("as_completed() got the same ObjectRef more than once: pass each ref once")
    if timeout is not None and timeout < 0:
        raise ValueError("timeout must be >= 0 or None")
    total = len(pending)
    deadline = None if timeout is None else time.monotonic() + timeout
    while pending:
        ready, pending = api.wait(pending, num_returns=len(pending), timeout=0)
        if not ready:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, pending = api.wait(pending, num_returns=1, timeout=left)
            if not ready:
                raise GetTimeoutError(
                    f"as_completed(): {len(pending)} of {total} refs were still not ready after the timeout "
                    f"of {timeout} s; raise the timeout, or check what they wait for with "
                    f"swarm.util.state.list_tasks()")
        yield from ready
