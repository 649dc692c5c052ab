"""Running submitted jobs on the head node: the ``JobManager`` behind the dashboard's ``/api/jobs``.

    submit ──▶ job record PENDING (KV "jobs") ──▶ supervisor thread, one per job:
        unpack working_dir / py_modules (KV "runtime_env") into <session>/runtime_resources/
        ──▶ spawn `bash -c ENTRYPOINT`: own session (process group), PDEATHSIG, cwd = working_dir,
            SWARM_ADDRESS / SWARM_TOKEN / SWARM_JOB_ID / SWARM_RUNTIME_ENV in its environment,
            stdout+stderr ──▶ <session>/logs/job-driver-<id>.log ──▶ RUNNING
        ──▶ waits for the driver (stop: SIGTERM to the group, SIGKILL after the grace period)
        ──▶ the driver exited: SIGKILL to what is left of its group, reap ──▶ SUCCEEDED/FAILED/STOPPED

The job table lives in the cluster KV (namespace ``jobs``, one JSON record per submission id), so it
outlives the dashboard and, with persistent head storage, a head restart; a record still RUNNING when
a new manager starts lost its driver with the old one (PDEATHSIG) and is marked FAILED.

Why a thread per job: PDEATHSIG fires when the *thread* that forked the child exits, so the thread
that spawns a driver must live exactly as long as the driver; it is also the one that reaps it. The
leader is waited for with WNOWAIT first: while it is an unreaped zombie its process-group id cannot
be reused, so the final SIGKILL to the group cannot hit an unrelated process.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from typing import Callable, Protocol

from swarm import _packaging, _runtime_env
from swarm.job_submission import JobStatus

JOBS_NAMESPACE = "jobs"
STOP_GRACE_S = 3.0
_POLL_S = 0.1
_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_PR_SET_PDEATHSIG = 1
_SHELL = "/bin/bash" if os.path.exists("/bin/bash") else "/bin/sh"   # bash execs a lone command: the
                                                                      # driver itself gets PDEATHSIG


class JobNotFoundError(LookupError):
    """No job with that submission id."""


class JobConflictError(ValueError):
    """The request does not fit the job's state (a duplicate id, deleting a running job)."""


class KVStore(Protocol):
    def get(self, namespace: str, key: str) -> bytes | None: ...
    def put(self, namespace: str, key: str, value: bytes) -> None: ...
    def delete(self, namespace: str, key: str) -> None: ...
    def keys(self, namespace: str) -> list[str]: ...
    def multi_get(self, namespace: str, keys: list[str]) -> dict[str, bytes]: ...


class ClusterKV:
    """``KVStore`` over the cluster's internal KV (this process is attached to the cluster)."""

    def get(self, namespace: str, key: str) -> bytes | None:
        from swarm.experimental import internal_kv
        return internal_kv.kv_get(key, namespace=namespace)

    def put(self, namespace: str, key: str, value: bytes) -> None:
        from swarm.experimental import internal_kv
        internal_kv.kv_put(key, value, namespace=namespace)

    def delete(self, namespace: str, key: str) -> None:
        from swarm.experimental import internal_kv
        internal_kv.kv_del(key, namespace=namespace)

    def keys(self, namespace: str) -> list[str]:
        from swarm.experimental import internal_kv
        return [k.decode() for k in internal_kv.kv_list(b"", namespace=namespace)]

    def multi_get(self, namespace: str, keys: list[str]) -> dict[str, bytes]:
        from swarm.experimental import internal_kv
        return {k.decode(): v for k, v in internal_kv.kv_multi_get(keys, namespace=namespace).items()}


class _Job:
    __slots__ = ("info", "proc", "lock", "wake", "stop_reason", "kill_at", "thread", "done")

    def __init__(self, info: dict) -> None:
        self.info = info
        self.proc: subprocess.Popen | None = None
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stop_reason: str | None = None
        self.kill_at: float | None = None
        self.thread: threading.Thread | None = None
        self.done = False


def _now_ms() -> int:
    return int(time.time() * 1000)


def _die_with_parent() -> Callable[[], None]:
    """A preexec_fn: the child gets SIGKILL when the thread that spawned it dies (this process)."""
    libc = ctypes.CDLL(None, use_errno=True)   # loaded here, before fork: the child only calls it
    prctl = libc.prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:   # the parent died before prctl took effect
            os._exit(1)
    return preexec


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _tail_text(path: str, max_chars: int = 4000, max_lines: int = 20) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - max_chars))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-max_lines:])


class JobManager:
    """Submits, watches, stops and forgets jobs; every state change is written to the KV job table."""

    def __init__(self, kv: KVStore, *, session_dir: str, driver_env: dict[str, str],
                 stop_grace_s: float = STOP_GRACE_S, node_id: str | None = None) -> None:
        self.kv = kv
        self.logs_dir = os.path.join(session_dir, "logs")
        self.resources_dir = os.path.join(session_dir, "runtime_resources")
        self.driver_env = dict(driver_env)
        self.stop_grace_s = stop_grace_s
        self.node_id = node_id
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()
        self._closed = False
        os.makedirs(self.logs_dir, mode=0o700, exist_ok=True)
        self._recover()

    # -- the job table ------------------------------------------------------------------------------
    def _save(self, info: dict) -> None:
        self.kv.put(JOBS_NAMESPACE, info["submission_id"], json.dumps(info).encode())

    def _load(self, submission_id: str) -> dict | None:
        raw = self.kv.get(JOBS_NAMESPACE, submission_id)
        return json.loads(raw) if raw is not None else None

    def _recover(self) -> None:
        """Records left RUNNING/PENDING by a previous manager: their driver died with it."""
        for info in self.list_jobs():
            if not JobStatus(info["status"]).is_terminal():
                info.update(status=JobStatus.FAILED.value, end_time=_now_ms(),
                            error_type="JOB_SUPERVISOR_LOST",
                            message="the job's driver was lost: the dashboard (or the head) restarted "
                                    "while the job ran")
                self._save(info)

    def get_info(self, submission_id: str) -> dict:
        job = self._jobs.get(submission_id)
        if job is not None:
            return dict(job.info)
        info = self._load(submission_id)
        if info is None:
            raise JobNotFoundError(f"no job with submission id {submission_id!r}: `swarm job list` shows "
                                   f"the cluster's jobs")
        return info

    def list_jobs(self) -> list[dict]:
        keys = self.kv.keys(JOBS_NAMESPACE)
        rows = [json.loads(v) for v in self.kv.multi_get(JOBS_NAMESPACE, keys).values()] if keys else []
        for row in rows:   # our own jobs: the freshest copy (the KV one may be a moment older)
            job = self._jobs.get(row["submission_id"])
            if job is not None:
                row.update(job.info)
        return sorted(rows, key=lambda r: r.get("start_time") or 0)

    def log_path(self, submission_id: str) -> str:
        return os.path.join(self.logs_dir, f"job-driver-{submission_id}.log")

    # -- submit -------------------------------------------------------------------------------------
    def submit(self, entrypoint: str, *, submission_id: str | None = None, runtime_env: dict | None = None,
               metadata: dict | None = None, entrypoint_num_cpus: float | None = None,
               entrypoint_num_gpus: float | None = None, entrypoint_resources: dict | None = None) -> str:
        if not isinstance(entrypoint, str) or not entrypoint.strip():
            raise ValueError("entrypoint must be a non-empty shell command, e.g. 'python main.py'")
        if submission_id is None:
            submission_id = f"swarmjob_{uuid.uuid4().hex[:16]}"
        if not isinstance(submission_id, str) or not _ID.match(submission_id):
            raise ValueError(f"submission_id {submission_id!r} may only use letters, digits, '_', '-' and "
                             f"'.' (at most 128): it names the job's log file")
        if metadata is not None and (not isinstance(metadata, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())):
            raise ValueError("metadata must be a dict of str to str")
        spec = self._check_runtime_env(runtime_env)
        info = {"submission_id": submission_id, "job_id": None, "type": "SUBMISSION",
                "entrypoint": entrypoint, "status": JobStatus.PENDING.value, "message": "Job is starting.",
                "error_type": None, "start_time": _now_ms(), "end_time": None, "metadata": metadata or {},
                "runtime_env": spec, "driver_exit_code": None, "driver_pid": None,
                "driver_node_id": self.node_id, "entrypoint_num_cpus": entrypoint_num_cpus,
                "entrypoint_num_gpus": entrypoint_num_gpus, "entrypoint_resources": entrypoint_resources}
        job = _Job(info)
        with self._lock:
            if self._closed:
                raise RuntimeError("the job manager is shutting down: submit again once the dashboard "
                                   "is back")
            if submission_id in self._jobs or self._load(submission_id) is not None:
                raise JobConflictError(f"a job with submission id {submission_id!r} already exists: pick "
                                       f"another id, or delete the old job first (`swarm job delete "
                                       f"{submission_id}`)")
            self._save(info)
            self._jobs[submission_id] = job
            job.thread = threading.Thread(target=self._supervise, args=(job,), name=f"job-{submission_id}")
            job.thread.start()
        return submission_id

    def _check_runtime_env(self, runtime_env: dict | None) -> dict:
        env = _runtime_env.validate(runtime_env)
        for what, value in [("working_dir", env.get("working_dir"))] + \
                [("py_modules entry", m) for m in env.get("py_modules") or ()]:
            if value is None:
                continue
            if not _packaging.is_uri(value):
                raise ValueError(f"runtime_env {what} {value!r} is a path on the submitting machine: "
                                 f"JobSubmissionClient and `swarm job submit` upload it for you; over "
                                 f"plain HTTP, PUT the zip to /api/jobs/packages/pkg_<hash>.zip and pass "
                                 f"{_packaging.URI_PREFIX}pkg_<hash>.zip")
            name = _packaging.package_name(value)
            if self.kv.get(_packaging.KV_NAMESPACE, name) is None:
                raise ValueError(f"runtime_env {what} {value} was not uploaded (PUT /api/jobs/packages/"
                                 f"{name} first)")
        return _runtime_env.prepare(env, upload=None)

    # -- packages -----------------------------------------------------------------------------------
    def put_package(self, name: str, data: bytes) -> None:
        _packaging.package_name(name)
        if _packaging.name_for(data) != name:
            raise ValueError(f"the uploaded bytes do not match the package name {name} (its hash): upload "
                             f"the zip under the name swarm computed for it")
        if self.kv.get(_packaging.KV_NAMESPACE, name) is None:
            self.kv.put(_packaging.KV_NAMESPACE, name, data)

    def has_package(self, name: str) -> bool:
        _packaging.package_name(name)
        return self.kv.get(_packaging.KV_NAMESPACE, name) is not None

    # -- running a job ------------------------------------------------------------------------------
    def _driver_setup(self, spec: dict, submission_id: str) -> tuple[str | None, dict]:
        """(cwd, environment) of a job's driver, its packages unpacked on this node."""
        def fetch(name: str) -> bytes | None:
            return self.kv.get(_packaging.KV_NAMESPACE, name)
        wd = _packaging.ensure_local(spec["working_dir"], self.resources_dir, fetch) \
            if spec.get("working_dir") else None
        mods = [_packaging.ensure_local(u, self.resources_dir, fetch) for u in spec.get("py_modules") or ()]
        env = dict(os.environ)
        env.pop("SWARM_RUNTIME_ENV", None)
        env.update(self.driver_env)
        env.update(spec.get("env_vars") or {})
        env["SWARM_JOB_ID"] = submission_id
        env["PYTHONUNBUFFERED"] = "1"   # the log is followed live
        # `python` in an entrypoint means the interpreter the cluster runs on (where swarm is installed)
        env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH") or os.defpath])
        if spec:
            env["SWARM_RUNTIME_ENV"] = json.dumps(spec)
        path = [p for p in [wd, *mods, env.get("PYTHONPATH")] if p]
        if path:
            env["PYTHONPATH"] = os.pathsep.join(path)
        return wd, env

    def _supervise(self, job: _Job) -> None:
        info = job.info
        sid = info["submission_id"]
        try:
            cwd, env = self._driver_setup(info["runtime_env"], sid)
        except Exception as e:
            self._finish(job, JobStatus.FAILED, f"the job's runtime_env could not be set up: {e}",
                         error_type="RUNTIME_ENV_SETUP_FAILED")
            return
        log_path = self.log_path(sid)
        with job.lock:
            if job.stop_reason is not None:
                self._finish_locked(job, JobStatus.STOPPED, f"Job was stopped before it started "
                                                            f"({job.stop_reason}).")
                return
            try:
                with open(log_path, "ab") as log:
                    job.proc = subprocess.Popen(
                        [_SHELL, "-c", info["entrypoint"]], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                        preexec_fn=_die_with_parent())
            except OSError as e:
                self._finish_locked(job, JobStatus.FAILED, f"the job's driver could not be started: {e}",
                                    error_type="JOB_ENTRYPOINT_COMMAND_START_ERROR")
                return
            info.update(status=JobStatus.RUNNING.value, message="Job is currently running.",
                        driver_pid=job.proc.pid)
            self._try_save(info)
        code = self._wait(job)
        if job.stop_reason is not None:
            self._finish(job, JobStatus.STOPPED, f"Job was stopped ({job.stop_reason}).", code)
        elif code == 0:
            self._finish(job, JobStatus.SUCCEEDED, "Job finished successfully.", code)
        else:
            how = f"was killed by signal {signal.Signals(-code).name}" if code < 0 else \
                f"failed with exit code {code}"
            tail = _tail_text(log_path)
            self._finish(job, JobStatus.FAILED, f"Job entrypoint command {how}"
                         + (f"; last lines of its output:\n{tail}" if tail else "."), code,
                         error_type="JOB_ENTRYPOINT_COMMAND_ERROR")

    def _wait(self, job: _Job) -> int:
        """Wait for the driver, kill what is left of its process group, reap it; its exit code."""
        proc = job.proc
        assert proc is not None
        pid = proc.pid
        while True:
            try:
                res = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
            except ChildProcessError:
                break
            if res is not None and res.si_pid == pid:
                break
            if job.kill_at is not None and time.monotonic() >= job.kill_at:
                _killpg(pid, signal.SIGKILL)
            job.wake.wait(_POLL_S)
            job.wake.clear()
        _killpg(pid, signal.SIGKILL)   # the leader is a zombie until reaped: the group id is still ours
        return proc.wait()

    def _finish(self, job: _Job, status: JobStatus, message: str, code: int | None = None,
                error_type: str | None = None) -> None:
        with job.lock:
            self._finish_locked(job, status, message, code, error_type)

    def _finish_locked(self, job: _Job, status: JobStatus, message: str, code: int | None = None,
                       error_type: str | None = None) -> None:
        job.info.update(status=status.value, message=message, end_time=_now_ms(), driver_exit_code=code,
                        error_type=error_type)
        job.done = True
        self._try_save(job.info)
        with self._lock:
            self._jobs.pop(job.info["submission_id"], None)

    def _try_save(self, info: dict) -> None:
        try:
            self._save(info)
        except Exception:   # the cluster is going away: the record is lost with it
            pass

    # -- stop / delete ------------------------------------------------------------------------------
    def stop(self, submission_id: str, reason: str = "stop requested") -> bool:
        """SIGTERM to the job's process group now, SIGKILL after the grace period; False if it had ended."""
        job = self._jobs.get(submission_id)
        if job is None:
            self.get_info(submission_id)   # unknown id: JobNotFoundError
            return False
        with job.lock:
            if job.done:
                return False
            if job.stop_reason is None:
                job.stop_reason = reason
                if job.proc is not None:
                    _killpg(job.proc.pid, signal.SIGTERM)
                    job.kill_at = time.monotonic() + self.stop_grace_s
        job.wake.set()
        return True

    def delete(self, submission_id: str) -> bool:
        """Forget a finished job: its record, its log, the packages only it used."""
        info = self.get_info(submission_id)
        if not JobStatus(info["status"]).is_terminal():
            raise JobConflictError(f"job {submission_id} is {info['status']}: stop it first "
                                   f"(`swarm job stop {submission_id}`), then delete it")
        self.kv.delete(JOBS_NAMESPACE, submission_id)
        try:
            os.unlink(self.log_path(submission_id))
        except OSError:
            pass
        self._forget_packages(info.get("runtime_env") or {})
        return True

    def _forget_packages(self, spec: dict) -> None:
        mine = {u for u in [spec.get("working_dir"), *(spec.get("py_modules") or ())] if u}
        if not mine:
            return
        for other in self.list_jobs():
            o = other.get("runtime_env") or {}
            mine -= {o.get("working_dir"), *(o.get("py_modules") or ())}
        for uri in mine:
            name = _packaging.package_name(uri)
            self.kv.delete(_packaging.KV_NAMESPACE, name)
            shutil.rmtree(os.path.join(self.resources_dir, name[:-len(".zip")]), ignore_errors=True)

    # -- logs ---------------------------------------------------------------------------------------
    def logs(self, submission_id: str) -> str:
        self.get_info(submission_id)
        try:
            with open(self.log_path(submission_id), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def read_log(self, submission_id: str, offset: int, max_bytes: int = 64 * 1024) -> tuple[bytes, bool]:
        """(bytes of the log from ``offset``, whether the job had ended before they were read)."""
        job = self._jobs.get(submission_id)
        if job is not None:
            ended = job.done
        else:
            ended = JobStatus(self.get_info(submission_id)["status"]).is_terminal()
        try:
            with open(self.log_path(submission_id), "rb") as f:
                f.seek(offset)
                return f.read(max_bytes), ended
        except FileNotFoundError:
            return b"", ended

    # -- shutdown -----------------------------------------------------------------------------------
    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop every running job and wait for their supervisors: no driver outlives the manager."""
        with self._lock:
            self._closed = True
            jobs = list(self._jobs.values())
        for job in jobs:
            self.stop(job.info["submission_id"], "the dashboard shut down")
        deadline = time.monotonic() + timeout
        for job in jobs:
            if job.thread is not None:
                job.thread.join(max(0.0, deadline - time.monotonic()))
