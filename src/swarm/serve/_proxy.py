"""The HTTP proxy: uvicorn in an async actor, forwarding each request to a replica of its app.

    client ──HTTP──▶ uvicorn (on the proxy actor's event loop, socket bound by ``ready``)
                       │ ProxyApp: longest route_prefix match → app's ingress deployment
                       │ whole body read; scope made picklable (root_path = route_prefix)
                       ▼
                     Router (same event loop: no thread hop) ──▶ replica.handle_http(...)
                       ▼
                     status, headers, body ──▶ client
                     replica died → 503; the user's code raised → 500; no replica can take it
                     (deleted, failed, queue full) → 503; over request_timeout_s → 408

Why an actor and not a thread of the driver: the proxy then lives as long as Serve (not as the driver
script), the controller can health-check it and start a new one if it dies, and its event loop is
shared by nobody else. ``GET /-/healthz`` and ``GET /-/routes`` answer from the proxy itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import socket
from typing import Any

import swarm
from swarm.exceptions import ActorDiedError, ActorUnavailableError, TaskError
from swarm.serve import context
from swarm.serve._asgi import portable_scope, read_body
from swarm.serve._common import RequestMetadata, Route
from swarm.serve._router import ROUTER_LOOP, PendingRequest
from swarm.serve._worker_logging import repair_worker_logging
from swarm.serve.config import HTTPOptions
from swarm.serve.exceptions import BackPressureError, DeploymentUnavailableError

log = logging.getLogger(__name__)


class ProxyApp:
    """The ASGI app uvicorn serves."""

    def __init__(self, http: HTTPOptions) -> None:
        self.http = http
        self.routes: list[Route] = []   # longest prefix first

    def set_routes(self, routes: list[Route]) -> None:
        self.routes = sorted(routes, key=lambda r: len(r.route_prefix), reverse=True)

    def match(self, path: str) -> Route | None:
        for r in self.routes:
            p = r.route_prefix
            if p == "/" or path == p or path.startswith(p + "/"):
                return r
        return None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1003})
            return
        path = scope["path"]
        if path == "/-/healthz":
            return await _send(send, 200, b"success")
        if path == "/-/routes":
            table = {r.route_prefix: r.app_name for r in self.routes}
            return await _send(send, 200, json.dumps(table).encode(), b"application/json")
        route = self.match(path)
        if route is None:
            known = ", ".join(r.route_prefix for r in self.routes) or "none"
            return await _send(send, 404, f"Path '{path}' not found: no application serves it (route "
                                          f"prefixes: {known}). See serve.status().".encode())
        try:
            body = await read_body(receive)
        except ConnectionError:
            return
        request_id = os.urandom(8).hex()
        root = self.http.root_path + (route.route_prefix if route.route_prefix != "/" else "")
        req = PendingRequest(RequestMetadata(request_id, "__call__", route.route_prefix, True),
                             (portable_scope(scope, root), body), {}, kind="http")
        ROUTER_LOOP.router(route.ingress).submit_threadsafe(req)
        rid_header = (b"x-request-id", request_id.encode())
        try:
            result = await asyncio.wait_for(asyncio.wrap_future(req.future), self.http.request_timeout_s)
        except asyncio.TimeoutError:
            req.future.cancel()
            message = f"Request {request_id} timed out after {self.http.request_timeout_s} s " \
                      f"(http_options request_timeout_s)"
            return await _send(send, 408, message.encode(), extra=[rid_header])
        except BaseException as e:
            if isinstance(e, asyncio.CancelledError):
                raise
            status, message = _error_response(e, route)
            return await _send(send, status, message.encode(), extra=[rid_header])
        headers = list(result.headers)
        if not any(k.lower() == b"x-request-id" for k, _ in headers):
            headers.append(rid_header)
        await send({"type": "http.response.start", "status": result.status, "headers": headers})
        await send({"type": "http.response.body", "body": result.body})


def _error_response(err: BaseException, route: Route) -> tuple[int, str]:
    where = f"deployment {route.ingress.name!r} of application {route.app_name!r}"
    if isinstance(err, (ActorDiedError, ActorUnavailableError)):
        return 503, f"Service unavailable: {err}"
    if isinstance(err, (BackPressureError, DeploymentUnavailableError)):
        return 503, f"Service unavailable: {err}"
    if isinstance(err, TaskError):
        return 500, f"Internal server error: the {where} raised while handling the request:\n{err}"
    return 500, f"Internal server error in the Serve proxy while calling the {where}: {err!r}"


async def _send(send: Any, status: int, body: bytes, content_type: bytes = b"text/plain; charset=utf-8",
                extra: list | None = None) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ProxyActor:
    def __init__(self, http: HTTPOptions, controller: Any) -> None:
        self._http = http
        self._controller = controller
        self._app = ProxyApp(http)
        self._server: Any = None
        self._serve_task: asyncio.Task | None = None
        self._routes_task: asyncio.Task | None = None
        context.set_controller(controller)
        repair_worker_logging()

    async def ready(self) -> str:
        """Bind the socket and start uvicorn; returns ``http://host:port``. Raises if the port is taken."""
        import uvicorn

        ROUTER_LOOP.adopt_running_loop()
        host, port = self._http.host, self._http.port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on such sockets; without it each response
        # (headers, then body) waits ~40 ms for the client's delayed ACK
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as e:
            sock.close()
            raise RuntimeError(f"Serve's HTTP proxy cannot listen on {host}:{port}: {e.strerror or e}. Pick "
                               f"another port: serve.start(http_options={{'port': ...}})") from None
        sock.listen(2048)
        sock.setblocking(False)
        port = sock.getsockname()[1]
        # log_config=None: uvicorn's default calls logging.config.dictConfig (see _worker_logging.py)
        config = uvicorn.Config(self._app, interface="asgi3", lifespan="off", log_level="warning",
                                log_config=None, access_log=False,
                                timeout_keep_alive=int(self._http.keep_alive_timeout_s))
        self._server = _embedded_server_class()(config)
        loop = asyncio.get_running_loop()
        self._serve_task = loop.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._serve_task.done():
                raise RuntimeError(f"Serve's HTTP proxy failed to start on {host}:{port}: "
                                   f"{self._serve_task.exception()!r}")
            await asyncio.sleep(0.01)
        self._routes_task = loop.create_task(self._poll_routes())
        return f"http://{host}:{port}"

    async def _poll_routes(self) -> None:
        version = -1
        while True:
            try:
                version, routes = await self._controller.listen_for_change.remote(("routes",), version)
            except ActorDiedError:
                self._app.set_routes([])
                return
            except Exception as e:
                log.warning("the proxy failed to poll routes (%r); retrying", e)
                await asyncio.sleep(1.0)
                continue
            self._app.set_routes(routes or [])

    async def check_health(self) -> None:
        if self._serve_task is None or self._serve_task.done():
            raise RuntimeError("the proxy's HTTP server is not running")

    async def shutdown(self) -> None:
        if self._routes_task is not None:
            self._routes_task.cancel()
        if self._server is not None:
            self._server.should_exit = True
        if self._serve_task is not None:
            try:
                await asyncio.wait_for(self._serve_task, 5.0)
            except Exception:
                pass
        ROUTER_LOOP.stop()


@functools.lru_cache(maxsize=None)
def _embedded_server_class() -> type:
    import uvicorn  # imported here: only the proxy's process needs it

    class EmbeddedServer(uvicorn.Server):
        """uvicorn inside an actor: the actor's process owns the signals, not the server."""

        @contextlib.contextmanager
        def capture_signals(self) -> Any:
            yield

        def install_signal_handlers(self) -> None:  # uvicorn before 0.29
            pass
    return EmbeddedServer


ServeProxy = swarm.remote(ProxyActor)
