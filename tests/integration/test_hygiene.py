"""Nothing a cluster started outlives it: processes, the session directory, shared memory, temp dirs.

Real processes and real kills: in-process ``init``/``shutdown``, and driver scripts in subprocesses
that raise, exit without ``shutdown()``, ``os._exit`` or are SIGKILLed.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

import swarm
from swarm._config import CONFIG

SRC = str(Path(__file__).resolve().parents[2] / "src")
SHM = "/dev/shm"
GONE_TIMEOUT_S = 10.0


# -- helpers --------------------------------------------------------------------------------------
def wait_until(predicate, timeout: float = GONE_TIMEOUT_S, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return predicate()
        time.sleep(interval)


def is_alive(proc: psutil.Process) -> bool:
    """Running (not a zombie) and the same process (pid not reused: psutil checks create time)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def is_alive_pid(pid: int, create_time: float) -> bool:
    try:
        p = psutil.Process(pid)
        if abs(p.create_time() - create_time) > 0.05:
            return False                      # the pid was reused by an unrelated process
        return p.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def describe(procs) -> str:
    out = []
    for p in procs:
        try:
            out.append(f"{p.pid} {p.status()} {' '.join(p.cmdline())[:100]}")
        except psutil.Error:
            out.append(f"{p.pid} (gone)")
    return "; ".join(out)


def descendants() -> set[psutil.Process]:
    return set(psutil.Process().children(recursive=True))


def shm_entries() -> set[str]:
    try:
        return set(os.listdir(SHM))
    except FileNotFoundError:
        return set()


def swarm_like(names: set[str]) -> set[str]:
    return {n for n in names if "swarm" in n.lower()}


def temp_entries() -> set[str]:
    try:
        return set(os.listdir(CONFIG.temp_dir))
    except FileNotFoundError:
        return set()


_SESSION_PID = re.compile(r"_(\d+)_[0-9a-f]+$")


def leftover_temp_entries(before: set[str]) -> set[str]:
    """Entries added under the temp dir since ``before``, minus live sessions of *other* drivers
    (another test run on this machine may be running a cluster right now)."""
    new = temp_entries() - before
    mine = {os.getpid()} | {p.pid for p in descendants()}
    left = set()
    for name in new:
        m = _SESSION_PID.search(name)
        if m and int(m.group(1)) not in mine and psutil.pid_exists(int(m.group(1))):
            continue
        left.add(name)
    return left


@swarm.remote
def double(x):
    return 2 * x


@swarm.remote
def start_grandchild():
    """A task that leaves a process of its own running: it must not outlive the cluster either."""
    p = subprocess.Popen(["sleep", "300"])
    return p.pid


@swarm.remote
def nested(n):
    return sum(swarm.get([double.remote(i) for i in range(n)]))


# -- in-process init / shutdown --------------------------------------------------------------------
def test_shutdown_leaves_no_process_and_removes_session_dir(isolated):
    num_tasks = 20
    before = descendants()
    swarm.init(num_cpus=2)
    session_dir = swarm.api._worker.node_info["session_dir"]
    assert os.path.isdir(session_dir)
    procs = descendants() - before
    assert procs, "init() started no process?"

    assert swarm.get([double.remote(i) for i in range(num_tasks)]) == [2 * i for i in range(num_tasks)]
    assert swarm.get(nested.remote(5)) == 20
    big = swarm.put(b"x" * (4 << 20))                 # lands in the shared-memory store
    assert len(swarm.get(big)) == 4 << 20
    grandchild = psutil.Process(swarm.get(start_grandchild.remote()))
    procs |= descendants() - before
    assert grandchild in procs

    swarm.shutdown()
    assert not swarm.is_initialized()
    assert wait_until(lambda: not any(is_alive(p) for p in procs)), \
        f"still alive after shutdown: {describe(p for p in procs if is_alive(p))}"
    assert wait_until(lambda: not os.path.exists(session_dir)), f"{session_dir} left behind"


def test_shutdown_leaves_no_shared_memory_or_temp_dirs(isolated):
    shm_before = shm_entries()
    tmp_before = temp_entries()
    for _ in range(3):
        swarm.init(num_cpus=2)
        assert swarm.get([double.remote(i) for i in range(5)]) == [0, 2, 4, 6, 8]
        swarm.get(swarm.put(bytes(2 << 20)))
        swarm.shutdown()
    assert wait_until(lambda: not leftover_temp_entries(tmp_before)), \
        f"left under {CONFIG.temp_dir}: {sorted(leftover_temp_entries(tmp_before))}"
    others = (temp_entries() - tmp_before) - leftover_temp_entries(tmp_before)  # other live drivers
    assert len(temp_entries() - others) <= len(tmp_before)
    assert not swarm_like(shm_entries() - shm_before), sorted(shm_entries() - shm_before)


def test_shutdown_twice_and_reinit_is_clean(isolated):
    swarm.init(num_cpus=2)
    first = swarm.api._worker.node_info["session_dir"]
    swarm.shutdown()
    swarm.shutdown()                                   # a no-op
    swarm.init(num_cpus=2)
    second = swarm.api._worker.node_info["session_dir"]
    assert second != first
    assert swarm.get(double.remote(21)) == 42
    swarm.shutdown()
    assert wait_until(lambda: not os.path.exists(second))
    assert not os.path.exists(first)


def test_task_capturing_a_used_remote_function_can_be_submitted(isolated):
    # regression: RemoteFunction used to pickle its session cache (the CoreWorker, with an RLock)
    swarm.init(num_cpus=2)

    @swarm.remote
    def leaf(x):
        return x + 1

    @swarm.remote
    def caller(x):
        return swarm.get(leaf.remote(x))

    assert swarm.get(leaf.remote(1)) == 2        # leaf has been used in this session ...
    assert swarm.get(caller.remote(1)) == 2      # ... so pickling caller (which captures leaf) fails


# -- driver in a subprocess ------------------------------------------------------------------------
DRIVER = textwrap.dedent("""
    import json, os, subprocess, sys, time
    import psutil
    import swarm

    mode = sys.argv[1]
    swarm.init(num_cpus=2)

    @swarm.remote
    def double(x):
        return 2 * x

    @swarm.remote
    def start_grandchild():
        return subprocess.Popen(["sleep", "300"]).pid

    assert swarm.get([double.remote(i) for i in range(20)]) == [2 * i for i in range(20)]
    big = swarm.put(b"x" * (4 << 20))
    assert len(swarm.get(big)) == 4 << 20
    grandchild = swarm.get(start_grandchild.remote())
    procs = psutil.Process().children(recursive=True)
    info = {"session_dir": swarm.api._worker.node_info["session_dir"],
            "procs": [[p.pid, p.create_time()] for p in procs], "grandchild": grandchild}
    print("INFO " + json.dumps(info), flush=True)

    if mode == "raise":
        raise RuntimeError("the driver fails on purpose")
    elif mode == "exit":
        sys.exit(0)                    # no shutdown(): atexit must clean up
    elif mode == "os_exit":
        os._exit(3)                    # no atexit at all
    elif mode == "sigkill":
        time.sleep(600)                # the test kills us
""")


def run_driver(mode: str) -> tuple[subprocess.Popen, dict]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, mode], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, text=True)
    lines: queue.Queue = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + 60
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            proc.kill()
            pytest.fail("the driver script did not report within 60 s")
        if line is None:
            proc.wait()
            err = proc.stderr.read() if proc.stderr else ""
            pytest.fail(f"the driver script exited ({proc.returncode}) without reporting:\n{err}")
        if line.startswith("INFO "):
            return proc, json.loads(line[5:])


@pytest.mark.parametrize("mode", ["raise", "sigkill", "exit", "os_exit"])
def test_driver_death_leaves_nothing_behind(mode):
    shm_before = shm_entries()
    tmp_before = temp_entries()
    proc, info = run_driver(mode)
    try:
        procs = info["procs"]
        assert len(procs) >= 2, procs                  # at least the node manager and a worker
        assert info["grandchild"] in [pid for pid, _ in procs]
        assert os.path.isdir(info["session_dir"])
        if mode == "sigkill":
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(60)
        stderr = proc.stderr.read() if proc.stderr else ""
        if mode == "raise":
            assert proc.returncode == 1
            assert "the driver fails on purpose" in stderr
        elif mode == "sigkill":
            assert proc.returncode == -signal.SIGKILL
        elif mode == "exit":
            assert proc.returncode == 0, stderr
        else:
            assert proc.returncode == 3

        def alive() -> list:
            return [pid for pid, ct in procs if is_alive_pid(pid, ct)]

        assert wait_until(lambda: not alive()), \
            f"still alive {GONE_TIMEOUT_S:.0f} s after the driver died ({mode}): " \
            f"{describe(psutil.Process(pid) for pid in alive())}"
        assert wait_until(lambda: not os.path.exists(info["session_dir"])), \
            f"{info['session_dir']} left behind after the driver died ({mode})"
        assert not swarm_like(shm_entries() - shm_before), sorted(shm_entries() - shm_before)
        assert not leftover_temp_entries(tmp_before), sorted(leftover_temp_entries(tmp_before))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid, ct in info.get("procs", []):   # never leave strays to the next test
            if is_alive_pid(pid, ct):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
