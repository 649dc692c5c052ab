"""Cluster workloads of ``swarm microbenchmark``: three nodes started with ``swarm start`` on loopback
addresses (127.0.0.1-3), each a separate node manager with its own shared memory, so every transfer
really crosses TCP.

    cluster_tasks_async     10,000 no-op tasks with scheduling_strategy="SPREAD"       tasks/s
    transfer_gbps           100 MB produced on node B, consumed on node C              GB/s
    node_failure_recovery_s SIGKILL a node's manager while its tasks run: seconds until
                            every task has finished elsewhere (retries)                s
    head_restart_s          head on Redis storage SIGKILLed and started again: seconds from
                            `swarm start --head` until node B is back and a detached
                            named actor on B answers through the new head              s
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

from swarm.microbenchmark import CALL_TIMEOUT_S, Config, Result, swarm, timed


class ThreeNodes:
    """A head (1 CPU) and two nodes (2 CPUs each, resources b and c) for the duration of a block."""

    def __init__(self, head_args: tuple[str, ...] = (), driver_on: str = "127.0.0.1") -> None:
        self.head_args = head_args
        self.driver_on = driver_on

    def __enter__(self) -> ThreeNodes:
        self.tmp = tempfile.mkdtemp(prefix="swarm-bench-")
        self.env = dict(os.environ, SWARM_TEMP_DIR=self.tmp)
        self.port = port = 20000 + os.getpid() % 20000
        self._cli("start", "--head", "--port", str(port), "--num-cpus", "1", "--no-dashboard",
                  *self.head_args)
        for ip, res in (("127.0.0.2", '{"b": 1}'), ("127.0.0.3", '{"c": 1}')):
            self._cli("start", "--address", f"127.0.0.1:{port}", "--node-ip-address", ip, "--num-cpus", "2",
                      "--resources", res)
        from swarm import _config
        self.old_temp = _config.CONFIG.temp_dir
        _config.CONFIG.temp_dir = self.tmp
        driver_port = port if self.driver_on == "127.0.0.1" else self.node_port(self.driver_on)
        swarm.init(address=f"{self.driver_on}:{driver_port}")
        deadline = time.monotonic() + 30
        while sum(n["Alive"] for n in swarm.nodes()) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        return self

    def _cli(self, *args: str) -> None:
        subprocess.run([sys.executable, "-m", "swarm.cli", *args], env=self.env, check=True,
                       stdout=subprocess.DEVNULL, timeout=120)

    def _node_file(self, ip: str) -> dict:
        for name in os.listdir(os.path.join(self.tmp, "nodes")):
            with open(os.path.join(self.tmp, "nodes", name)) as f:
                info = json.load(f)
            if info["tcp_address"].startswith(f"tcp:{ip}:"):
                return info
        raise LookupError(ip)

    def node_pid(self, ip: str) -> int:
        return int(self._node_file(ip)["pid"])

    def node_port(self, ip: str) -> int:
        return int(self._node_file(ip)["tcp_address"].rsplit(":", 1)[1])

    def __exit__(self, *exc: Any) -> None:
        from swarm import _config
        swarm.shutdown()
        _config.CONFIG.temp_dir = self.old_temp
        self._cli("stop")


def noop() -> None:
    return None


def make_array(nbytes: int) -> Any:
    import numpy as np
    return np.ones(nbytes // 8)


def checksum(a: Any) -> float:
    return float(a[::4096].sum())


def sleepy(s: float) -> str:
    time.sleep(s)
    return swarm.get_runtime_context().get_node_id()


def bench_cluster_tasks_async(cfg: Config) -> Result:
    with ThreeNodes():
        f = swarm.remote(noop).options(scheduling_strategy="SPREAD")
        swarm.get([f.remote() for _ in range(100)], timeout=CALL_TIMEOUT_S)
        n = cfg.pick(10_000, 2_000)
        samples = [n / timed(lambda: swarm.get([f.remote() for _ in range(n)], timeout=CALL_TIMEOUT_S))
                   for _ in range(cfg.pick(3, 2))]
    return Result("cluster_tasks_async", "tasks/s", samples, f"{n} no-ops, SPREAD over 3 nodes")


def bench_transfer_gbps(cfg: Config) -> Result:
    with ThreeNodes():
        make = swarm.remote(make_array).options(resources={"b": 1})
        consume = swarm.remote(checksum).options(resources={"c": 1})
        swarm.get(consume.remote(make.remote(1 << 20)), timeout=CALL_TIMEOUT_S)  # warm both workers
        nbytes = 100_000_000
        gbps = []
        for _ in range(cfg.pick(3, 2)):
            ref = make.remote(nbytes)
            swarm.wait([ref], timeout=CALL_TIMEOUT_S)
            t0 = time.perf_counter()
            swarm.get(consume.remote(ref), timeout=CALL_TIMEOUT_S)
            gbps.append(nbytes / GB / (time.perf_counter() - t0))
            del ref
    return Result("transfer_gbps", "GB/s", gbps,
                  "100 MB made on node B, read by a task on node C (includes the task's round trip)")


def bench_node_failure_recovery(cfg: Config) -> Result:
    with ThreeNodes() as nodes:
        work = swarm.remote(sleepy).options(max_retries=3)
        swarm.get([work.remote(0.0) for _ in range(10)], timeout=CALL_TIMEOUT_S)
        refs = [work.remote(1.0) for _ in range(10)]
        time.sleep(0.3)
        t0 = time.perf_counter()
        os.kill(nodes.node_pid("127.0.0.2"), signal.SIGKILL)
        swarm.get(refs, timeout=CALL_TIMEOUT_S)
        recovery = time.perf_counter() - t0
    return Result("node_failure_recovery_s", "s", [recovery],
                  "10 x 1 s tasks over 3 nodes, node B's manager SIGKILLed 0.3 s in: seconds until all "
                  "finished (retried elsewhere)")


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def inc(self) -> int:
        self.n += 1
        return self.n


def bench_head_restart(cfg: Config) -> Result:
    import shutil
    import socket

    import psutil
    exe = shutil.which("redis-server")
    if exe is None:
        return Result("head_restart_s", "s", error="redis-server is not installed (make sysdeps)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        redis_port = sock.getsockname()[1]
    redis = subprocess.Popen([exe, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no"], stdout=subprocess.DEVNULL)
    storage = f"redis://127.0.0.1:{redis_port}/0"
    try:
        time.sleep(0.3)
        with ThreeNodes(head_args=("--storage", storage), driver_on="127.0.0.2") as nodes:
            counter = swarm.remote(Counter).options(name="bench-counter", lifetime="detached",
                                                    resources={"b": 0.01}).remote()
            swarm.get(counter.inc.remote(), timeout=CALL_TIMEOUT_S)
            head = psutil.Process(nodes.node_pid("127.0.0.1"))
            tree = [head] + head.children(recursive=True)
            for p in tree:
                p.kill()
            psutil.wait_procs(tree, timeout=10)
            t0 = time.perf_counter()
            nodes._cli("start", "--head", "--port", str(nodes.port), "--num-cpus", "1", "--no-dashboard",
                       "--storage", storage)
            started = time.perf_counter() - t0
            deadline = time.monotonic() + 60
            while sum(n["Alive"] for n in swarm.nodes()) < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            back = swarm.get_actor("bench-counter")
            assert swarm.get(back.inc.remote(), timeout=CALL_TIMEOUT_S) == 2
            recovery = time.perf_counter() - t0
            swarm.kill(back)
    finally:
        redis.terminate()
        redis.wait(10)
    return Result("head_restart_s", "s", [recovery],
                  f"head (Redis storage) SIGKILLed and restarted; `swarm start` took {started:.2f} s of it; "
                  f"until both nodes are back and a detached actor on B answers by name")


GB = 1e9

WORKLOADS = {
    "cluster_tasks_async": bench_cluster_tasks_async,
    "transfer_gbps": bench_transfer_gbps,
    "node_failure_recovery_s": bench_node_failure_recovery,
    "head_restart_s": bench_head_restart,
}
