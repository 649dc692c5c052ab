"""Per-process Serve state: the controller's handle, and inside a replica, ``ReplicaContext``.

The driver sets the controller handle in ``serve.start``; the proxy and replicas get it in their
constructors; any other process looks the named controller actor up once.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import swarm
from swarm.serve._common import CONTROLLER_NAME, SERVE_NAMESPACE, ReplicaID
from swarm.serve.exceptions import RayServeException


@dataclasses.dataclass
class ReplicaContext:
    """Where the calling code runs, inside a replica (``serve.get_replica_context()``)."""

    replica_id: ReplicaID
    servable_object: Any

    @property
    def app_name(self) -> str:
        return self.replica_id.deployment_id.app_name

    @property
    def deployment(self) -> str:
        return self.replica_id.deployment_id.name

    @property
    def replica_tag(self) -> str:
        return self.replica_id.unique_id


_lock = threading.Lock()
_controller: Any = None
_controller_session: str | None = None
_replica_context: ReplicaContext | None = None


def session_id() -> str | None:
    """Which swarm session this process is in: a driver may ``swarm.shutdown()`` and ``init()`` again,
    and nothing of Serve's from the old session (handles, routers) may be used in the new one."""
    if not swarm.is_initialized():
        return None
    return swarm.get_runtime_context().get_worker_id()


def set_controller(handle: Any) -> None:
    global _controller, _controller_session
    with _lock:
        _controller = handle
        _controller_session = session_id() if handle is not None else None


def get_controller(required: bool = True) -> Any:
    """The controller's actor handle; ``RayServeException`` when Serve is not running."""
    global _controller
    with _lock:
        if _controller is not None and _controller_session == session_id():
            return _controller
        _controller = None
    if not swarm.is_initialized():
        if not required:
            return None
        raise RayServeException("Serve is not running: swarm is not initialized. Call serve.start() or "
                                "serve.run(app) first")
    try:
        handle = swarm.get_actor(CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
    except ValueError:
        if not required:
            return None
        raise RayServeException("Serve is not running on this cluster: call serve.start() or "
                                "serve.run(app) first") from None
    set_controller(handle)
    return handle


def clear_controller() -> None:
    set_controller(None)


def set_replica_context(ctx: ReplicaContext | None) -> None:
    global _replica_context
    _replica_context = ctx


def get_replica_context() -> ReplicaContext:
    """The ``ReplicaContext`` of the replica running this code; ``RayServeException`` elsewhere."""
    if _replica_context is None:
        raise RayServeException("serve.get_replica_context() may only be called inside a replica of a "
                                "deployment (in its constructor or methods)")
    return _replica_context


def current_app_name() -> str | None:
    return _replica_context.app_name if _replica_context is not None else None
