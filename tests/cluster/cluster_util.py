"""Helpers of the cluster tests: a 3-node cluster on loopback driven through the ``swarm`` CLI.

``Cluster`` starts nodes with ``swarm start``, finds them through their node files, and keeps the
pids of every process the cluster ever had so teardown can check that none is left.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

import swarm
from swarm import _config

NODE_SPECS = {
    "head": {"ip": "127.0.0.1", "num_cpus": 1, "resources": {}},
    "b": {"ip": "127.0.0.2", "num_cpus": 2, "resources": {"b": 1}},
    "c": {"ip": "127.0.0.3", "num_cpus": 2, "resources": {"c": 1}},
}
CLI = [sys.executable, "-m", "swarm.cli"]
SRC = str(Path(__file__).resolve().parents[2] / "src")


def free_port(ip: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def wait_for(predicate: Any, timeout: float, interval: float = 0.1, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@dataclasses.dataclass
class Cluster:
    temp_dir: Path
    env: dict
    head_port: int
    nodes: dict = dataclasses.field(default_factory=dict)   # label -> node file contents
    pids: set = dataclasses.field(default_factory=set)      # every process of the cluster ever seen

    @property
    def head_address(self) -> str:
        return f"127.0.0.1:{self.head_port}"

    @property
    def token_file(self) -> Path:
        return self.temp_dir / "cluster_token"

    def node_id(self, label: str) -> str:
        return self.nodes[label]["node_id"]

    def cli(self, *args: str, env: dict | None = None, timeout: float = 60,
            check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(CLI + list(args), env=env or self.env, capture_output=True, text=True,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"swarm {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n"
                                 f"{proc.stderr}")
        return proc

    def node_files(self) -> dict[str, dict]:
        out = {}
        for p in (self.temp_dir / "nodes").glob("*.json"):
            try:
                info = json.loads(p.read_text())
            except (OSError, ValueError):
                continue
            out[info["node_id"]] = info
        return out

    def start_node(self, label: str, *extra: str) -> dict:
        spec = NODE_SPECS[label]
        before = set(self.node_files())
        args = ["start", "--node-ip-address", spec["ip"], "--num-cpus", str(spec["num_cpus"])]
        if spec["resources"]:
            args += ["--resources", json.dumps(spec["resources"])]
        if label == "head":
            args += ["--head", "--port", str(self.head_port)]
            if "--include-dashboard" not in extra:
                args.append("--no-dashboard")   # (its own tests start one; heads here would share 8265)
        else:
            args += ["--address", self.head_address]
        self.cli(*args, *extra)
        new = [info for nid, info in self.node_files().items() if nid not in before]
        assert len(new) == 1, f"swarm start wrote {len(new)} node files"
        self.nodes[label] = new[0]
        self.pids.add(new[0]["pid"])
        return new[0]

    def record_pids(self) -> set:
        """Node managers of this cluster and all their descendants (workers, object servers, ...)."""
        for info in self.node_files().values():
            self.pids.add(info["pid"])
            try:
                self.pids.update(c.pid for c in psutil.Process(info["pid"]).children(recursive=True))
            except psutil.Error:
                pass
        return self.pids

    def descendants(self, label: str) -> set:
        pid = self.nodes[label]["pid"]
        try:
            return {pid} | {c.pid for c in psutil.Process(pid).children(recursive=True)}
        except psutil.Error:
            return {pid}

    def alive_node_ids(self) -> set:
        return {n["NodeID"] for n in swarm.nodes() if n["Alive"]}

    def attach(self) -> None:
        if not swarm.is_initialized():
            swarm.init(address=self.head_address)

    def wait_alive(self, labels: list[str], timeout: float = 20.0) -> None:
        want = {self.node_id(lb) for lb in labels}
        wait_for(lambda: want <= self.alive_node_ids(), timeout, what=f"nodes {sorted(want)} alive")

    def kill_node(self, label: str) -> set:
        """SIGKILL a node's node manager; returns the pids of its process tree before the kill."""
        tree = self.descendants(label)
        self.pids.update(tree)
        os.kill(self.nodes[label]["pid"], signal.SIGKILL)
        return tree




SAVED_ENV = ("SWARM_TEMP_DIR", "SWARM_TOKEN", "SWARM_TOKEN_FILE", "SWARM_ADDRESS")


@contextlib.contextmanager
def cluster_in(temp_dir: Path) -> Iterator[Cluster]:
    """A Cluster (no node started yet) whose nodes, this process and the CLI all use ``temp_dir``, so it
    never meets another run's nodes. On exit: the driver detaches, ``swarm stop`` runs, the environment
    is restored, and then no process of the cluster and no node file may be left."""
    saved_env = {k: os.environ.get(k) for k in SAVED_ENV}
    saved_temp = _config.CONFIG.temp_dir
    if swarm.is_initialized():      # a local cluster of other tests: not ours to keep attached
        swarm.shutdown()
    for k in saved_env:
        os.environ.pop(k, None)
    os.environ["SWARM_TEMP_DIR"] = str(temp_dir)
    _config.CONFIG.temp_dir = str(temp_dir)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, env.get("PYTHONPATH")) if p)
    cluster = Cluster(temp_dir=temp_dir, env=env, head_port=free_port())
    try:
        yield cluster
    finally:
        try:
            swarm.shutdown()
        finally:
            cluster.record_pids()
            stop = cluster.cli("stop", check=False)
            _config.CONFIG.temp_dir = saved_temp
            for k, v in saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    assert stop.returncode == 0, stop.stderr
    deadline = time.monotonic() + 10
    while any(alive(p) for p in cluster.pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = sorted(p for p in cluster.pids if alive(p))
    assert not left, f"processes of the test cluster left after `swarm stop`: {left}"
    assert not list((temp_dir / "nodes").glob("*.json")), "node files left after `swarm stop`"
