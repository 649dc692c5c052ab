"""HTTP between the proxy and a replica: an ASGI request becomes plain data and back.

    proxy:   scope + whole body ──(pickled)──▶ replica
    replica: Starlette Request(scope, body) ──▶ user's __call__ ──▶ value or Response
             or the user's ASGI app (``@serve.ingress``) run on the scope
             ──▶ HTTPResult(status, headers, body) ──(pickled)──▶ proxy ──▶ client

Bodies are read whole and responses are collected whole (no streaming yet).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from typing import Any, NamedTuple

log = logging.getLogger(__name__)

_PORTABLE_KEYS = ("type", "asgi", "http_version", "server", "client", "scheme", "method", "root_path", "path",
                  "raw_path", "query_string", "headers")


class HTTPResult(NamedTuple):
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


def portable_scope(scope: dict, root_path: str) -> dict:
    """The picklable part of an ASGI HTTP scope, mounted at ``root_path``."""
    out = {k: scope[k] for k in _PORTABLE_KEYS if k in scope}
    out["headers"] = [(bytes(k), bytes(v)) for k, v in scope.get("headers", ())]
    out["root_path"] = root_path
    if out.get("server") is not None:
        out["server"] = tuple(out["server"])
    if out.get("client") is not None:
        out["client"] = tuple(out["client"])
    return out


async def read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("the client disconnected before sending the whole request body")
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def run_asgi(app: Any, scope: dict, body: bytes) -> HTTPResult:
    """Run an ASGI app (or a Starlette ``Response``) on one request; collect its whole response."""
    done = asyncio.Event()
    body_sent = False
    status = 500
    headers: list[tuple[bytes, bytes]] = []
    chunks: list[bytes] = []

    async def receive() -> dict:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()  # what a server says once the response is out: the client is gone
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status = message["status"]
            headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", ())]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                done.set()

    try:
        await app(dict(scope), receive, send)
    finally:
        done.set()
    return HTTPResult(status, headers, b"".join(chunks))


def make_request(scope: dict, body: bytes) -> Any:
    """A Starlette ``Request`` for the user's ``__call__`` (its body is already here)."""
    from starlette.requests import Request

    sent = False

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # never: the body was whole
        return {"type": "http.disconnect"}
    return Request(dict(scope), receive)


async def to_http_result(value: Any, scope: dict) -> HTTPResult:
    """What a ``__call__`` returned, as an HTTP response (Ray Serve's rules)."""
    from starlette.responses import Response
    if isinstance(value, Response):
        return await run_asgi(value, scope, b"")
    if value is None:
        return _plain(b"text/plain; charset=utf-8", b"")
    if isinstance(value, bytes):
        return _plain(b"text/plain", value)
    if isinstance(value, str):
        return _plain(b"text/plain; charset=utf-8", value.encode())
    try:
        body = json.dumps(_jsonable(value)).encode()
    except (TypeError, ValueError) as e:
        raise TypeError(f"the deployment returned a {type(value).__name__}, which cannot be sent as an HTTP "
                        f"response ({e}): return str, bytes, a JSON-serializable value or a Starlette "
                        f"Response") from None
    return _plain(b"application/json", body)


def _plain(content_type: bytes, body: bytes) -> HTTPResult:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    return HTTPResult(200, headers, body)


def _jsonable(value: Any) -> Any:
    try:
        from fastapi.encoders import jsonable_encoder
    except ImportError:
        return value
    return jsonable_encoder(value)


def bind_class_routes(app: Any, cls: type, instance: Any) -> None:
    """Turn FastAPI routes declared on methods of ``cls`` into routes bound to ``instance``.

    ``@app.get("/")`` on ``def root(self)`` registers an endpoint whose first parameter is ``self``;
    here ``self`` becomes a dependency that yields the replica's instance (as in Ray Serve)."""
    try:
        from fastapi import Depends
        from fastapi.routing import APIRoute
    except ImportError:
        return
    methods = {id(v) for k in cls.__mro__ for v in vars(k).values() if inspect.isfunction(v)}
    init_params = [p for p in inspect.signature(APIRoute.__init__).parameters if p != "self"]
    router = getattr(app, "router", None)
    if router is None:
        return
    changed = False
    for i, route in enumerate(list(router.routes)):
        if not isinstance(route, APIRoute) or id(route.endpoint) not in methods:
            continue
        fn = route.endpoint
        params = list(inspect.signature(fn).parameters.values())
        if not params:
            continue
        # self: a dependency yielding the instance; the rest keyword-only (they follow a default)
        this = params[0].replace(default=Depends(lambda: instance),
                                 kind=inspect.Parameter.POSITIONAL_OR_KEYWORD)
        rest = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params[1:]]
        fn.__signature__ = inspect.signature(fn).replace(parameters=[this, *rest])  # type: ignore[attr-defined]
        kwargs = {p: getattr(route, p) for p in init_params if hasattr(route, p)}
        kwargs["endpoint"] = fn
        router.routes[i] = APIRoute(**kwargs)
        changed = True
    if changed and hasattr(router, "_mark_routes_changed"):
        router._mark_routes_changed()


class Lifespan:
    """Runs an ASGI app's lifespan protocol: startup when the replica starts, shutdown when it stops."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.state: dict = {}
        self._inbox: asyncio.Queue = asyncio.Queue()
        self._outbox: asyncio.Queue = asyncio.Queue()
        self._task: asyncio.Task | None = None

    async def startup(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.state}
        self._task = asyncio.get_running_loop().create_task(
            self.app(scope, self._inbox.get, self._outbox.put))
        await self._inbox.put({"type": "lifespan.startup"})
        message = await self._next_message()
        if message is None:  # the app does not speak lifespan: fine
            return
        if message["type"] == "lifespan.startup.failed":
            raise RuntimeError(f"the ASGI app's startup failed: {message.get('message', '')}")

    async def _next_message(self) -> dict | None:
        assert self._task is not None
        get = asyncio.ensure_future(self._outbox.get())
        await asyncio.wait({get, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if get.done():
            return get.result()
        get.cancel()
        if self._task.exception() is not None:
            log.debug("ASGI app has no lifespan support: %r", self._task.exception())
        return None

    async def shutdown(self) -> None:
        if self._task is None or self._task.done():
            return
        await self._inbox.put({"type": "lifespan.shutdown"})
        try:
            await asyncio.wait_for(self._next_message(), 10.0)
        except asyncio.TimeoutError:
            self._task.cancel()
