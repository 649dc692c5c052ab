"""``get_runtime_context()``: where the calling code runs (job, node, worker, task, actor)."""

from __future__ import annotations

from typing import Any


class RuntimeContext:
    def __init__(self, worker: Any) -> None:
        self._worker = worker

    def get_job_id(self) -> str:
        return self._worker.job_id

    def get_node_id(self) -> str:
        return self._worker.node_id

    def get_worker_id(self) -> str:
        return self._worker.worker_id.hex()

    def get_task_id(self) -> str | None:
        tid = self._worker.current_task_id
        return tid.hex() if tid else None

    def get_actor_id(self) -> str | None:
        aid = getattr(self._worker, "current_actor_id", None)
        return aid.hex() if aid else None

    @property
    def job_id(self) -> str:
        return self.get_job_id()

    @property
    def node_id(self) -> str:
        return self.get_node_id()

    @property
    def task_id(self) -> str | None:
        return self.get_task_id()

    @property
    def worker_id(self) -> str:
        return self.get_worker_id()

    @property
    def actor_id(self) -> str | None:
        return self.get_actor_id()

    @property
    def namespace(self) -> str:
        return getattr(self._worker, "namespace", "default")

    def get(self) -> dict:
        return {"job_id": self.get_job_id(), "node_id": self.get_node_id(),
                "worker_id": self.get_worker_id(), "task_id": self.get_task_id()}
