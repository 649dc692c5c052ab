"""``DeploymentHandle`` (call a deployment from Python) and ``DeploymentResponse`` (its result).

    handle.remote(*args)            → DeploymentResponse   (never blocks)
    handle.method.remote(*args)     → the same, calling ``method`` instead of ``__call__``
    response.result(timeout_s=...)  → the value (sync code)
    await response                  → the value (async code)
    other_handle.remote(response)   → ``response`` is resolved to its value before the call

A handle is a name (deployment, app, method): it pickles as such, so it can be passed to tasks,
actors and other deployments; each process routes its calls through its own ``Router``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from typing import Any, Generator

from swarm.exceptions import GetTimeoutError
from swarm.object_ref import ObjectRef
from swarm.serve._common import DEFAULT_APP_NAME, DeploymentID, RequestMetadata
from swarm.serve._router import ROUTER_LOOP, PendingRequest
from swarm.serve.exceptions import RequestCancelledError


def _request_id() -> str:
    return os.urandom(8).hex()


class DeploymentResponse:
    """The future result of one ``handle.remote(...)`` call."""

    __slots__ = ("_request",)

    def __init__(self, request: PendingRequest) -> None:
        self._request = request

    def result(self, *, timeout_s: float | None = None, _skip_asyncio_check: bool = False) -> Any:
        """Block until the request finishes; its value, or the error it raised in the replica.

        ``TimeoutError`` after ``timeout_s`` seconds (the request itself goes on)."""
        if not _skip_asyncio_check and _in_event_loop():
            raise RuntimeError("DeploymentResponse.result() blocks, so it may not be called from inside an "
                               "asyncio event loop: use `await response` instead")
        try:
            return self._request.future.result(timeout_s)
        except concurrent.futures.CancelledError:
            raise RequestCancelledError(f"request {self._request.meta.request_id} was cancelled") from None
        except concurrent.futures.TimeoutError:
            raise GetTimeoutError(f"request {self._request.meta.request_id} to method "
                                  f"{self._request.meta.method_name!r} did not finish within {timeout_s} s") \
                from None

    def __await__(self) -> Generator[Any, None, Any]:
        return asyncio.wrap_future(self._request.future).__await__()

    def cancel(self) -> None:
        """Cancel the request: a request still waiting for a replica is never sent."""
        self._request.future.cancel()

    def cancelled(self) -> bool:
        return self._request.future.cancelled()

    async def _to_object_ref(self) -> ObjectRef:
        return await asyncio.wrap_future(self._request.ref_future)

    def _to_object_ref_sync(self, timeout_s: float | None = None) -> ObjectRef:
        return self._request.ref_future.result(timeout_s)

    @property
    def request_id(self) -> str:
        return self._request.meta.request_id

    def __reduce__(self) -> Any:
        raise TypeError("A DeploymentResponse cannot be pickled: pass it directly as an argument of another "
                        "handle's .remote() call (it is resolved first), or pass its value")


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class DeploymentHandle:
    """Calls a deployment's replicas: ``handle.remote(...)``, ``handle.other_method.remote(...)``."""

    def __init__(self, deployment_name: str, app_name: str = DEFAULT_APP_NAME, *,
                 method_name: str = "__call__", stream: bool = False) -> None:
        if stream:
            raise NotImplementedError("streaming responses (handle.options(stream=True)) are not supported "
                                      "yet; return the whole value instead")
        self._deployment_id = DeploymentID(deployment_name, app_name)
        self._method_name = method_name

    @property
    def deployment_name(self) -> str:
        return self._deployment_id.name

    @property
    def app_name(self) -> str:
        return self._deployment_id.app_name

    @property
    def deployment_id(self) -> DeploymentID:
        return self._deployment_id

    def options(self, *, method_name: str | None = None, multiplexed_model_id: str | None = None,
                stream: bool | None = None, use_new_handle_api: bool | None = None,
                **_ignored: Any) -> DeploymentHandle:
        """A handle with some call options changed (``method_name``; ``stream`` is not supported)."""
        if multiplexed_model_id:
            raise NotImplementedError("model multiplexing is not supported yet")
        return DeploymentHandle(self.deployment_name, self.app_name,
                                method_name=method_name or self._method_name, stream=bool(stream))

    def __getattr__(self, name: str) -> DeploymentHandle:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.options(method_name=name)

    def remote(self, *args: Any, **kwargs: Any) -> DeploymentResponse:
        """Send a request to one replica (chosen by the router); returns at once."""
        req = PendingRequest(RequestMetadata(_request_id(), self._method_name), args, kwargs)
        ROUTER_LOOP.router(self._deployment_id).submit_threadsafe(req)
        return DeploymentResponse(req)

    def __reduce__(self) -> Any:
        return (_rebuild_handle, (self.deployment_name, self.app_name, self._method_name))

    def __repr__(self) -> str:
        return f"DeploymentHandle(deployment={self.deployment_name!r}, app={self.app_name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DeploymentHandle) and other._deployment_id == self._deployment_id and \
            other._method_name == self._method_name

    def __hash__(self) -> int:
        return hash((self._deployment_id, self._method_name))


def _rebuild_handle(deployment_name: str, app_name: str, method_name: str) -> DeploymentHandle:
    return DeploymentHandle(deployment_name, app_name, method_name=method_name)


# Ray's older names for the same classes.
RayServeHandle = DeploymentHandle
RayServeSyncHandle = DeploymentHandle
