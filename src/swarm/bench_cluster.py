"""Cluster workloads of ``swarm microbenchmark``: three nodes started with ``swarm start`` on loopback
addresses (127.0.0.1-3), each a separate node manager with its own shared memory, so every transfer
really crosses TCP.

    cluster_tasks_async     10,000 no-op tasks with scheduling_strategy="SPREAD"       tasks/s
    transfer_gbps           100 MB produced on node B, consumed on node C              GB/s
    node_failure_recovery_s SIGKILL a node's manager while its tasks run: seconds until
                            every task has finished elsewhere (retries)                s
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

    def __enter__(self) -> ThreeNodes:
        self.tmp = tempfile.mkdtemp(prefix="swarm-bench-")
        self.env = dict(os.environ, SWARM_TEMP_DIR=self.tmp)
        port = 20000 + os.getpid() % 20000
        self._cli("start", "--head", "--port", str(port), "--num-cpus", "1")
        for ip, res in (("127.0.0.2", '{"b": 1}'), ("127.0.0.3", '{"c": 1}')):
            self._cli("start", "--address", f"127.0.0.1:{port}", "--node-ip-address", ip, "--num-cpus", "2",
                      "--resources", res)
        from swarm import _config
        self.old_temp = _config.CONFIG.temp_dir
        _config.CONFIG.temp_dir = self.tmp
        swarm.init(address=f"127.0.0.1:{port}")
        deadline = time.monotonic() + 30
        while sum(n["Alive"] for n in swarm.nodes()) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        return self

    def _cli(self, *args: str) -> None:
        subprocess.run([sys.executable, "-m", "swarm.cli", *args], env=self.env, check=True,
                       stdout=subprocess.DEVNULL, timeout=120)

    def node_pid(self, ip: str) -> int:
        for name in os.listdir(os.path.join(self.tmp, "nodes")):
            with open(os.path.join(self.tmp, "nodes", name)) as f:
                info = json.load(f)
            if info["tcp_address"].startswith(f"tcp:{ip}:"):
                return int(info["pid"])
        raise LookupError(ip)

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


GB = 1e9

WORKLOADS = {
    "cluster_tasks_async": bench_cluster_tasks_async,
    "transfer_gbps": bench_transfer_gbps,
    "node_failure_recovery_s": bench_node_failure_recovery,
}
