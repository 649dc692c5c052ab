"""``ObjectRef``: a future for a value in the cluster.

Every live ``ObjectRef`` instance is counted by its process's core worker; when a process holds none
for an object any more, the owner hears of it (or, in the owner, the value may be freed). Pickling a
ref inside a value records it as contained (see ``core/serialization.py``); unpickling one in another
process makes that process a borrower.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generator

if TYPE_CHECKING:
    import concurrent.futures

from swarm.core import serialization


class ObjectRef:
    __slots__ = ("_id", "_owner", "_worker", "__weakref__")

    def __init__(self, object_id: bytes, owner_address: str, worker: Any = None, _counted: bool = False):
        self._id = object_id
        self._owner = owner_address
        self._worker = worker
        if worker is not None and not _counted:
            worker.add_local_ref(object_id, owner_address)

    def binary(self) -> bytes:
        return self._id

    def hex(self) -> str:
        return self._id.hex()

    def task_id(self) -> str:
        return self._id[:16].hex()

    @property
    def owner_address(self) -> str:
        return self._owner

    def __hash__(self) -> int:
        return hash(self._id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectRef) and other._id == self._id

    def __lt__(self, other: ObjectRef) -> bool:
        return self._id < other._id

    def __repr__(self) -> str:
        return f"ObjectRef({self._id.hex()})"

    def __del__(self) -> None:
        w = self._worker
        if w is not None:
            try:
                w.remove_local_ref(self._id)
            except Exception:  # interpreter shutdown
                pass

    def __reduce__(self) -> Any:
        serialization.record_contained_ref(self)
        return (_rebuild_ref, (self._id, self._owner))

    def __copy__(self) -> ObjectRef:
        return self

    def __deepcopy__(self, memo: Any) -> ObjectRef:
        return self

    # -- futures ------------------------------------------------------------------------------------
    def future(self) -> concurrent.futures.Future:
        """A ``concurrent.futures.Future`` that completes with the value (or the task's error)."""
        import concurrent.futures  # imported on first use: keeps `import swarm` fast

        fut: concurrent.futures.Future = concurrent.futures.Future()
        worker = self._worker
        if worker is None:
            from swarm import api
            worker = api._require_worker()
        worker.when_ready(self, fut)
        return fut

    def __await__(self) -> Generator[Any, None, Any]:
        import asyncio
        return asyncio.wrap_future(self.future()).__await__()


def _rebuild_ref(object_id: bytes, owner_address: str) -> ObjectRef:
    from swarm.core import core_worker
    return ObjectRef(object_id, owner_address, core_worker.current())
