"""Reading and writing objects in the node's shared-memory arena from a core worker.

Each process maps the whole arena once (the memfd is sparse: the mapping costs address space, not
memory), so pages a process has touched stay in its page tables: a task reading the same 100 MB
argument as the previous task on that worker does not fault it in again.

A reader first pins the object at the node manager (which also tells where it is now, restoring it
from disk if it was spilled), then gets a read-only view of its bytes: O(1) in the object's size.
The view is exported by a small per-object ctypes array; values built on it (numpy arrays keep
their buffer's exporter alive) keep it alive, and when the last one is gone the pin is dropped. So
memory is never freed, spilled or reused under a live view, whoever the reader is.
"""

from __future__ import annotations

import ctypes
import mmap
import threading
import weakref
from typing import Any, Callable

from swarm.core import serialization

# madvise(2) advice values (Linux 5.14+; Python 3.11's mmap module does not name them)
MADV_POPULATE_WRITE = 23
POPULATE_MIN_BYTES = 1 << 20


class ArenaAccess:
    def __init__(self, arena_fd: int, capacity: int, pin: Callable[[bytes, str | None], tuple[int, int]],
                 unpin: Callable[[bytes], None]) -> None:
        self.fd = arena_fd
        self.whole = mmap.mmap(arena_fd, max(capacity, mmap.PAGESIZE), flags=mmap.MAP_SHARED,
                               prot=mmap.PROT_READ | mmap.PROT_WRITE)
        self._views: weakref.WeakValueDictionary[bytes, Any] = weakref.WeakValueDictionary()
        self._pin = pin
        self._unpin = unpin
        self._lock = threading.Lock()

    def read(self, object_id: bytes, source: str | None = None) -> Any:
        """The value, as views of shared memory; ``source``: the object server of the node that has it
        when that is another node (the bytes are pulled into this node's arena first)."""
        with self._lock:
            exporter = self._views.get(object_id)
            if exporter is None:
                offset, size = self._pin(object_id, source)
                try:
                    exporter = (ctypes.c_char * size).from_buffer(self.whole, offset)
                except BaseException:
                    self._unpin(object_id)
                    raise
                self._views[object_id] = exporter
                weakref.finalize(exporter, self._unpin, object_id)
                # (no populate here: get stays O(1); a reader faults in only the pages it touches)
        return serialization.loads_shm(memoryview(exporter).cast("B").toreadonly())

    def _populate(self, offset: int, size: int, advice: int) -> None:
        """Map the pages of a large object about to be written whole in one system call instead of one
        page fault per 4 KiB (25,000 for 100 MB; allocating fresh pages that way is ~2x faster)."""
        if not self._can_populate:
            return
        start = offset - offset % mmap.PAGESIZE
        try:
            self.whole.madvise(advice, start, offset + size - start)
        except OSError:   # a kernel older than 5.14: pages fault in one by one, as before
            ArenaAccess._can_populate = False

    _can_populate = True

    def write(self, offset: int, s: serialization.Serialized, size: int) -> None:
        if size >= POPULATE_MIN_BYTES:
            self._populate(offset, size, MADV_POPULATE_WRITE)
        with memoryview(self.whole) as whole, whole[offset:offset + size] as mv:
            s.write_to(mv)

    def writable(self, offset: int, size: int) -> memoryview:
        return memoryview(self.whole)[offset:offset + size]
