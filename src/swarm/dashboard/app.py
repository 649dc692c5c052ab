"""The dashboard's web app: HTML pages, the JSON API behind them, /metrics, the login form.

    browser ── GET /, /actors, /tasks, ... ──▶ one static HTML shell per page (static/page.html)
            ── polls GET /api/... every ~1.5 s ──▶ handlers ── run_in_threadpool ──▶ ClusterData
            ── GET /metrics ──▶ prometheus_client registry (metrics_api.py)
    every request passes TokenAuth first (auth.py)

List endpoints page on the server: ``?offset=&limit=`` (limit at most ``MAX_LIMIT``), answering
``{"total", "offset", "limit", "rows"}``, so a page costs the same with ten thousand tasks in history
as with ten. Handlers never block the event loop: every read of the cluster runs in a thread.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
from typing import Any, AsyncIterator, Callable
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from swarm.dashboard import auth, metrics_api
from swarm.dashboard.data import ClusterData, timeline_chunks
from swarm.dashboard.history import ClusterHistory

log = logging.getLogger(__name__)

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
TIMELINE_DEFAULT_TASKS = 10_000   # the newest ones; ?limit= asks for more (memory grows with it)
TIMELINE_MAX_TASKS = 100_000
TIMELINE_FILE = "swarm-timeline.json"
# the pages of the dashboard: path -> (page id the JS renders, title)
PAGES = {"/": ("overview", "Overview"), "/actors": ("actors", "Actors"), "/tasks": ("tasks", "Tasks"),
         "/objects": ("objects", "Objects"), "/jobs": ("jobs", "Jobs"), "/logs": ("logs", "Logs")}
SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; "
                                                 b"frame-ancestors 'none'")]


class BadRequest(Exception):
    """A query parameter the endpoint cannot use; answered with 400 and the message."""


def json_response(payload: Any, status: int = 200, headers: dict | None = None) -> Response:
    # default=str: ids, paths and the like arrive as whatever the state API keeps; show them, never 500
    body = json.dumps(payload, default=str, separators=(",", ":"))
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"?{name}= must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise BadRequest(f"?{name}= must be between {lo} and {hi}, got {value}")
    return value


def page_params(request: Request) -> tuple[int, int]:
    return (_int_param(request, "offset", 0, 0, 10**9),
            _int_param(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT))


def paged(rows: list, offset: int, limit: int, total: int | None = None, **extra: Any) -> dict:
    return dict(total=len(rows) if total is None else total, offset=offset, limit=limit,
                rows=rows[offset:offset + limit] if total is None else rows, **extra)


class SecurityHeaders:
    """Adds the headers that keep the pages from being framed or sniffed into something else."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = dict(message, headers=list(message.get("headers") or []) + SECURITY_HEADERS)
            await send(message)
        await self.app(scope, receive, send_with_headers)


class DashboardEndpoints:
    """The handlers; each reads the cluster through ``ClusterData`` in a worker thread."""

    def __init__(self, data: ClusterData, history: ClusterHistory | None, registry: Any,
                 token_auth: Callable[[str], bool], jobs_mounted: bool) -> None:
        self.data = data
        self.history = history
        self.registry = registry
        self.check_token = token_auth
        self.jobs_mounted = jobs_mounted
        with open(os.path.join(STATIC_DIR, "page.html"), encoding="utf-8") as f:
            shell = f.read()
        self.pages = {path: shell.replace("{{page}}", page).replace("{{title}}", title).encode()
                      for path, (page, title) in PAGES.items()}
        with open(os.path.join(STATIC_DIR, "login.html"), encoding="utf-8") as f:
            self.login_page = f.read()

    # -- pages --------------------------------------------------------------------------------------
    async def page(self, request: Request) -> Response:
        return HTMLResponse(self.pages[request.url.path], headers={"cache-control": "no-store"})

    async def login_form(self, request: Request) -> Response:
        return HTMLResponse(self._login_html(request.query_params.get("next", "/"), ""))

    async def login_submit(self, request: Request) -> Response:
        body = (await request.body())[:64 * 1024]
        form = parse_qs(body.decode("utf-8", "replace"))
        token = (form.get("token") or [""])[0].strip()
        target = _safe_next((form.get("next") or ["/"])[0])
        if not self.check_token(token):
            return HTMLResponse(self._login_html(target, "That is not this cluster's token."),
                                status_code=401)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(auth.COOKIE_NAME, auth.session_value(token), httponly=True, samesite="strict",
                            path="/")
        return response

    def _login_html(self, target: str, error: str) -> str:
        import html
        return (self.login_page.replace("{{next}}", html.escape(_safe_next(target), quote=True))
                .replace("{{error}}", html.escape(error)))

    # -- cluster ------------------------------------------------------------------------------------
    async def overview(self, request: Request) -> Response:
        def compute() -> dict:
            from swarm.dashboard.history import summarize_nodes
            nodes = self.data.nodes()
            actors: dict[str, int] = {}
            for a in self.data.actors():
                actors[a.get("state") or "?"] = actors.get(a.get("state") or "?", 0) + 1
            info = self.data.cluster_info()
            return {"now": summarize_nodes(nodes), "actors_by_state": actors,
                    "tasks_by_state": self.data.task_counts(),
                    "nodes": {"alive": sum(1 for n in nodes if n["state"] == "ALIVE"),
                              "dead": sum(1 for n in nodes if n["state"] != "ALIVE")},
                    "pending_demand": info.get("demand") or [], "logs_available": self.data.logs_available(),
                    "jobs_available": self.jobs_mounted}
        return json_response(await run_in_threadpool(compute))

    async def history_samples(self, request: Request) -> Response:
        since = request.query_params.get("since")
        try:
            since_t = float(since) if since else None
        except ValueError:
            raise BadRequest(f"?since= must be a UNIX time in seconds, got {since!r}") from None
        rows = self.history.samples(since_t) if self.history is not None else []
        return json_response({"interval_s": self.history.interval_s if self.history else None, "rows": rows})

    async def nodes(self, request: Request) -> Response:
        offset, limit = page_params(request)
        rows = await run_in_threadpool(self.data.nodes)
        return json_response(paged(rows, offset, limit))

    # -- actors -------------------------------------------------------------------------------------
    async def actors(self, request: Request) -> Response:
        offset, limit = page_params(request)
        wanted = request.query_params.get("state") or None
        rows = await run_in_threadpool(self.data.actors)
        if wanted:
            rows = [a for a in rows if a.get("state") == wanted.upper()]
        # the living first: that is what someone looking at actors is after
        rows = sorted(rows, key=lambda a: a.get("state") == "DEAD")
        return json_response(paged(rows, offset, limit))

    async def actor(self, request: Request) -> Response:
        actor_id = request.path_params["actor_id"]
        rows = await run_in_threadpool(self.data.actors)
        for a in rows:
            if a.get("actor_id") == actor_id:
                return json_response(a)
        return json_response({"error": f"no actor with id {actor_id}"}, 404)

    # -- tasks --------------------------------------------------------------------------------------
    async def tasks(self, request: Request) -> Response:
        offset, limit = page_params(request)
        wanted = (request.query_params.get("state") or "").upper() or None
        name = request.query_params.get("name") or None
        rows, total = await run_in_threadpool(self.data.tasks, offset, limit, wanted, name)
        return json_response(paged(rows, offset, limit, total=total))

    async def task_summary(self, request: Request) -> Response:
        summary = await run_in_threadpool(self.data.task_summary)
        rows = [{"name": name, "counts": counts, "total": sum(counts.values())}
                for name, counts in sorted(summary.items(), key=lambda kv: -sum(kv[1].values()))]
        return json_response({"rows": rows, "by_state": await run_in_threadpool(self.data.task_counts)})

    async def task(self, request: Request) -> Response:
        task_id = request.path_params["task_id"]
        row = await run_in_threadpool(self.data.task, task_id)
        if row is None:
            return json_response({"error": f"no task with id {task_id} (the cluster forgets the oldest "
                                           f"finished tasks past SWARM_TASK_EVENTS_MAX)"}, 404)
        return json_response(row)

    async def timeline(self, request: Request) -> Response:
        limit = _int_param(request, "limit", TIMELINE_DEFAULT_TASKS, 1, TIMELINE_MAX_TASKS)
        rows = await run_in_threadpool(self.data.timeline_rows, limit)
        return StreamingResponse(iterate_in_threadpool(timeline_chunks(rows)), media_type="application/json",
                                 headers={"content-disposition": f'attachment; filename="{TIMELINE_FILE}"'})

    # -- objects ------------------------------------------------------------------------------------
    async def objects(self, request: Request) -> Response:
        offset, limit = page_params(request)
        rows = await run_in_threadpool(self.data.objects)
        rows = sorted(rows, key=lambda o: -(o.get("size") or 0))
        return json_response(paged(rows, offset, limit,
                                   total_bytes=sum(o.get("size") or 0 for o in rows)))

    # -- logs ---------------------------------------------------------------------------------------
    async def logs(self, request: Request) -> Response:
        if not self.data.logs_available():
            return json_response({"available": False, "rows": [],
                                  "message": "per-worker logs need swarm.util.state.list_logs, which this "
                                             "swarm version does not have"})
        node_id = request.query_params.get("node_id") or None
        listing = await run_in_threadpool(self.data.list_logs, node_id)
        return json_response({"available": True, "rows": _log_rows(listing)})

    async def log_file(self, request: Request) -> Response:
        if not self.data.logs_available():
            return json_response({"error": "per-worker logs are not available in this swarm version"}, 404)
        filename = request.query_params.get("filename")
        if not filename:
            raise BadRequest("?filename= is required (one of the names /api/logs lists)")
        lines = _int_param(request, "lines", 500, 1, 10_000)
        kwargs = {"node_id": request.query_params.get("node_id") or None, "filename": filename, "tail": lines}

        def read() -> str:
            out = self.data.get_log(**kwargs)
            if isinstance(out, (bytes, str)):
                text = out.decode("utf-8", "replace") if isinstance(out, bytes) else out
            else:
                text = "".join(line if line.endswith("\n") else line + "\n" for line in out)
            return "\n".join(text.splitlines()[-lines:])
        try:
            text = await run_in_threadpool(read)
        except (FileNotFoundError, ValueError, KeyError) as e:
            return json_response({"error": f"cannot read log {filename!r}: {e}"}, 404)
        return json_response({"filename": filename, "text": text})

    # -- jobs (when the jobs API is not installed) --------------------------------------------------
    async def no_jobs(self, request: Request) -> Response:
        return json_response({"available": False, "rows": [],
                              "message": "the jobs API is not part of this swarm version"})

    # -- metrics ------------------------------------------------------------------------------------
    async def metrics(self, request: Request) -> Response:
        body = await run_in_threadpool(metrics_api.render, self.registry)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def healthz(self, request: Request) -> Response:
        return json_response({"ok": True})


def _safe_next(target: str) -> str:
    """Only paths on this site: a login link must not redirect somewhere else afterwards."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _log_rows(listing: Any) -> list[dict]:
    """Whatever shape list_logs returns ({category: [file, ...]} as Ray's, or rows) as rows."""
    if isinstance(listing, dict):   # {node id: [file name, ...]}
        return [{"node_id": node, "filename": f} for node, files in listing.items() for f in files]
    rows = []
    for item in listing or []:
        rows.append(item if isinstance(item, dict) else {"filename": str(item)})
    return rows


def _bad_request(request: Request, exc: Exception) -> Response:
    return json_response({"error": str(exc)}, 400)


def create_app(*, data: ClusterData, history: ClusterHistory | None = None, token: str | None = None,
               open_reads: bool = True, registry: Any = None, mount_jobs: bool = True) -> Starlette:
    """The dashboard as an ASGI app. ``open_reads``: GET requests need no token (loopback only)."""
    jobs: Any = None
    if mount_jobs:
        try:
            from swarm.dashboard import jobs_api as jobs  # type: ignore[no-redef]
        except ImportError as e:
            log.info("the jobs API is not available: %s", e)
            jobs = None
    guard = auth.TokenAuth(None, token=token, open_reads=open_reads)
    endpoints = DashboardEndpoints(data, history, registry or metrics_api.make_registry(data),
                                   guard.check_token, jobs is not None)
    routes: list[BaseRoute] = [Route(path, endpoints.page) for path in PAGES]
    routes += [
        Route("/login", endpoints.login_form, methods=["GET"]),
        Route("/login", endpoints.login_submit, methods=["POST"]),
        Route("/metrics", endpoints.metrics),
        Route("/api/healthz", endpoints.healthz),
        Route("/api/overview", endpoints.overview),
        Route("/api/history", endpoints.history_samples),
        Route("/api/nodes", endpoints.nodes),
        Route("/api/actors", endpoints.actors),
        Route("/api/actors/{actor_id}", endpoints.actor),
        Route("/api/tasks", endpoints.tasks),
        Route("/api/tasks/summary", endpoints.task_summary),
        Route("/api/tasks/{task_id}", endpoints.task),
        Route("/api/timeline", endpoints.timeline),
        Route("/api/objects", endpoints.objects),
        Route("/api/logs", endpoints.logs),
        Route("/api/logs/file", endpoints.log_file),
    ]
    if jobs is not None:
        routes += list(jobs.routes())
    else:
        routes.append(Route("/api/jobs", endpoints.no_jobs))
    routes.append(Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if jobs is not None:
            try:
                done = await run_in_threadpool(jobs.shutdown)
                if inspect.isawaitable(done):
                    await done
            except Exception as e:
                log.warning("stopping the jobs API failed: %r", e)

    app = Starlette(routes=routes, lifespan=lifespan,
                    middleware=[Middleware(SecurityHeaders),
                                Middleware(auth.TokenAuth, token=token, open_reads=open_reads)],
                    exception_handlers={BadRequest: _bad_request})
    return app
