"""Shared fixtures: one local cluster for the whole session (2 CPUs, 1 logical GPU, a custom
resource), restarted only by tests that need their own configuration."""

from __future__ import annotations

import pytest

import swarm

DEFAULT_CLUSTER = {"num_cpus": 2, "num_gpus": 1, "resources": {"custom": 1}}


def _own_local_cluster() -> bool:
    return swarm.is_initialized() and swarm.api._node_proc is not None


@pytest.fixture
def cluster():
    """The shared local cluster (started on first use)."""
    if swarm.is_initialized() and not _own_local_cluster():
        swarm.shutdown()   # attached to some other cluster (e.g. the multi-node tests'): not this one
    if not swarm.is_initialized():
        swarm.init(**DEFAULT_CLUSTER)
    yield
    if not swarm.is_initialized():  # a test shut it down: bring it back for the next one
        swarm.init(**DEFAULT_CLUSTER)


@pytest.fixture
def isolated():
    """No cluster running: the test calls init() itself; anything it starts is stopped after."""
    if swarm.is_initialized():
        swarm.shutdown()
    yield
    if swarm.is_initialized():
        swarm.shutdown()


@pytest.fixture(scope="session", autouse=True)
def _shutdown_at_end():
    yield
    swarm.shutdown()


@pytest.fixture(scope="session")
def start_redis():
    """``start_redis(port) -> Popen``: a real redis-server on loopback (no disk snapshots), answering
    before it returns; every one still running is stopped at the end of the session."""
    import shutil
    import socket
    import subprocess
    import time

    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not installed: run `make sysdeps` (or apt-get install redis-server)")
    started: list[subprocess.Popen] = []

    def start(port: int) -> subprocess.Popen:
        proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(proc)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return proc
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise AssertionError(f"redis-server did not answer on port {port}")
            time.sleep(0.05)
    yield start
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)
