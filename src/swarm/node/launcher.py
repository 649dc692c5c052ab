"""Starting a node manager process for a local cluster and connecting a driver to it."""

from __future__ import annotations

import json
import os
import selectors
import socket
import subprocess
import sys
import time
from typing import Any

import psutil

from swarm._config import CONFIG
from swarm.core import connection, protocol as P
from swarm.exceptions import SwarmError


def default_object_store_memory() -> int:
    # A sparse memfd: this is a cap, not a reservation; memory is used only as objects are written.
    return int(psutil.virtual_memory().total * CONFIG.object_store_fraction)


def new_session_dir() -> str:
    base = CONFIG.temp_dir
    os.makedirs(base, mode=0o700, exist_ok=True)
    _remove_stale_sessions(base)
    path = os.path.join(base, f"session_{time.strftime('%Y-%m-%d_%H-%M-%S')}_{os.getpid()}_"
                              f"{os.urandom(3).hex()}")
    os.makedirs(path, mode=0o700)
    os.makedirs(os.path.join(path, "logs"), mode=0o700)
    return path


def _remove_stale_sessions(base: str) -> None:
    """Session dirs whose node manager died without cleaning up (SIGKILL) are removed."""
    import shutil
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        pid_file = os.path.join(base, name, "node_manager.pid")
        if not name.startswith("session_") or os.path.exists(os.path.join(base, name, "KEEP")):
            continue
        try:
            with open(pid_file) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            try:   # a start that failed before its node manager wrote its pid, long ago
                if time.time() - os.path.getmtime(os.path.join(base, name)) > 600:
                    shutil.rmtree(os.path.join(base, name), ignore_errors=True)
            except OSError:
                pass
            continue
        if not psutil.pid_exists(pid):
            shutil.rmtree(os.path.join(base, name), ignore_errors=True)


def child_env() -> dict:
    """The environment of a swarm process we start: this swarm importable, no interactive start-up."""
    env = dict(os.environ)
    env.pop("PYTHONSTARTUP", None)
    src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join([p for p in (src, env.get("PYTHONPATH")) if p])
    return env


def start_service(module: str, args: list[str], *, env: dict | None = None, log_file: str | None = None,
                  timeout: float = 30.0) -> tuple[subprocess.Popen, str]:
    """``python -m module args`` in a session of its own (a Ctrl-C in the terminal is not also delivered
    to it), stderr to ``log_file``; returns the process and the first line it prints ("READY ..." or
    "ERROR ..."; empty when it printed nothing within ``timeout``)."""
    err = open(log_file, "ab") if log_file else subprocess.DEVNULL
    try:
        proc = subprocess.Popen([sys.executable, "-m", module, *args], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=err, env=env or child_env(),
                                start_new_session=True, close_fds=True)
    finally:
        if log_file:
            err.close()   # type: ignore[union-attr]
    assert proc.stdout is not None
    line = _read_line(proc.stdout, timeout)
    proc.stdout.close()
    return proc, line


def _read_line(stream: Any, timeout: float) -> str:
    sel = selectors.DefaultSelector()
    sel.register(stream, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    buf = b""
    try:
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                break
            chunk = os.read(stream.fileno(), 4096)
            if not chunk:
                break
            buf += chunk
    finally:
        sel.close()
    return buf.split(b"\n", 1)[0].decode(errors="replace")


def start_node_manager(opts: dict, timeout: float = 30.0) -> subprocess.Popen:
    env = child_env()
    proc = subprocess.Popen([sys.executable, "-m", "swarm.node.node_manager"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, env=env, start_new_session=True, close_fds=True)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write((json.dumps(opts) + "\n").encode())
    proc.stdin.close()
    line = proc.stdout.readline()
    proc.stdout.close()
    proc.ready_address = line.decode().split()[-1] if line.startswith(b"READY ") else None  # type: ignore
    if not line.startswith(b"READY"):
        proc.kill()
        proc.wait()
        import shutil
        if line.startswith(b"ERROR "):
            shutil.rmtree(opts["session_dir"], ignore_errors=True)
            raise SwarmError(line[6:].decode().strip())
        log_path = os.path.join(opts["session_dir"], "logs", "node_manager.log")
        detail = ""
        try:
            with open(log_path) as f:
                detail = f.read()[-2000:]
        except OSError:
            pass
        shutil.rmtree(opts["session_dir"], ignore_errors=True)
        raise RuntimeError(f"the swarm node manager failed to start (exit code {proc.returncode})"
                           + (f":\n{detail}" if detail else ""))
    with open(os.path.join(opts["session_dir"], "node_manager.pid"), "w") as f:
        f.write(str(proc.pid))
    if opts.get("keep_session_dir") or CONFIG.keep_session_dir:
        open(os.path.join(opts["session_dir"], "KEEP"), "w").close()  # kept on purpose: not stale
    return proc


def connect_driver(address: str, token: bytes, worker_id: bytes, my_address: str,
                   log_to_driver: bool) -> tuple[socket.socket, int, dict]:
    """Authenticate, register as a driver, receive the arena fd and the node's description."""
    sock = connection.connect(address, token)
    sock.sendall(P.encode([P.REGISTER_DRIVER, worker_id, my_address, os.getpid(), log_to_driver]))
    sock.settimeout(30)
    _, fds, _, _ = socket.recv_fds(sock, 1, 1)
    if not fds:
        raise ConnectionError("the node manager did not share its object store")
    header = connection._recv_exact(sock, 4)
    (size,) = P.HEADER.unpack(header)
    msg = P.decode(connection._recv_exact(sock, size))
    sock.settimeout(None)
    return sock, fds[0], msg[2]
