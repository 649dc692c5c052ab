"""A private two-host test network: a network namespace joined to the host by a veth pair.

    host side  <host veth>  10.213.7.1/30
    namespace  <ns veth>    10.213.7.2/30   (+ loopback up)

Everything here is created by the test and named after its pid (``swarm-part-<pid>``,
``swp<pid>h`` / ``swp<pid>n``); only those addresses and loopback ever carry traffic. The network is
"cut" from the namespace side (its veth goes down): the host side keeps its connected route (marked
``linkdown``) so packets for 10.213.7.2 are dropped at the veth instead of following the default
route off the machine.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess

import psutil

HOST_IP = "10.213.7.1"
NS_IP = "10.213.7.2"
PREFIX = 30
NS_PREFIX = "swarm-part-"


def ip(*args: str, check: bool = True, timeout: float = 10) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


def unavailable_reason() -> str | None:
    """Why a namespaced test network cannot be built here, or None when it can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "network-partition test needs root (ip netns + veth)"
    if shutil.which("ip") is None:
        return "network-partition test needs the `ip` command (iproute2)"
    probe = f"swarm-test-{os.getpid()}"
    try:
        made = ip("netns", "add", probe, check=False)
    except (OSError, subprocess.SubprocessError) as e:
        return f"network-partition test cannot run `ip netns add`: {e}"
    ip("netns", "del", probe, check=False)
    if made.returncode != 0:
        return f"network-partition test cannot create a network namespace: {made.stderr.strip()}"
    return None


def netns_pids(ns: str) -> list[int]:
    out = ip("netns", "pids", ns, check=False).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def kill_netns_processes(ns: str) -> list[int]:
    """SIGKILL every process still running in ``ns``; returns their pids."""
    pids = netns_pids(ns)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    psutil.wait_procs([p for p in map(_proc, pids) if p is not None], timeout=5)
    return pids


def _proc(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def remove_stale() -> None:
    """Namespaces of earlier runs of this test whose process is gone (a crashed run leaves them)."""
    for line in ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.fullmatch(re.escape(NS_PREFIX) + r"(\d+)", name)
        if m and not psutil.pid_exists(int(m.group(1))):
            kill_netns_processes(name)
            ip("netns", "del", name, check=False)
            ip("link", "del", f"swp{m.group(1)}h", check=False)


class TestNet:
    """The namespace and veth pair of this process; ``close()`` removes them (idempotent)."""

    __test__ = False          # not a pytest test class

    def __init__(self) -> None:
        pid = os.getpid()
        self.ns = f"{NS_PREFIX}{pid}"
        self.host_veth = f"swp{pid}h"      # interface names: at most 15 characters
        self.ns_veth = f"swp{pid}n"
        self.created = False

    def create(self) -> None:
        remove_stale()
        used = ip("-o", "-4", "addr", "show").stdout
        if re.search(r"\binet 10\.213\.7\.", used):
            raise RuntimeError(f"10.213.7.0/{PREFIX} is already in use on this host:\n{used}")
        ip("netns", "add", self.ns)
        self.created = True
        ip("link", "add", self.host_veth, "type", "veth", "peer", "name", self.ns_veth)
        ip("link", "set", self.ns_veth, "netns", self.ns)
        ip("addr", "add", f"{HOST_IP}/{PREFIX}", "dev", self.host_veth)
        ip("link", "set", self.host_veth, "up")
        ip("-n", self.ns, "link", "set", "lo", "up")
        ip("-n", self.ns, "addr", "add", f"{NS_IP}/{PREFIX}", "dev", self.ns_veth)
        ip("-n", self.ns, "link", "set", self.ns_veth, "up")

    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.ns]

    def cut(self) -> None:
        """Partition: the namespace's end of the veth goes down (nothing crosses either way)."""
        ip("-n", self.ns, "link", "set", self.ns_veth, "down")

    def close(self) -> list[int]:
        """Kill what still runs in the namespace, delete it and the veth; returns the killed pids."""
        if not self.created:
            return []
        killed = kill_netns_processes(self.ns)
        ip("netns", "del", self.ns, check=False)
        ip("link", "del", self.host_veth, check=False)     # normally gone with its peer
        self.created = False
        return killed
