"""Reading and writing objects in the node's shared-memory arena from a core worker.

A reader first pins the object at the node manager (which also tells where it is now, restoring it
from disk if it was spilled), then maps its pages read-only (``mmap`` of the arena fd at that
offset): O(1) in the object's size. The mapping lives as long as any value built on it (numpy arrays
keep their buffer's exporter alive); when the last one is gone the pin is dropped. So memory is never
freed, spilled or reused under a live view, whoever the reader is (owner or borrower).
"""

from __future__ import annotations

import mmap
import threading
import weakref
from typing import Any, Callable

from swarm.core import serialization


class ArenaAccess:
    def __init__(self, arena_fd: int, pin: Callable[[bytes, str | None], tuple[int, int]],
                 unpin: Callable[[bytes], None]) -> None:
        self.fd = arena_fd
        self._maps: weakref.WeakValueDictionary[bytes, mmap.mmap] = weakref.WeakValueDictionary()
        self._pin = pin
        self._unpin = unpin
        self._lock = threading.Lock()

    def read(self, object_id: bytes, source: str | None = None) -> Any:
        """The value, as views of shared memory; ``source``: the object server of the node that has it
        when that is another node (the bytes are pulled into this node's arena first)."""
        with self._lock:
            mm = self._maps.get(object_id)
            if mm is None:
                offset, size = self._pin(object_id, source)
                try:
                    mm = mmap.mmap(self.fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ, offset=offset)
                except BaseException:
                    self._unpin(object_id)
                    raise
                self._maps[object_id] = mm
                weakref.finalize(mm, self._unpin, object_id)
        return serialization.loads_shm(memoryview(mm))

    def write(self, offset: int, s: serialization.Serialized, size: int) -> None:
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
        mm = mmap.mmap(self.fd, size, flags=flags, prot=mmap.PROT_READ | mmap.PROT_WRITE, offset=offset)
        try:
            with memoryview(mm) as mv:
                s.write_to(mv)
        finally:
            mm.close()
