"""Reading and writing objects in the node's shared-memory arena from a core worker.

A reader maps an object's pages read-only (``mmap`` of the arena fd at the object's offset): O(1) in
the object's size. The mapping lives as long as any value built on it (numpy arrays keep their
buffer's exporter alive), and the core worker is told when the last one is gone so it can drop its
pin (see ``core_worker._on_unmapped``): memory is never reused under a live view.
"""

from __future__ import annotations

import mmap
import weakref
from typing import Any, Callable

from swarm.core import serialization


class ArenaAccess:
    def __init__(self, arena_fd: int, on_unmapped: Callable[[bytes], None]) -> None:
        self.fd = arena_fd
        self._maps: weakref.WeakValueDictionary[bytes, mmap.mmap] = weakref.WeakValueDictionary()
        self._on_unmapped = on_unmapped

    def is_mapped(self, object_id: bytes) -> bool:
        return self._maps.get(object_id) is not None

    def read(self, object_id: bytes, offset: int, size: int) -> Any:
        mm = self._maps.get(object_id)
        if mm is None:
            mm = mmap.mmap(self.fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ, offset=offset)
            self._maps[object_id] = mm
            weakref.finalize(mm, self._on_unmapped, object_id)
        return serialization.loads_shm(memoryview(mm))

    def write(self, offset: int, s: serialization.Serialized, size: int) -> None:
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
        mm = mmap.mmap(self.fd, size, flags=flags, prot=mmap.PROT_READ | mmap.PROT_WRITE, offset=offset)
        try:
            with memoryview(mm) as mv:
                s.write_to(mv)
        finally:
            mm.close()
