"""Finding a running cluster on this machine, and its token.

``swarm start`` writes one file per node under ``<temp_dir>/nodes/`` (the node manager removes it when
it exits); ``init(address="auto")``, ``swarm status`` and ``swarm stop`` read them. The cluster token
comes from ``SWARM_TOKEN``, else ``SWARM_TOKEN_FILE`` / ``--token-file``, else the file the head wrote
(readable only by its user) when the cluster runs on this machine.
"""

from __future__ import annotations

import json
import os
import stat

import psutil

from swarm._config import CONFIG


def nodes_dir() -> str:
    path = os.path.join(CONFIG.temp_dir, "nodes")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def default_token_file() -> str:
    return os.path.join(CONFIG.temp_dir, "cluster_token")


def write_token_file(token: str, path: str | None = None) -> str:
    path = path or default_token_file()
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    return path


def read_token(token_file: str | None = None) -> str | None:
    token = os.environ.get("SWARM_TOKEN")
    if token:
        return token.strip()
    path = token_file or os.environ.get("SWARM_TOKEN_FILE")
    if path:
        with open(path) as f:
            return f.read().strip()
    return None


def live_nodes() -> list[dict]:
    """Nodes started by ``swarm start`` on this machine that are still running (stale files removed)."""
    out = []
    base = nodes_dir()
    for name in sorted(os.listdir(base)):
        path = os.path.join(base, name)
        try:
            with open(path) as f:
                info = json.load(f)
        except (OSError, ValueError):
            continue
        if not _running(info.get("pid", -1)):
            try:
                os.unlink(path)
            except OSError:
                pass
            continue
        info["file"] = path
        out.append(info)
    return out


def _running(pid: int) -> bool:
    """Alive and not a zombie (a killed node manager whose parent has not reaped it yet is gone)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def write_local_cluster(session_dir: str, node_id: str, unix_address: str, token: bytes, pid: int) -> None:
    """A cluster that ``init()`` started (not ``swarm start``) leaves its address and token in its
    session directory, readable only by its user, so ``swarm`` commands on this machine can find it
    (``swarm list``, ``swarm logs``); both go away with the session directory."""
    token_file = os.path.join(session_dir, "cluster_token")
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(token)
    fd = os.open(os.path.join(session_dir, "cluster.json"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"node_id": node_id, "unix_address": unix_address, "pid": pid, "driver_pid": os.getpid(),
                   "token_file": token_file, "session_dir": session_dir}, f)


def local_clusters() -> list[dict]:
    """Running clusters that ``init()`` started on this machine, oldest first."""
    out = []
    try:
        names = sorted(os.listdir(CONFIG.temp_dir))   # session dir names begin with their start time
    except OSError:
        return []
    for name in names:
        if not name.startswith("session_"):
            continue
        try:
            with open(os.path.join(CONFIG.temp_dir, name, "cluster.json")) as f:
                info = json.load(f)
        except (OSError, ValueError):
            continue
        if _running(info.get("pid", -1)):
            out.append(info)
    return out


def write_node_file(info: dict) -> str:
    path = os.path.join(nodes_dir(), f"{info['node_id']}.json")
    with open(path, "w") as f:
        json.dump(info, f)
    return path


def resolve(address: str, token_file: str | None = None) -> tuple[str, str]:
    """(wire address, token) for ``auto``, ``HOST:PORT``, ``tcp:HOST:PORT`` or ``unix:NAME``."""
    token = read_token(token_file)
    if address == "auto":
        heads = [n for n in live_nodes() if n.get("head")]
        if not heads:
            raise ConnectionError("init(address='auto') found no swarm cluster started on this machine: "
                                  "start one with `swarm start --head`, or call init() without an "
                                  "address for a local cluster")
        node = heads[-1]
        if token is None:
            token = read_token(node.get("token_file"))
        return node["tcp_address"], token or ""
    if not address.startswith(("tcp:", "unix:")):
        host, sep, port = address.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"not a cluster address: {address!r} (expected 'auto' or HOST:PORT, "
                             f"e.g. 127.0.0.1:6380)")
        address = f"tcp:{host}:{port}"
    if token is None:
        for n in live_nodes():   # a cluster on this machine: its token file is ours to read
            if n.get("tcp_address") == address or n.get("unix_address") == address:
                token = read_token(n.get("token_file"))
                break
    if token is None:
        raise ConnectionError(f"no cluster token for {address}: set SWARM_TOKEN, or pass the token file "
                              f"the head node printed (SWARM_TOKEN_FILE=... or --token-file)")
    return address, token
