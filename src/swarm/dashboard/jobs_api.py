"""The job REST API the dashboard mounts (the same paths as Ray's job server):

    POST   /api/jobs/                      {"entrypoint", "submission_id"?, "runtime_env"?, "metadata"?, ...}
                                           -> {"submission_id", "job_id"}
    GET    /api/jobs/                      -> [job info, ...]
    GET    /api/jobs/{id}                  -> job info (404: unknown id)
    POST   /api/jobs/{id}/stop             -> {"stopped": bool}
    DELETE /api/jobs/{id}                  -> {"deleted": bool} (409 while it runs)
    GET    /api/jobs/{id}/logs             -> {"logs": text}
    GET    /api/jobs/{id}/logs/tail        -> the log as a chunked text stream, until the job ends
    PUT    /api/jobs/packages/{name}       body: a runtime_env package (pkg_<sha>.zip)
    GET    /api/jobs/packages/{name}       200 if the cluster has it, else 404

Errors answer ``{"error": message}`` with 400 (bad request), 404, 409 or 413. The dashboard's middleware
checks the cluster token on every request that changes something. One ``JobManager`` per process,
made on first use from the cluster this dashboard is attached to; ``shutdown()`` stops its jobs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from typing import Any, AsyncIterator

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from swarm._config import CONFIG
from swarm.dashboard.jobs import ClusterKV, JobConflictError, JobManager, JobNotFoundError

log = logging.getLogger(__name__)
_TAIL_POLL_S = 0.2
_manager: JobManager | None = None
_manager_lock = threading.Lock()
_closed = threading.Event()


def _json(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload, default=str), status_code=status, media_type="application/json")


def manager() -> JobManager:
    """This process's JobManager, made on first use from the attached cluster."""
    global _manager
    with _manager_lock:
        if _manager is None:
            if _closed.is_set():
                raise RuntimeError("the jobs API is shut down")
            from swarm import api
            w = api._require_worker()
            info = w.node_info
            tcp = info.get("tcp_address")
            address = tcp[len("tcp:"):] if tcp else info["unix_address"]
            token = w.token.decode() if isinstance(w.token, bytes) else str(w.token)
            _manager = JobManager(ClusterKV(), session_dir=info["session_dir"], node_id=info.get("node_id"),
                                  driver_env={"SWARM_ADDRESS": address, "SWARM_TOKEN": token})
        return _manager


def _error(e: BaseException) -> Response:
    if isinstance(e, JobNotFoundError):
        return _json({"error": str(e)}, 404)
    if isinstance(e, JobConflictError):
        return _json({"error": str(e)}, 409)
    if isinstance(e, (ValueError, TypeError)):
        return _json({"error": str(e)}, 400)
    return _json({"error": f"{type(e).__name__}: {e}"}, 500)


async def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a (blocking) manager call off the event loop."""
    return await run_in_threadpool(lambda: fn(manager(), *args, **kwargs))


async def submit(request: Request) -> Response:
    try:
        body = await request.json()
    except ValueError:
        return _json({"error": "the body must be JSON: {\"entrypoint\": \"python main.py\", ...}"}, 400)
    if not isinstance(body, dict) or "entrypoint" not in body:
        return _json({"error": "the body must be a JSON object with an \"entrypoint\""}, 400)
    allowed = {"entrypoint", "submission_id", "job_id", "runtime_env", "metadata", "entrypoint_num_cpus",
               "entrypoint_num_gpus", "entrypoint_resources", "entrypoint_memory"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        return _json({"error": f"unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(allowed))}"},
                     400)
    sid = body.get("submission_id") or body.get("job_id")
    try:
        sid = await _call(JobManager.submit, body["entrypoint"], submission_id=sid,
                          runtime_env=body.get("runtime_env"), metadata=body.get("metadata"),
                          entrypoint_num_cpus=body.get("entrypoint_num_cpus"),
                          entrypoint_num_gpus=body.get("entrypoint_num_gpus"),
                          entrypoint_resources=body.get("entrypoint_resources"))
    except Exception as e:
        return _error(e)
    return _json({"submission_id": sid, "job_id": None})


async def list_jobs(request: Request) -> Response:
    try:
        return _json(await _call(JobManager.list_jobs))
    except Exception as e:
        return _error(e)


async def get_job(request: Request) -> Response:
    try:
        return _json(await _call(JobManager.get_info, request.path_params["submission_id"]))
    except Exception as e:
        return _error(e)


async def delete_job(request: Request) -> Response:
    try:
        return _json({"deleted": await _call(JobManager.delete, request.path_params["submission_id"])})
    except Exception as e:
        return _error(e)


async def stop_job(request: Request) -> Response:
    try:
        return _json({"stopped": await _call(JobManager.stop, request.path_params["submission_id"])})
    except Exception as e:
        return _error(e)


async def job_logs(request: Request) -> Response:
    try:
        return _json({"logs": await _call(JobManager.logs, request.path_params["submission_id"])})
    except Exception as e:
        return _error(e)


async def tail_logs(request: Request) -> Response:
    sid = request.path_params["submission_id"]
    try:
        await _call(JobManager.get_info, sid)
    except Exception as e:
        return _error(e)

    async def stream() -> AsyncIterator[bytes]:
        offset = 0
        while not _closed.is_set():
            chunk, ended = await _call(JobManager.read_log, sid, offset)
            if chunk:
                offset += len(chunk)
                yield chunk
            elif ended:
                return
            else:
                await asyncio.sleep(_TAIL_POLL_S)
    return StreamingResponse(stream(), media_type="text/plain; charset=utf-8")


async def put_package(request: Request) -> Response:
    name = request.path_params["name"]
    limit = CONFIG.working_dir_max_bytes
    size = request.headers.get("content-length")
    if size is not None and size.isdigit() and int(size) > limit:
        return _json({"error": f"package {name} is {int(size) / 2**20:.1f} MiB, over the {limit / 2**20:.1f} "
                               f"MiB limit (SWARM_WORKING_DIR_MAX_BYTES on the head)"}, 413)
    data = await request.body()
    if len(data) > limit:
        return _json({"error": f"package {name} is over the {limit / 2**20:.1f} MiB limit"}, 413)
    try:
        await _call(JobManager.put_package, name, data)
    except Exception as e:
        return _error(e)
    return _json({"name": name, "size": len(data)})


async def get_package(request: Request) -> Response:
    name = request.path_params["name"]
    try:
        exists = await _call(JobManager.has_package, name)
    except Exception as e:
        return _error(e)
    return _json({"name": name, "exists": exists}, 200 if exists else 404)


def routes() -> list[BaseRoute]:
    """The job API's routes. When this process is attached to a cluster, its JobManager starts now,
    so jobs a previous dashboard left RUNNING are marked failed before anyone looks."""
    _closed.clear()
    from swarm import api
    if api.is_initialized():
        try:
            manager()
        except Exception as e:   # the first request will say what is wrong
            log.warning("the job manager could not start yet: %r", e)
    return [
        Route("/api/jobs/packages/{name}", put_package, methods=["PUT"]),
        Route("/api/jobs/packages/{name}", get_package, methods=["GET", "HEAD"]),
        Route("/api/jobs", list_jobs, methods=["GET"]),
        Route("/api/jobs/", list_jobs, methods=["GET"]),
        Route("/api/jobs", submit, methods=["POST"]),
        Route("/api/jobs/", submit, methods=["POST"]),
        Route("/api/jobs/{submission_id}", get_job, methods=["GET"]),
        Route("/api/jobs/{submission_id}", delete_job, methods=["DELETE"]),
        Route("/api/jobs/{submission_id}/stop", stop_job, methods=["POST"]),
        Route("/api/jobs/{submission_id}/logs", job_logs, methods=["GET"]),
        Route("/api/jobs/{submission_id}/logs/tail", tail_logs, methods=["GET"]),
    ]


def shutdown() -> None:
    """Stop every running job (their drivers and process groups) and end the log streams."""
    global _manager
    _closed.set()
    with _manager_lock:
        m, _manager = _manager, None
    if m is not None:
        m.shutdown()
