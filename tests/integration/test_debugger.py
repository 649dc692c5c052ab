"""The remote debugger: ``breakpoint()`` in a task pauses it, ``swarm debug`` attaches a pdb prompt over
the authenticated channel, ``c`` lets the task go on, ``q`` stops it; ``SWARM_DEBUG_POST_MORTEM=1``
opens the same on an uncaught exception.

A head node started with ``swarm start`` (in its own SWARM_TEMP_DIR, with post-mortem sessions turned
on in its environment) serves every test; drivers and ``swarm debug`` run as real processes, the
terminal side driven by pexpect.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pexpect
import psutil
import pytest

from swarm.core import connection
from swarm.exceptions import AuthenticationError

SRC = str(Path(__file__).resolve().parents[2] / "src")
PROMPT = r"\(swarm-pdb\) "
PAUSED = "attach a debugger with `swarm debug`"

DRIVER = textwrap.dedent("""
    import sys
    import swarm

    if sys.argv[1] == "local":    # a cluster of this driver's own
        swarm.init(num_cpus=1)
    else:
        swarm.init(address="auto")

    @swarm.remote(max_retries=0)
    def compute(x):
        secret_value = x * 7
        breakpoint()
        return secret_value + 1

    @swarm.remote
    def divide(a, b):
        ratio_input = (a, b)
        return a / b

    try:
        if sys.argv[1] in ("breakpoint", "local"):
            print("RESULT", swarm.get(compute.remote(6)), flush=True)
        if sys.argv[1] in ("post_mortem", "local"):
            print("RESULT", swarm.get(divide.remote(1, 0)), flush=True)
    except Exception as e:
        kind = "ZeroDivisionError" if isinstance(e, ZeroDivisionError) else type(e).__name__
        print(f"ERROR {kind}: {e}".replace("\\n", " | "), flush=True)
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DebugCluster:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = _free_port()
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("SWARM_TOKEN", "SWARM_TOKEN_FILE", "SWARM_ADDRESS")}
        self.env["SWARM_TEMP_DIR"] = str(tmp)
        self.env["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p)
        self.script = tmp / "driver.py"
        self.script.write_text(DRIVER)
        swarm_bin = Path(sys.executable).parent / "swarm"
        self.cli = [str(swarm_bin)] if swarm_bin.exists() else [sys.executable, "-m", "swarm.cli"]

    def run_cli(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(self.cli + list(args), env=env or self.env, capture_output=True, text=True,
                              timeout=60)

    def driver(self, scenario: str, **env: str) -> pexpect.spawn:
        return pexpect.spawn(sys.executable, [str(self.script), scenario], env=dict(self.env, **env),
                             encoding="utf-8", timeout=60, cwd=str(self.tmp))

    def debug(self, *args: str) -> pexpect.spawn:
        return pexpect.spawn(self.cli[0], self.cli[1:] + ["debug", *args], env=self.env, encoding="utf-8",
                             timeout=60)

    def sessions(self) -> list[dict]:
        """What `swarm debug` reads: the sessions registered in the cluster's kv."""
        from swarm import _cli_debug
        head = _cli_debug._Head(f"127.0.0.1:{self.port}", str(self.tmp / "cluster_token"))
        try:
            return _cli_debug._sessions(head)
        finally:
            head.close()


@pytest.fixture(scope="module")
def dbg(tmp_path_factory: pytest.TempPathFactory):
    c = DebugCluster(tmp_path_factory.mktemp("swarm_debug"))
    start_env = dict(c.env, SWARM_DEBUG_POST_MORTEM="1")   # workers inherit the node's environment
    start = c.run_cli("start", "--head", "--port", str(c.port), "--num-cpus", "2", "--no-dashboard",
                      env=start_env)
    assert start.returncode == 0, start.stderr
    pids: set[int] = set()
    try:
        yield c
    finally:
        for f in (c.tmp / "nodes").glob("*.json"):
            pid = json.loads(f.read_text())["pid"]
            pids.add(pid)
            try:
                pids.update(p.pid for p in psutil.Process(pid).children(recursive=True))
            except psutil.Error:
                pass
        stop = c.run_cli("stop")
    assert stop.returncode == 0, stop.stderr
    deadline = time.monotonic() + 15
    while any(_running(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [p for p in pids if _running(p)]
    assert not left, f"processes of the debug test cluster left after `swarm stop`: {left}"


def _finish(proc: pexpect.spawn) -> str:
    proc.expect(pexpect.EOF)
    proc.close()
    return proc.before


def test_breakpoint_session_inspect_and_continue(dbg: DebugCluster) -> None:
    drv = dbg.driver("breakpoint")
    drv.expect_exact(PAUSED)
    client = dbg.debug()
    client.expect(PROMPT)                       # the one paused task: attached at once
    client.sendline("p secret_value")
    client.expect(PROMPT)
    assert client.before.strip().splitlines()[-1] == "42"
    client.sendline("c")
    tail = _finish(client)
    assert "the task continues" in tail
    assert client.exitstatus == 0
    drv.expect(r"RESULT (\d+)")
    assert drv.match.group(1) == "43"
    _finish(drv)
    assert drv.exitstatus == 0
    assert dbg.sessions() == []                 # a session that ended is gone from the list
    listing = dbg.run_cli("debug", "--list")
    assert listing.returncode == 1 and "No task is paused" in listing.stdout


def test_quit_stops_the_task_with_bdbquit(dbg: DebugCluster) -> None:
    drv = dbg.driver("breakpoint")
    drv.expect_exact(PAUSED)
    client = dbg.debug("0")
    client.expect(PROMPT)
    client.sendline("q")
    _finish(client)
    drv.expect(r"ERROR (.*)\r?\n")
    error = drv.match.group(1)
    assert "BdbQuit" in error and "was quit" in error, error
    _finish(drv)
    assert dbg.sessions() == []


def test_post_mortem_session_then_the_original_exception(dbg: DebugCluster) -> None:
    drv = dbg.driver("post_mortem")
    drv.expect_exact(PAUSED)
    listing = dbg.run_cli("debug", "--list")
    assert "post-mortem: ZeroDivisionError: division by zero" in listing.stdout, listing.stdout
    client = dbg.debug()
    client.expect(PROMPT)
    client.sendline("p ratio_input")
    client.expect(PROMPT)
    assert client.before.strip().splitlines()[-1] == "(1, 0)"
    client.sendline("c")
    assert "fails with its exception" in _finish(client)
    drv.expect(r"ERROR (.*)\r?\n")
    assert drv.match.group(1).startswith("ZeroDivisionError"), drv.match.group(1)
    _finish(drv)
    assert dbg.sessions() == []


def test_a_peer_without_the_token_is_dropped_unread(dbg: DebugCluster, tmp_path: Path) -> None:
    drv = dbg.driver("breakpoint")
    drv.expect_exact(PAUSED)
    [session] = dbg.sessions()
    host, port = session["address"][4:].rsplit(":", 1)
    marker = tmp_path / "pwned"
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(f"!open({str(marker)!r}, 'w').close()\nc\n".encode() * 8)
        received = b""
        try:
            while chunk := s.recv(4096):
                received += chunk
        except ConnectionResetError:   # dropped with our bytes unread
            pass
    assert b"pdb" not in received       # no prompt: it was never given a debugger
    with pytest.raises(AuthenticationError):
        connection.connect(session["address"], b"not the cluster token").close()
    assert not marker.exists()
    # still paused, nobody attached: the real client gets it
    [still] = dbg.sessions()
    assert still["session_id"] == session["session_id"] and not still["attached"]
    client = dbg.debug("--session", session["session_id"][:6])
    client.expect(PROMPT)
    client.sendline("c")
    _finish(client)
    drv.expect(r"RESULT (\d+)")
    assert drv.match.group(1) == "43"
    _finish(drv)
    assert not marker.exists()


def test_a_session_whose_worker_died_is_removed(dbg: DebugCluster) -> None:
    drv = dbg.driver("breakpoint")
    drv.expect(r"\(compute pid=(\d+)\) swarm: compute is paused")
    os.kill(int(drv.match.group(1)), signal.SIGKILL)
    drv.expect(r"ERROR (.*)\r?\n")      # max_retries=0: the crash is the task's result
    assert "WorkerCrashedError" in drv.match.group(1)
    _finish(drv)
    listing = dbg.run_cli("debug")
    assert re.search(r"removed the session of compute \(pid \d+\): its worker process is gone",
                     listing.stderr), listing.stderr
    assert "No task is paused" in listing.stdout and "breakpoint()" in listing.stdout
    assert listing.returncode == 1
    assert dbg.sessions() == []


def test_a_paused_task_whose_driver_exits_is_stopped(dbg: DebugCluster) -> None:
    drv = dbg.driver("breakpoint")
    drv.expect(r"\(compute pid=(\d+)\) swarm: compute is paused")
    worker = int(drv.match.group(1))
    assert len(dbg.sessions()) == 1
    drv.kill(signal.SIGKILL)            # nobody will ever want this task's result now
    drv.close(force=True)
    deadline = time.monotonic() + 30
    while dbg.sessions() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert dbg.sessions() == []         # closed unused, not left paused forever
    assert psutil.pid_exists(worker)    # and the worker lives on for other tasks


def test_tasks_of_a_local_cluster_can_be_debugged_too(dbg: DebugCluster) -> None:
    # init() without an address: no address for the CLI to find, a token only the driver knows; the
    # sessions are announced in files only this user can read. Post-mortem is asked for by the
    # driver's environment, which the workers of its cluster inherit.
    drv = dbg.driver("local", SWARM_DEBUG_POST_MORTEM="1")
    drv.expect_exact(PAUSED)
    [announced] = list((dbg.tmp / "debugger").glob("*.json"))
    assert announced.stat().st_mode & 0o077 == 0
    client = dbg.debug()
    client.expect(r"compute .* local ")
    client.expect(PROMPT)
    client.sendline("p secret_value")
    client.expect(PROMPT)
    assert client.before.strip().splitlines()[-1] == "42"
    client.sendline("c")
    _finish(client)
    drv.expect(r"RESULT (\d+)")
    assert drv.match.group(1) == "43"
    drv.expect_exact(PAUSED)            # then divide(1, 0) raises: a post-mortem session
    client = dbg.debug()
    client.expect(PROMPT)
    client.sendline("p ratio_input")
    client.expect(PROMPT)
    assert client.before.strip().splitlines()[-1] == "(1, 0)"
    client.sendline("q")
    _finish(client)
    drv.expect(r"ERROR (.*)\r?\n")
    assert drv.match.group(1).startswith("ZeroDivisionError"), drv.match.group(1)
    _finish(drv)
    assert drv.exitstatus == 0
    assert not list((dbg.tmp / "debugger").glob("*.json"))


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:   # gone, possibly between two looks
        return False
