"""What tasks print reaches the driver, prefixed with where it came from, and lands in log files.

Each test runs a driver script in a subprocess so its real stdout/stderr can be captured.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import swarm

SRC = str(Path(__file__).resolve().parents[2] / "src")

DRIVER = textwrap.dedent("""
    import json, os, sys, time
    import swarm

    log_to_driver = sys.argv[1] == "1"

    class Tee:
        # records what reaches this stream, so the script knows when a worker's line has arrived
        def __init__(self, raw):
            self.raw, self.seen = raw, []
        def write(self, s):
            self.seen.append(s)
            return self.raw.write(s)
        def flush(self):
            self.raw.flush()
        def __getattr__(self, name):
            return getattr(self.raw, name)
        def text(self):
            return "".join(self.seen)

    sys.stdout, sys.stderr = Tee(sys.stdout), Tee(sys.stderr)
    swarm.init(num_cpus=2, log_to_driver=log_to_driver, _keep_session_dir=True)
    session_dir = swarm.api._worker.node_info["session_dir"]

    @swarm.remote
    def chatty_task(n):
        for i in range(n):
            print(f"hello from task {i}" if i else "hello from task")
        print("trouble on stderr", file=sys.stderr)
        return os.getpid()

    pid = swarm.get(chatty_task.remote(3))

    def in_log_files(text):
        logs = os.path.join(session_dir, "logs")
        for name in os.listdir(logs):
            with open(os.path.join(logs, name), errors="replace") as f:
                if text in f.read():
                    return True
        return False

    deadline = time.monotonic() + 30
    if log_to_driver:   # wait for the forwarded lines (they are asynchronous to get())
        while time.monotonic() < deadline and not (
                "hello from task 2" in sys.stdout.text() and "trouble on stderr" in sys.stderr.text()):
            time.sleep(0.02)
    else:               # the node manager has handled the output once it is in the files ...
        while time.monotonic() < deadline and not (
                in_log_files("hello from task 2") and in_log_files("trouble on stderr")):
            time.sleep(0.02)
        time.sleep(1.0)   # ... and anything it forwarded would have arrived by now
    print("BEFORE_SHUTDOWN " + json.dumps({"pid": pid, "session_dir": session_dir}), flush=True)
    print("BEFORE_SHUTDOWN", file=sys.stderr, flush=True)
    swarm.shutdown()
    print("AFTER_SHUTDOWN", flush=True)
""")


def run_driver(log_to_driver: bool) -> tuple[str, str, dict]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, env.get("PYTHONPATH")) if p)
    env.pop("SWARM_KEEP_SESSION_DIR", None)
    env["PYTHONFAULTHANDLER"] = "1"
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, "1" if log_to_driver else "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)          # faulthandler dumps every thread's stack
        try:
            stdout, stderr = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            try:
                stdout, stderr = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                stdout, stderr = "", "(no output: a descendant holds the driver's stdout/stderr open)"
        pytest.fail(f"the driver script hung for 120 s:\n{stdout}\n{stderr}")
    info: dict = {}
    for line in stdout.splitlines():
        if line.startswith("BEFORE_SHUTDOWN "):
            info = json.loads(line.split(" ", 1)[1])
    if info.get("session_dir"):
        run_driver.session_dirs.append(info["session_dir"])  # type: ignore[attr-defined]
    assert proc.returncode == 0, f"driver failed ({proc.returncode}):\n{stdout}\n{stderr}"
    assert info, stdout
    assert "AFTER_SHUTDOWN" in stdout
    return stdout, stderr, info


run_driver.session_dirs = []  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _remove_kept_session_dirs():
    yield
    for d in run_driver.session_dirs:  # type: ignore[attr-defined]
        shutil.rmtree(d, ignore_errors=True)
    run_driver.session_dirs.clear()  # type: ignore[attr-defined]


def before_shutdown(text: str) -> list[str]:
    """The lines printed before the driver called shutdown()."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("BEFORE_SHUTDOWN"):
            return lines[:i]
    pytest.fail(f"no BEFORE_SHUTDOWN marker in:\n{text}")


def log_files_containing(session_dir: str, text: str) -> list[Path]:
    logs = Path(session_dir) / "logs"
    return [p for p in logs.rglob("*") if p.is_file() and text in p.read_text(errors="replace")]


def test_task_output_reaches_driver_with_prefix_before_shutdown():
    stdout, stderr, info = run_driver(log_to_driver=True)
    pid = info["pid"]
    out = before_shutdown(stdout)
    assert f"(chatty_task pid={pid}) hello from task" in out, stdout
    assert f"(chatty_task pid={pid}) hello from task 1" in out
    assert f"(chatty_task pid={pid}) hello from task 2" in out
    # in the order the task printed them, each exactly once
    idx = [out.index(f"(chatty_task pid={pid}) hello from task" + s) for s in ("", " 1", " 2")]
    assert idx == sorted(idx)
    assert sum("hello from task" in line for line in stdout.splitlines()) == 3
    # stderr of the task goes to the driver's stderr, not its stdout
    err = before_shutdown(stderr)
    assert f"(chatty_task pid={pid}) trouble on stderr" in err, stderr
    assert "trouble on stderr" not in stdout


def test_task_output_is_kept_in_session_log_files():
    _, _, info = run_driver(log_to_driver=True)
    session_dir = info["session_dir"]
    assert os.path.isdir(session_dir), "_keep_session_dir=True should keep the session dir"
    logs = Path(session_dir) / "logs"
    assert logs.is_dir()
    out_files = log_files_containing(session_dir, "hello from task 2")
    err_files = log_files_containing(session_dir, "trouble on stderr")
    assert out_files, sorted(p.name for p in logs.iterdir())
    assert err_files, sorted(p.name for p in logs.iterdir())
    for p in out_files + err_files:
        assert logs in p.parents
    # the files hold the raw lines, in order
    text = out_files[0].read_text()
    positions = [text.index(f"hello from task{s}\n") for s in ("", " 1", " 2")]
    assert positions == sorted(positions)


def test_log_to_driver_false_keeps_output_away_from_driver_but_in_files():
    stdout, stderr, info = run_driver(log_to_driver=False)
    assert "hello from task" not in stdout, stdout
    assert "trouble on stderr" not in stderr, stderr
    assert f"pid={info['pid']})" not in stdout + stderr
    assert log_files_containing(info["session_dir"], "hello from task 2")
    assert log_files_containing(info["session_dir"], "trouble on stderr")


def test_kept_session_dir_survives_the_next_init(isolated):
    swarm.init(num_cpus=1, _keep_session_dir=True)
    kept = swarm.api._worker.node_info["session_dir"]
    run_driver.session_dirs.append(kept)  # type: ignore[attr-defined]
    swarm.shutdown()
    assert os.path.isdir(kept)
    swarm.init(num_cpus=1)
    swarm.shutdown()
    assert os.path.isdir(os.path.join(kept, "logs")), "the logs the user asked to keep were deleted"


PARTIAL_LINE_DRIVER = textwrap.dedent("""
    import os, sys, time
    import swarm

    swarm.init(num_cpus=1)

    @swarm.remote
    def first():
        print("partial", end="", flush=True)      # no newline
        return os.getpid()

    @swarm.remote
    def second():
        print("line of second")
        return os.getpid()

    for _ in range(20):                           # until both ran in the same worker
        a = swarm.get(first.remote())
        time.sleep(0.2)
        b = swarm.get(second.remote())
        if a == b:
            break
    print(f"SAME_WORKER {a == b} {b}", flush=True)
    time.sleep(1.0)                               # let the forwarded lines arrive
    swarm.shutdown()
""")


def test_unterminated_line_does_not_mislabel_the_next_task():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, env.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, "-c", PARTIAL_LINE_DRIVER], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "SAME_WORKER True" in proc.stdout, proc.stdout
    assert "\x1e" not in proc.stdout, repr(proc.stdout)
    lines = [line for line in proc.stdout.splitlines() if "line of second" in line]
    assert lines and all(line.startswith("(second pid=") for line in lines), lines
