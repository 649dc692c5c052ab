"""``swarm debug``: list the tasks paused in the remote debugger and attach this terminal to one.

    swarm debug ──CONTROL kv_list/kv_multi_get (_debugger)──▶ head      which tasks are paused
                ──<temp_dir>/debugger/*.json──▶ those of local clusters (init() in a driver)
                ──connect + HMAC handshake──▶ the paused worker        (util/rpdb.py)
                stdin ──lines──▶ socket ──▶ pdb in the task
                stdout ◀──bytes── socket ◀── pdb's output and prompt
    ends when the task's side closes the session (``c``, ``q``, the task returning).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import sys
import time
from typing import Any

NAMESPACE = "_debugger"   # as swarm.util.rpdb.NAMESPACE (not imported: it pulls in pdb)
HOW_TO_PAUSE = ("Pause one with breakpoint() (or swarm.util.pdb.set_trace()) in a task or actor method, or "
                "set SWARM_DEBUG_POST_MORTEM=1 in the environment of the driver or of `swarm start` to "
                "pause on uncaught exceptions; then run `swarm debug` again.")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("debug", help="attach a pdb prompt to a task paused at breakpoint()")
    p.add_argument("index", nargs="?", type=int, help="the session to attach to (as listed)")
    p.add_argument("--session", help="the session id to attach to (a unique prefix is enough)")
    p.add_argument("--list", action="store_true", help="only list the paused tasks")
    p.add_argument("--address", default=os.environ.get("SWARM_ADDRESS", "auto"))
    p.add_argument("--token-file")


class _Head:
    """One authenticated connection to the cluster for control-store requests."""

    def __init__(self, address: str, token_file: str | None) -> None:
        from swarm.core import connection
        from swarm.node import discovery

        wire, token = discovery.resolve(address, token_file)
        self.token = token.encode()
        self.sock = connection.connect(wire, self.token)
        self.sock.settimeout(30.0)
        self._next = 0

    def call(self, op: str, args: list) -> Any:
        from swarm.core import connection, protocol

        self._next += 1
        self.sock.sendall(protocol.encode([protocol.CONTROL, self._next, op, args]))
        while True:
            (size,) = protocol.HEADER.unpack(connection._recv_exact(self.sock, 4))
            msg = protocol.decode(connection._recv_exact(self.sock, size))
            if msg[0] == protocol.CONTROL_REPLY and msg[1] == self._next:
                break
        if not msg[2]:
            raise RuntimeError(f"the cluster refused {op}: {msg[3]}")
        return msg[3]

    def close(self) -> None:
        self.sock.close()


def _file_sessions() -> list[dict]:
    """Sessions of local clusters (``init()`` in a driver), announced in files with their own token."""
    import psutil

    from swarm._config import CONFIG

    base = os.path.join(CONFIG.temp_dir, "debugger")
    out = []
    for name in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        path = os.path.join(base, name)
        if not name.endswith(".json"):
            continue
        try:
            with open(path) as f:
                s = json.load(f)
        except (OSError, ValueError):
            continue
        s["_file"] = path
        if not psutil.pid_exists(s.get("pid", -1)):
            _drop_stale(None, s, "its worker process is gone")
            continue
        out.append(s)
    return out


def _local_node_ids() -> set[str]:
    from swarm.node import discovery
    return {n["node_id"] for n in discovery.live_nodes()}


def _sessions(head: _Head) -> list[dict]:
    """Paused sessions, oldest first; those whose worker is gone are dropped (with a note)."""
    import psutil

    keys = head.call("kv_list", [NAMESPACE, b""])
    values = head.call("kv_multi_get", [NAMESPACE, list(keys)]) if keys else {}
    local = _local_node_ids()
    out = []
    for raw in values.values():
        try:
            s = json.loads(raw)
        except ValueError:
            continue
        if s.get("node_id") in local and not psutil.pid_exists(s.get("pid", -1)):
            _drop_stale(head, s, "its worker process is gone")
            continue
        out.append(s)
    return sorted(out, key=lambda s: s.get("time", 0))


def _drop_stale(head: _Head | None, s: dict, why: str) -> None:
    if "_file" in s:
        try:
            os.unlink(s["_file"])
        except OSError:
            pass
    elif head is not None:
        head.call("kv_del", [NAMESPACE, s["session_id"].encode(), False])
    print(f"note: removed the session of {s.get('task_name')} (pid {s.get('pid')}): {why}", file=sys.stderr)


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.0f}h"


def _print_table(sessions: list[dict]) -> None:
    print(f"{'#':>3}  {'task':24} {'where':32} {'node':10} {'pid':>7} {'age':>5}  state")
    now = time.time()
    for i, s in enumerate(sessions):
        where = f"{os.path.basename(s.get('file', '?'))}:{s.get('line', '?')}"
        node = "local" if "_file" in s else str(s.get("node_id"))[:8]
        state = "attached elsewhere" if s.get("attached") else (
            "breakpoint" if s.get("kind") == "breakpoint" else f"post-mortem: {s.get('reason', '')}")
        print(f"{i:>3}  {str(s.get('task_name'))[:24]:24} {where[:32]:32} {node:10} "
              f"{s.get('pid', '?'):>7} {_age(now - s.get('time', now)):>5}  {state}")


def _choose(ns: argparse.Namespace, sessions: list[dict]) -> dict | None:
    if ns.session:
        hits = [s for s in sessions if s["session_id"].startswith(ns.session)]
        if len(hits) != 1:
            print(f"swarm debug: {'no' if not hits else 'more than one'} paused session matches "
                  f"--session {ns.session}; pick one of the ids listed above", file=sys.stderr)
            return None
        return hits[0]
    index = ns.index
    if index is None:
        if len(sessions) == 1:
            return sessions[0]
        if not sys.stdin.isatty():
            print(f"swarm debug: {len(sessions)} tasks are paused; say which: `swarm debug N`",
                  file=sys.stderr)
            return None
        try:
            answer = input(f"Attach to which session (0-{len(sessions) - 1})? ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return None
        if not answer.isdigit():
            print(f"swarm debug: {answer!r} is not a session number", file=sys.stderr)
            return None
        index = int(answer)
    if not 0 <= index < len(sessions):
        print(f"swarm debug: there is no session {index}: pick one from 0 to {len(sessions) - 1}",
              file=sys.stderr)
        return None
    return sessions[index]


def _relay(sock: socket.socket) -> None:
    """Terminal ⇄ session until the task's side closes it. Ctrl-C does not detach (as at a pdb prompt):
    use ``c`` to let the task go on or ``q`` to stop it; end of input (Ctrl-D) quits as in pdb."""
    stdin_fd = sys.stdin.fileno()
    out = sys.stdout.buffer
    stdin_open = True
    sock.settimeout(None)
    while True:
        try:
            readable, _, _ = select.select([sock] + ([stdin_fd] if stdin_open else []), [], [])
            if sock in readable:
                data = sock.recv(65536)
                if not data:
                    return
                out.write(data)
                out.flush()
            if stdin_fd in readable:
                line = os.read(stdin_fd, 65536)
                if line:
                    sock.sendall(line)
                else:
                    stdin_open = False
                    sock.shutdown(socket.SHUT_WR)   # pdb reads end of input: it quits
        except KeyboardInterrupt:
            out.write(b"\n(swarm debug: type c to let the task continue, q to stop it)\n")
            out.flush()
        except OSError:
            return


def main(ns: argparse.Namespace) -> int:
    from swarm.core import connection
    from swarm.exceptions import SwarmError

    head: _Head | None = None
    no_cluster = ""
    try:
        head = _Head(ns.address, ns.token_file)
    except (ConnectionError, OSError, ValueError, SwarmError) as e:
        no_cluster = str(e)   # tasks of a local cluster (init() in a driver) may still be paused
    try:
        sessions = _file_sessions()
        if head is not None:
            try:
                sessions = sorted(sessions + _sessions(head), key=lambda s: s.get("time", 0))
            except (ConnectionError, OSError, RuntimeError, SwarmError) as e:
                print(f"swarm debug: cannot list the paused tasks: {e}", file=sys.stderr)
                return 1
        if not sessions:
            if no_cluster and ns.address != "auto":   # they named a cluster and it is not there
                print(f"swarm debug: {no_cluster}", file=sys.stderr)
                return 1
            print(f"No task is paused in the debugger. {HOW_TO_PAUSE}")
            return 1
        _print_table(sessions)
        if ns.list:
            return 0
        chosen = _choose(ns, sessions)
        if chosen is None:
            return 2
        if chosen.get("attached"):
            print(f"swarm debug: session {chosen['session_id']} already has a debugger attached; only one "
                  f"client at a time can drive it", file=sys.stderr)
            return 1
        token = bytes.fromhex(chosen["token"]) if "_file" in chosen else head.token  # type: ignore[union-attr]
        try:
            sock = connection.connect(chosen["address"], token, timeout=5.0)
        except SwarmError as e:   # the worker answered but the handshake failed: wrong token
            print(f"swarm debug: {e}", file=sys.stderr)
            return 1
        except (ConnectionError, OSError):
            _drop_stale(head, chosen, f"nothing listens at {chosen['address']} any more (the worker exited)")
            return 1
    finally:
        if head is not None:
            head.close()
    how = "c continues the task, q stops it" if chosen.get("kind") == "breakpoint" else \
        "c or q ends the session, then the task fails with its exception"
    print(f"Attached to {chosen['task_name']} (pid {chosen['pid']}, session {chosen['session_id']}): {how}.",
          flush=True)
    try:
        _relay(sock)
    finally:
        sock.close()
    print("swarm debug: the session ended.")
    return 0
