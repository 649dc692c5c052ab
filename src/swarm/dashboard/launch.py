"""Starting and stopping the dashboard process (for ``swarm start --head`` and ``init()``).

Only the standard library and psutil here: the CLI and ``init()`` import this module whether or not
the dashboard's dependencies are installed, and ask ``missing_dependencies()`` first.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import time

import psutil

INSTALL_HINT = "pip install 'swarm[dashboard]'"
REQUIRED = ("starlette", "uvicorn", "prometheus_client")


class DashboardStartError(RuntimeError):
    """The dashboard process could not start; the message says why."""


def missing_dependencies() -> list[str]:
    return [name for name in REQUIRED if importlib.util.find_spec(name) is None]


def start_dashboard(address: str, *, host: str = "127.0.0.1", port: int = 8265, token_file: str | None = None,
                    log_file: str | None = None, any_port_if_taken: bool = False,
                    extra_args: list[str] | None = None,
                    timeout: float = 60.0) -> tuple[subprocess.Popen, str]:
    """Start ``python -m swarm.dashboard`` for the cluster at ``address``; returns (process, url) once
    it serves. Raises DashboardStartError with the reason when it cannot."""
    missing = missing_dependencies()
    if missing:
        raise DashboardStartError(f"the dashboard needs {', '.join(missing)}: {INSTALL_HINT}")
    from swarm.node.launcher import start_service
    cmd = ["--address", address, "--host", host, "--port", str(port)]
    if token_file:
        cmd += ["--token-file", token_file]
    if log_file:
        cmd += ["--log-file", log_file]
    if any_port_if_taken:
        cmd.append("--any-port-if-taken")
    cmd += extra_args or []
    # (its own session: a Ctrl-C in the terminal reaches the driver, which stops it in order)
    proc, line = start_service("swarm.dashboard", cmd, log_file=log_file, timeout=timeout)
    if line.startswith("READY "):
        return proc, line.split(maxsplit=1)[1].strip()
    stop_dashboard(proc)
    if line.startswith("ERROR "):
        raise DashboardStartError(line[6:].strip())
    detail = _tail(log_file)
    raise DashboardStartError(("the dashboard did not start within "
                               f"{timeout:.0f} s" if not line else f"the dashboard failed to start: {line}")
                              + (f"\n{detail}" if detail else ""))


def _tail(path: str | None, size: int = 2000) -> str:
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - size))
            return f.read().decode(errors="replace").strip()
    except OSError:
        return ""


def stop_dashboard(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; reaps the process."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def stop_dashboard_pid(pid: int, grace: float = 10.0) -> bool:
    """Stop a dashboard started by another process (``swarm stop``): only if that pid still is one."""
    try:
        p = psutil.Process(pid)
        if "swarm.dashboard" not in " ".join(p.cmdline()):
            return False   # the pid was reused by something else
        p.terminate()
    except psutil.Error:
        return False
    if not _wait_gone(p, grace):
        try:
            p.kill()
        except psutil.Error:
            pass
        _wait_gone(p, 5)
    return True


def _wait_gone(p: psutil.Process, timeout: float) -> bool:
    """Exited: gone, or a zombie (not our child: its reaper may take a while, it runs nothing)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.Error:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def start_for_local_cluster(worker: object, host: str = "127.0.0.1",
                            port: int | None = None) -> tuple[subprocess.Popen, str]:
    """The dashboard of a cluster ``init()`` started: it attaches over the node's Unix socket with the
    token from the session directory (removed with it). ``port=None``: 8265, or any free port if
    8265 is taken (as Ray does)."""
    info: dict = worker.node_info   # type: ignore[attr-defined]
    session_dir = info["session_dir"]
    token_file = os.path.join(session_dir, "cluster_token")
    if not os.path.exists(token_file):
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(worker.token)   # type: ignore[attr-defined]
    return start_dashboard(info["unix_address"], host=host, port=8265 if port is None else port,
                           token_file=token_file, log_file=os.path.join(session_dir, "logs", "dashboard.log"),
                           any_port_if_taken=port is None)


def running_dashboard_url(address: str = "auto") -> str:
    """The URL of the dashboard of the cluster ``swarm start --head`` runs on this machine (``auto``: the
    newest; else the head at ``HOST:PORT``). Raises LookupError saying what is missing."""
    from swarm.node import discovery
    heads = [n for n in discovery.live_nodes() if n.get("head")]
    if address != "auto":
        wanted = address if address.startswith(("tcp:", "unix:")) else f"tcp:{address}"
        heads = [n for n in heads if wanted in (n.get("tcp_address"), n.get("unix_address"))]
    if not heads:
        raise LookupError("no swarm head node started with `swarm start --head` is running on this machine"
                          + ("" if address == "auto" else f" at {address}")
                          + " (a cluster started by init(include_dashboard=True) has its URL in "
                            "init(...).dashboard_url)")
    head = heads[-1]
    if not head.get("dashboard_url") or not head.get("dashboard_pid") \
            or not psutil.pid_exists(head["dashboard_pid"]):
        raise LookupError(f"the cluster at {head['tcp_address'][4:]} runs no dashboard: it was started with "
                          f"--no-dashboard, the dashboard failed to start (see "
                          f"{os.path.join(head.get('session_dir', '?'), 'logs', 'dashboard.log')}), or it "
                          f"exited")
    return str(head["dashboard_url"])
