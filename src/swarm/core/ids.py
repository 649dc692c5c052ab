"""Ids: a worker id (8 random bytes) prefixes every task and object id the worker creates, so ids
are unique without coordination. task id = worker id + counter (16 bytes); object id = task id +
return index (20 bytes; index 0 is a ``put``)."""

from __future__ import annotations

import itertools
import os
import struct

_TASK = struct.Struct(">Q")
_INDEX = struct.Struct(">I")


def new_worker_id() -> bytes:
    return os.urandom(8)


class IdFactory:
    __slots__ = ("_prefix", "_counter")

    def __init__(self, worker_id: bytes) -> None:
        self._prefix = worker_id
        self._counter = itertools.count(1)

    def task_id(self) -> bytes:
        return self._prefix + _TASK.pack(next(self._counter))

    def put_id(self) -> bytes:
        return self._prefix + _TASK.pack(next(self._counter)) + _INDEX.pack(0)


def return_ids(task_id: bytes, n: int) -> list[bytes]:
    return [task_id + _INDEX.pack(i) for i in range(1, n + 1)]

