"""The replica: an async actor holding one instance of a deployment's class (or its function).

    router ──handle_request(meta, *args)──▶ ┐                      ┌─ async def: on the actor's loop
    proxy  ──handle_http(meta, scope, body)─▶ ├─ semaphore of max_ ─┤
                                             ┘  ongoing_requests    └─ def: on a thread pool of the
    controller ──initialize / get_metrics / check_health /              same size (so blocking code does
                 reconfigure / prepare_for_shutdown                      not stall the loop or other calls)

The user's constructor runs in ``initialize`` on the actor's event loop (so it may create asyncio
objects), not in the actor's ``__init__``, which swarm runs before that loop exists.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
import logging
import os
from typing import Any

import cloudpickle

import swarm
from swarm.serve import context
from swarm.serve._asgi import HTTPResult, Lifespan, bind_class_routes, make_request, run_asgi, to_http_result
from swarm.serve._common import ReplicaID, RequestMetadata
from swarm.serve._worker_logging import repair_worker_logging
from swarm.serve.config import DeploymentConfig

log = logging.getLogger(__name__)


class ReplicaActor:
    def __init__(self, replica_id: ReplicaID, serialized_def: bytes, serialized_init: bytes,
                 config: DeploymentConfig, is_function: bool, controller: Any) -> None:
        self._replica_id = replica_id
        self._serialized_def = serialized_def
        self._serialized_init = serialized_init
        self._config = config
        self._is_function = is_function
        self._ongoing = 0
        self._callable: Any = None
        self._asgi_app: Any = None
        self._lifespan: Lifespan | None = None
        self._sem: asyncio.Semaphore | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        context.set_controller(controller)
        repair_worker_logging()

    # -- lifecycle (called by the controller) -------------------------------------------------------
    async def initialize(self) -> int:
        """Construct the user's object; returns this process's pid. Raises what the constructor raised."""
        self._loop = asyncio.get_running_loop()
        self._sem = asyncio.Semaphore(self._config.max_ongoing_requests)
        self._pool = concurrent.futures.ThreadPoolExecutor(self._config.max_ongoing_requests,
                                                           thread_name_prefix="serve-replica")
        target = cloudpickle.loads(self._serialized_def)
        args, kwargs = cloudpickle.loads(self._serialized_init)
        ctx = context.ReplicaContext(self._replica_id, None)
        context.set_replica_context(ctx)
        if self._is_function:
            self._callable = target
        else:
            self._callable = target(*args, **kwargs)
            app = getattr(target, "__serve_asgi_app__", None)
            if app is not None:
                bind_class_routes(app, target, self._callable)
                self._asgi_app = app
                self._lifespan = Lifespan(app)
                await self._lifespan.startup()
        ctx.servable_object = self._callable
        if self._config.user_config is not None:
            await self._user_reconfigure(self._config.user_config)
        return os.getpid()

    async def reconfigure(self, config: DeploymentConfig) -> None:
        old, self._config = self._config, config
        if config.max_ongoing_requests != old.max_ongoing_requests:
            self._sem = asyncio.Semaphore(config.max_ongoing_requests)  # waiting calls keep the old one
        if config.user_config != old.user_config and config.user_config is not None:
            await self._user_reconfigure(config.user_config)

    async def _user_reconfigure(self, user_config: Any) -> None:
        fn = getattr(self._callable, "reconfigure", None)
        if fn is None:
            raise TypeError(f"deployment {self._replica_id.deployment_id.name!r} has a user_config but its "
                            f"class has no reconfigure(self, config) method to receive it")
        await self._call(fn, (user_config,), {})

    async def get_metrics(self) -> int:
        """Requests in this replica now (running or waiting for a slot): the autoscaling input."""
        return self._ongoing

    async def check_health(self) -> None:
        fn = getattr(self._callable, "check_health", None) if not self._is_function else None
        if fn is not None:
            await self._call(fn, (), {})

    async def prepare_for_shutdown(self) -> None:
        """Let requests already here finish (up to graceful_shutdown_timeout_s), then clean up."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._config.graceful_shutdown_timeout_s
        await asyncio.sleep(min(0.2, self._config.graceful_shutdown_wait_loop_s))  # let routers catch up
        while self._ongoing and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if self._lifespan is not None:
            await self._lifespan.shutdown()
        destructor = getattr(self._callable, "__del__", None) if not self._is_function else None
        if destructor is not None:
            try:
                await self._call(destructor, (), {})
            except Exception:
                log.exception("the __del__ of a replica of %s raised", self._replica_id.deployment_id)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    # -- requests ---------------------------------------------------------------------------------
    async def handle_request(self, meta: RequestMetadata, /, *args: Any, **kwargs: Any) -> Any:
        self._ongoing += 1
        try:
            assert self._sem is not None
            async with self._sem:
                result = await self._call(self._method(meta.method_name), args, kwargs)
                return await _resolve_response(result)
        finally:
            self._ongoing -= 1

    async def handle_http(self, meta: RequestMetadata, scope: dict, body: bytes) -> HTTPResult:
        self._ongoing += 1
        try:
            assert self._sem is not None
            async with self._sem:
                if self._asgi_app is not None:
                    if self._lifespan is not None and self._lifespan.state:
                        scope = {**scope, "state": dict(self._lifespan.state)}
                    return await run_asgi(self._asgi_app, scope, body)
                result = await self._call(self._method("__call__"), (make_request(scope, body),), {})
                return await to_http_result(await _resolve_response(result), scope)
        finally:
            self._ongoing -= 1

    def _method(self, name: str) -> Any:
        if self._is_function:
            if name != "__call__":
                raise AttributeError(f"deployment {self._replica_id.deployment_id.name!r} is a function: it "
                                     f"has no method {name!r} (call the handle itself)")
            return self._callable
        fn = getattr(self._callable, name, None)
        if fn is None or not callable(fn):
            what = "an HTTP request: define __call__(self, request)" if name == "__call__" \
                else "this call: check the method name"
            raise AttributeError(f"deployment {self._replica_id.deployment_id.name!r} has no method "
                                 f"{name!r} to take {what}")
        return fn

    async def _call(self, fn: Any, args: tuple, kwargs: dict) -> Any:
        if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__):
            return await fn(*args, **kwargs)
        assert self._loop is not None
        # the thread sees this task's context (so contextvars set by the caller stay visible)
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        result = await self._loop.run_in_executor(self._pool, call)
        if inspect.isawaitable(result):
            result = await result
        return result


async def _resolve_response(result: Any) -> Any:
    from swarm.serve.handle import DeploymentResponse
    if isinstance(result, DeploymentResponse):
        return await result
    return result


ServeReplica = swarm.remote(ReplicaActor)
