"""Submitting jobs to a cluster over its dashboard's REST API (as ``ray.job_submission``).

    JobSubmissionClient ── HTTP (urllib; token as "Authorization: Bearer") ──▶ dashboard /api/jobs
        submit_job(entrypoint, runtime_env={"working_dir": DIR, ...})
            DIR zipped here (size-checked) ── PUT /api/jobs/packages/pkg_<sha>.zip (once per content)
            ── POST /api/jobs/ with working_dir = kv://pkg_<sha>.zip ──▶ the head runs the driver

A job is a shell command run on the head node with ``SWARM_ADDRESS`` set, so ``swarm.init()`` in it
joins the cluster; its runtime_env applies to it and to every task and actor it starts.
"""

from __future__ import annotations

import asyncio
import codecs
import dataclasses
import enum
import http.client
import json
import os
import urllib.error
import urllib.request
from typing import Any, AsyncIterator, Iterator

from swarm.exceptions import AuthenticationError

DEFAULT_DASHBOARD = "http://127.0.0.1:8265"
_DEFAULT = object()


class JobStatus(str, enum.Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    def __str__(self) -> str:
        return self.value

    def is_terminal(self) -> bool:
        return self in (JobStatus.STOPPED, JobStatus.SUCCEEDED, JobStatus.FAILED)


@dataclasses.dataclass
class JobInfo:
    """A job as the server describes it (times in milliseconds since the epoch, as Ray's)."""

    status: JobStatus
    entrypoint: str
    submission_id: str | None = None
    job_id: str | None = None
    type: str = "SUBMISSION"
    message: str | None = None
    error_type: str | None = None
    start_time: int | None = None
    end_time: int | None = None
    metadata: dict | None = None
    runtime_env: dict | None = None
    driver_exit_code: int | None = None
    driver_pid: int | None = None
    driver_node_id: str | None = None
    entrypoint_num_cpus: float | None = None
    entrypoint_num_gpus: float | None = None
    entrypoint_resources: dict | None = None

    @classmethod
    def from_dict(cls, d: dict) -> JobInfo:
        known = {f.name for f in dataclasses.fields(cls)}
        fields: dict[str, Any] = {k: v for k, v in d.items() if k in known}
        fields["status"] = JobStatus(fields["status"])
        return cls(**fields)


JobDetails = JobInfo   # Ray's name for the rows of list_jobs()


class JobNotFoundError(RuntimeError):
    """No job with that submission id on the cluster."""


class _NotFound(LookupError):
    """A 404 for something that may simply not be there yet (a package)."""


def _normalize(address: str) -> str:
    address = address.strip().rstrip("/")
    if address.startswith(("http://", "https://")):
        return address
    for prefix in ("tcp:", "swarm://", "ray://"):
        if address.startswith(prefix):
            address = address[len(prefix):]
    return "http://" + address


def _local_dashboard() -> str | None:
    """The dashboard of the cluster started on this machine (its head's node file), if any."""
    try:
        from swarm.node import discovery
        heads = [n for n in discovery.live_nodes() if n.get("head")]
    except Exception:
        return None
    for n in reversed(heads):
        if n.get("dashboard_url"):
            return str(n["dashboard_url"])
    return None


def _local_token() -> str | None:
    try:
        from swarm.node import discovery
        token = discovery.read_token()
        if token:
            return token
        for n in reversed([n for n in discovery.live_nodes() if n.get("head")]):
            if n.get("token_file"):
                return discovery.read_token(n["token_file"])
    except OSError:
        return None
    return None


def resolve_address(address: str | None) -> str:
    """The dashboard URL for ``address`` (None/"auto": SWARM_ADDRESS if it is an http URL, else the
    local cluster's dashboard, else http://127.0.0.1:8265)."""
    if address in (None, "", "auto"):
        env = os.environ.get("SWARM_ADDRESS", "")
        if env.startswith(("http://", "https://")):
            return env.rstrip("/")
        return _local_dashboard() or DEFAULT_DASHBOARD
    return _normalize(address)


class JobSubmissionClient:
    """Submit and manage jobs on the cluster whose dashboard is at ``address``."""

    def __init__(self, address: str | None = None, *, token: str | None = None, token_file: str | None = None,
                 headers: dict | None = None, timeout: float = 60.0, verify: Any = True) -> None:
        self.address = resolve_address(address)
        if token is None and token_file is not None:
            with open(token_file) as f:
                token = f.read().strip()
        self._token = token if token is not None else _local_token()
        self._headers = dict(headers or {})
        self._timeout = timeout
        self._request("GET", "/api/jobs/")   # fail here, with a clear error, when nothing answers

    # -- HTTP ---------------------------------------------------------------------------------------
    def _open(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None,
              timeout: Any = _DEFAULT) -> Any:
        headers = {"Accept": "application/json", **self._headers}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        if content_type:
            headers["Content-Type"] = content_type
        req = urllib.request.Request(self.address + path, data=body, method=method, headers=headers)
        try:
            return urllib.request.urlopen(req, timeout=self._timeout if timeout is _DEFAULT else timeout)
        except urllib.error.HTTPError as e:
            raise self._http_error(e, path) from None
        except urllib.error.URLError as e:
            raise ConnectionError(
                f"cannot reach the job server at {self.address}: {e.reason}. Start the cluster's head with "
                f"`swarm start --head` (it serves the dashboard and the job API on port 8265), or pass "
                f"the dashboard's address (--address / JobSubmissionClient(address=...))") from None
        except (http.client.HTTPException, ConnectionResetError) as e:
            raise ConnectionError(
                f"{self.address} did not answer as a swarm dashboard ({type(e).__name__}): is it the "
                f"cluster's node port? The job API is served by the dashboard, by default "
                f"{DEFAULT_DASHBOARD}") from None

    def _http_error(self, e: urllib.error.HTTPError, path: str) -> Exception:
        try:
            detail = json.loads(e.read() or b"{}").get("error") or e.reason
        except (ValueError, AttributeError):
            detail = e.reason
        if e.code in (401, 403):
            which = "the token given" if self._token else "no token was found"
            return AuthenticationError(
                f"the job server at {self.address} refused the request ({e.code}; {which}): it needs the "
                f"cluster token: set SWARM_TOKEN, or pass the token file `swarm start --head` printed "
                f"(--token-file / JobSubmissionClient(token_file=...)). Server said: {detail}")
        if e.code == 404 and "/packages/" in path:
            return _NotFound(detail)
        if e.code == 404 and path.startswith("/api/jobs/") and detail != "Not Found":
            return JobNotFoundError(detail)
        if e.code == 404:
            return ConnectionError(f"{self.address} has no job API at {path} (is it a swarm dashboard?)")
        if e.code in (400, 409, 413):
            return ValueError(detail)
        return RuntimeError(f"the job server at {self.address} failed ({e.code}): {detail}")

    def _request(self, method: str, path: str, payload: Any = None, missing_ok: bool = False) -> Any:
        """The decoded JSON answer (None for a 404 when ``missing_ok``)."""
        body = json.dumps(payload).encode() if payload is not None else None
        try:
            with self._open(method, path, body, "application/json" if body is not None else None) as resp:
                data = resp.read()
        except _NotFound:
            if missing_ok:
                return None
            raise
        return json.loads(data) if data else None

    # -- packages -----------------------------------------------------------------------------------
    def _upload(self, name: str, data: bytes) -> None:
        """Send a package unless the cluster has it already (same content, same name)."""
        if self._request("GET", f"/api/jobs/packages/{name}", missing_ok=True) is None:
            with self._open("PUT", f"/api/jobs/packages/{name}", data, "application/zip"):
                pass

    def _prepare_runtime_env(self, runtime_env: dict | None) -> dict | None:
        if not runtime_env:
            return None
        from swarm import _runtime_env
        return _runtime_env.prepare(runtime_env, self._upload)

    # -- the API ------------------------------------------------------------------------------------
    def submit_job(self, *, entrypoint: str, submission_id: str | None = None,
                   runtime_env: dict | None = None, metadata: dict | None = None,
                   entrypoint_num_cpus: float | None = None, entrypoint_num_gpus: float | None = None,
                   entrypoint_resources: dict | None = None,
                   job_id: str | None = None) -> str:
        """Run ``entrypoint`` (a shell command) as a job; returns its submission id at once."""
        payload: dict[str, Any] = {"entrypoint": entrypoint}
        sid = submission_id or job_id
        if sid is not None:
            payload["submission_id"] = sid
        spec = self._prepare_runtime_env(runtime_env)
        optional = {"runtime_env": spec, "metadata": metadata, "entrypoint_num_cpus": entrypoint_num_cpus,
                    "entrypoint_num_gpus": entrypoint_num_gpus, "entrypoint_resources": entrypoint_resources}
        payload.update({k: v for k, v in optional.items() if v is not None})
        return self._request("POST", "/api/jobs/", payload)["submission_id"]

    def get_job_info(self, job_id: str) -> JobInfo:
        return JobInfo.from_dict(self._request("GET", f"/api/jobs/{job_id}"))

    def get_job_status(self, job_id: str) -> JobStatus:
        return self.get_job_info(job_id).status

    def list_jobs(self) -> list[JobInfo]:
        return [JobInfo.from_dict(d) for d in self._request("GET", "/api/jobs/")]

    def stop_job(self, job_id: str) -> bool:
        """Ask the job to stop (SIGTERM, then SIGKILL after a grace period); False if it had ended."""
        return bool(self._request("POST", f"/api/jobs/{job_id}/stop")["stopped"])

    def delete_job(self, job_id: str) -> bool:
        """Forget a finished job (its record and its logs)."""
        return bool(self._request("DELETE", f"/api/jobs/{job_id}")["deleted"])

    def get_job_logs(self, job_id: str) -> str:
        return self._request("GET", f"/api/jobs/{job_id}/logs")["logs"]

    def tail_job_logs(self, job_id: str) -> LogTail:
        """The job's output as it is written, until the job ends: ``for chunk in client.tail_job_logs(id)``
        (or ``async for``, as with Ray)."""
        return LogTail(self, job_id)


class LogTail:
    """Iterates over chunks of a job's log (``str``) as the server streams them; ends with the job."""

    def __init__(self, client: JobSubmissionClient, job_id: str) -> None:
        self._client = client
        self._job_id = job_id
        self._resp: Any = None
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        while True:
            if self._resp is None:
                # no read timeout: a quiet job may print nothing for a long time
                self._resp = self._client._open("GET", f"/api/jobs/{self._job_id}/logs/tail", timeout=None)
            chunk = self._resp.read1(65536)
            if not chunk:
                self.close()
                tail = self._decoder.decode(b"", final=True)
                if tail:
                    return tail
                raise StopIteration
            text = self._decoder.decode(chunk)
            if text:
                return text

    def __aiter__(self) -> AsyncIterator[str]:
        return self

    async def __anext__(self) -> str:
        try:
            return await asyncio.to_thread(self.__next__)
        except StopIteration:
            raise StopAsyncIteration from None

    def close(self) -> None:
        if self._resp is not None:
            self._resp.close()
            self._resp = None

    def __del__(self) -> None:
        self.close()
