"""``init(local_mode=True)``: every task runs at once, serially, in the driver's own thread.

Arguments and results still go through pickling, so what fails on a cluster fails here too, but any
debugger (pdb, an IDE's breakpoints) stops inside the task.
"""

from __future__ import annotations

import itertools
import os
import threading
from typing import Any

from swarm.core import core_worker, ids, serialization
from swarm.exceptions import GetTimeoutError, TaskError


def _dumps(value: Any, what: str) -> bytes:
    return serialization.inline_bytes(serialization.serialize(value, what), value)


class LocalModeWorker:
    mode = "local"

    def __init__(self, num_cpus: float, resources: dict) -> None:
        self.worker_id = ids.new_worker_id()
        self.address = "local:" + self.worker_id.hex()
        self.node_id = "local-" + self.worker_id.hex()
        self.job_id = "01"
        self.ids = ids.IdFactory(self.worker_id)
        self.values: dict[bytes, tuple[bool, bytes]] = {}
        self.refs: dict[bytes, int] = {}
        self.current_task_id: bytes | None = None
        self._lock = threading.Lock()
        self.resources = {"CPU": float(num_cpus), **resources}
        self._counter = itertools.count()

    def add_local_ref(self, oid: bytes, owner: str) -> None:
        with self._lock:
            self.refs[oid] = self.refs.get(oid, 0) + 1

    def remove_local_ref(self, oid: bytes) -> None:
        with self._lock:
            n = self.refs.get(oid, 0) - 1
            if n > 0:
                self.refs[oid] = n
            else:
                self.refs.pop(oid, None)
                self.values.pop(oid, None)

    def _new_ref(self, oid: bytes, ok: bool, data: bytes) -> Any:
        from swarm.object_ref import ObjectRef
        self.values[oid] = (ok, data)
        return ObjectRef(oid, self.address, self)

    def put(self, value: Any) -> Any:
        return self._new_ref(self.ids.put_id(), True, _dumps(value, "value"))

    def _resolve(self, ref: Any) -> Any:
        ok, data = self.values[ref._id]
        value = serialization.loads(data)
        if not ok:
            raise value.as_instanceof_cause() if isinstance(value, TaskError) else value
        return value

    def run_task(self, fn: Any, name: str, args: tuple, kwargs: dict, num_returns: int) -> list:
        from swarm.object_ref import ObjectRef

        task_id = self.ids.task_id()
        rids = ids.return_ids(task_id, num_returns)
        from swarm.core.core_worker import _find_top_level_refs, _serialize_args
        plain_args, plain_kwargs, _ = _find_top_level_refs(args, kwargs)
        _serialize_args(plain_args, plain_kwargs)  # an unpicklable argument fails here, at .remote()
        try:
            args = tuple(self._resolve(a) if type(a) is ObjectRef else a for a in args)
            kwargs = {k: self._resolve(v) if type(v) is ObjectRef else v for k, v in kwargs.items()}
            a, k = serialization.loads(_dumps((args, kwargs), "args"))
            self.current_task_id = task_id
            try:
                result = fn(*a, **k)
            finally:
                self.current_task_id = None
            results = [result] if num_returns == 1 else list(result)
            if len(results) != num_returns:
                raise ValueError(f"{name} returned {len(results)} values, expected {num_returns}")
            out = [(True, _dumps(r, "return value")) for r in results]
        except TaskError as e:  # a failed dependency fails this task with the same error
            out = [(False, serialization.serialize(e).inband)] * num_returns
        except Exception as e:
            err = core_worker.format_task_exception(name, e, self.node_id)
            out = [(False, serialization.serialize(err).inband)] * num_returns
        return [self._new_ref(rid, ok, data) for rid, (ok, data) in zip(rids, out, strict=True)]

    def get(self, refs: list, timeout: float | None) -> list:
        return [self._resolve(r) for r in refs]

    def wait(self, refs: list, num_returns: int, timeout: float | None, fetch_local: bool) -> tuple:
        if num_returns > len(refs) and timeout is None:
            raise GetTimeoutError("wait() would block forever in local mode")
        return refs[:num_returns], refs[num_returns:]

    def when_ready(self, ref: Any, fut: Any) -> None:
        try:
            fut.set_result(self._resolve(ref))
        except BaseException as e:
            fut.set_exception(e)

    def cluster_info(self) -> dict:
        return {"node_id": self.node_id, "total": self.resources, "available": self.resources,
                "node_ip": "127.0.0.1", "pid": os.getpid()}

    def shutdown(self) -> None:
        self.values.clear()
