"""``swarm job ...``: submit, follow, stop and look at jobs (a thin shell over ``JobSubmissionClient``).

    swarm job submit [--address A] [--working-dir DIR] [--runtime-env-json JSON] [--submission-id ID]
                     [--follow | --no-wait] -- COMMAND ...
    swarm job status ID | logs ID [--follow] | stop ID [--no-wait] | list | delete ID
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from typing import Any

STOP_WAIT_S = 60.0


def register(sub: Any) -> None:
    """Add the ``job`` command and its subcommands to the ``swarm`` parser."""
    job = sub.add_parser("job", help="submit and manage jobs on a cluster (through its dashboard)")
    jobs = job.add_subparsers(dest="job_command", required=True)

    def common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--address", default=None,
                       help="the dashboard, e.g. http://127.0.0.1:8265 (default: SWARM_ADDRESS if it is an "
                            "http URL, else the cluster started on this machine)")
        p.add_argument("--token-file", help="file holding the cluster token (else SWARM_TOKEN, or the "
                                            "local head's token file)")
        return p

    submit = common(jobs.add_parser("submit", help="run a command as a job on the cluster"))
    submit.add_argument("--working-dir", help="local directory shipped to the cluster; the job runs in it")
    submit.add_argument("--runtime-env-json",
                        help="runtime_env as JSON, e.g. '{\"env_vars\": {\"K\": \"v\"}}'")
    submit.add_argument("--submission-id", help="the job's id (default: generated)")
    submit.add_argument("--metadata-json", help="metadata as a JSON object of strings")
    submit.add_argument("--entrypoint-num-cpus", type=float)
    mode = submit.add_mutually_exclusive_group()
    mode.add_argument("--follow", action="store_true", help="stream the job's logs and exit with its status")
    mode.add_argument("--no-wait", action="store_true", help="print the job id and return (the default)")
    submit.add_argument("entrypoint", nargs=argparse.REMAINDER, help="the command, after --")
    for name, text in (("status", "the job's status and message"), ("delete", "forget a finished job")):
        common(jobs.add_parser(name, help=text)).add_argument("job_id")
    logs = common(jobs.add_parser("logs", help="the job's output"))
    logs.add_argument("job_id")
    logs.add_argument("--follow", "-f", action="store_true", help="keep streaming until the job ends")
    stop = common(jobs.add_parser("stop", help="stop a job (SIGTERM, then SIGKILL after a grace period)"))
    stop.add_argument("job_id")
    stop.add_argument("--no-wait", action="store_true", help="do not wait until it has stopped")
    common(jobs.add_parser("list", help="every job of the cluster"))


def _client(ns: argparse.Namespace) -> Any:
    from swarm.job_submission import JobSubmissionClient
    return JobSubmissionClient(ns.address, token_file=ns.token_file)


def run(ns: argparse.Namespace) -> int:
    from swarm.exceptions import AuthenticationError
    from swarm.job_submission import JobNotFoundError
    handler = {"submit": _submit, "status": _status, "logs": _logs, "stop": _stop, "list": _list,
               "delete": _delete}[ns.job_command]
    try:
        return handler(ns)
    except (ConnectionError, AuthenticationError, JobNotFoundError, ValueError, TypeError, OSError) as e:
        print(f"swarm job {ns.job_command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if ns.job_command in ("submit", "logs"):
            print("\nstopped following the logs; the job keeps running (`swarm job stop ID` stops it)",
                  file=sys.stderr)
        return 130


def _submit(ns: argparse.Namespace) -> int:
    entrypoint = list(ns.entrypoint)
    if entrypoint and entrypoint[0] == "--":
        entrypoint = entrypoint[1:]
    if not entrypoint:
        print("swarm job submit: give the command to run after --, e.g. "
              "`swarm job submit --working-dir . -- python main.py`", file=sys.stderr)
        return 2
    runtime_env: dict = {}
    if ns.runtime_env_json:
        try:
            runtime_env = json.loads(ns.runtime_env_json)
        except ValueError as e:
            print(f"swarm job submit: --runtime-env-json is not valid JSON ({e})", file=sys.stderr)
            return 2
        if not isinstance(runtime_env, dict):
            print("swarm job submit: --runtime-env-json must be a JSON object", file=sys.stderr)
            return 2
    if ns.working_dir:
        runtime_env["working_dir"] = ns.working_dir
    metadata = json.loads(ns.metadata_json) if ns.metadata_json else None
    client = _client(ns)
    # one argument stays one argument: quote each for the job's shell
    command = entrypoint[0] if len(entrypoint) == 1 else " ".join(shlex.quote(a) for a in entrypoint)
    job_id = client.submit_job(entrypoint=command, submission_id=ns.submission_id,
                               runtime_env=runtime_env or None, metadata=metadata,
                               entrypoint_num_cpus=ns.entrypoint_num_cpus)
    print(f"Job '{job_id}' submitted.", file=sys.stderr if ns.follow else sys.stdout, flush=True)
    if not ns.follow:
        print(f"  status: swarm job status {job_id}    logs: swarm job logs {job_id} --follow    "
              f"stop: swarm job stop {job_id}")
        return 0
    return _follow(client, job_id)


def _follow(client: Any, job_id: str) -> int:
    for chunk in client.tail_job_logs(job_id):
        sys.stdout.write(chunk)
        sys.stdout.flush()
    info = client.get_job_info(job_id)
    print(f"Job '{job_id}' {info.status.value}: {info.message or ''}".rstrip(), file=sys.stderr)
    return _exit_code(info)


def _exit_code(info: Any) -> int:
    from swarm.job_submission import JobStatus
    if info.status == JobStatus.SUCCEEDED:
        return 0
    code = info.driver_exit_code
    if info.status == JobStatus.FAILED and isinstance(code, int) and 0 < code < 256:
        return code
    return 1


def _status(ns: argparse.Namespace) -> int:
    info = _client(ns).get_job_info(ns.job_id)
    print(f"{info.submission_id}: {info.status.value}")
    if info.message:
        print(f"  {info.message}")
    return 0


def _logs(ns: argparse.Namespace) -> int:
    client = _client(ns)
    if ns.follow:
        for chunk in client.tail_job_logs(ns.job_id):
            sys.stdout.write(chunk)
            sys.stdout.flush()
    else:
        sys.stdout.write(client.get_job_logs(ns.job_id))
    return 0


def _stop(ns: argparse.Namespace) -> int:
    client = _client(ns)
    if not client.stop_job(ns.job_id):
        info = client.get_job_info(ns.job_id)
        print(f"job {ns.job_id} had already ended: {info.status.value}")
        return 0
    if ns.no_wait:
        print(f"stopping job {ns.job_id}")
        return 0
    deadline = time.monotonic() + STOP_WAIT_S
    while time.monotonic() < deadline:
        info = client.get_job_info(ns.job_id)
        if info.status.is_terminal():
            print(f"job {ns.job_id} {info.status.value}")
            return 0
        time.sleep(0.2)
    print(f"job {ns.job_id} is still stopping after {STOP_WAIT_S:.0f} s", file=sys.stderr)
    return 1


def _list(ns: argparse.Namespace) -> int:
    jobs = _client(ns).list_jobs()
    if not jobs:
        print("no jobs")
        return 0
    print(f"{'submission id':32} {'status':10} {'started':19} entrypoint")
    for j in jobs:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(j.start_time / 1000)) \
            if j.start_time else ""
        print(f"{j.submission_id or '':32} {j.status.value:10} {started:19} {j.entrypoint}")
    return 0


def _delete(ns: argparse.Namespace) -> int:
    _client(ns).delete_job(ns.job_id)
    print(f"deleted job {ns.job_id}")
    return 0

