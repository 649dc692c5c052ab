"""Worker logs: what each node manager serves about its workers and log files, and how a driver or
the ``swarm`` command reads them from any node.

    state.get_log / swarm logs                        node manager (any node), in its selector loop
      LogReader ──LIST_WORKERS──────────────────────▶ LogService.list_workers(): live workers and the
          │                                            recently exited ones, with their log files
          └────READ_LOG(name, offset, max_bytes)───▶ LogService.read(): whole lines, at most 1 MiB,
                ◀──────────────LOGS_REPLY──────────── from <session_dir>/logs/<name> and nowhere else

Files in ``<session_dir>/logs``: ``worker-<worker id>-<pid>.out`` and ``.err`` (rotated to ``.out.1``,
``.out.2``, ...), ``node_manager.log``, ``object_server.log``.

Task markers. Before the first output of a new task on a stream, a worker writes a tag line naming
the function and the task id (``worker_main.TaggedStream``). The node manager never forwards tag
lines to drivers; when the task changes it writes one marker line into the log file instead:

    \\x1e[task <task id hex> <function name>]    the lines below belong to that task
    \\x1e[no task]                               the lines below were written between tasks

so the output of one task can be picked out of the log of a worker that ran many. A task that
printed nothing has no marker. Output of an actor with ``max_concurrency > 1`` is attributed to the
call that started last. Readers drop marker lines unless they ask for the raw file.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import time
from typing import Any, Callable, Iterator

import psutil

from swarm.core import connection, protocol as P
from swarm.exceptions import SwarmError

MAX_READ_BYTES = 1 << 20          # per request: the node manager's loop must stay responsive
EXITED_WORKERS_KEPT = 1000
MARKER = b"\x1e"
NO_TASK_MARKER = b"\x1e[no task]\n"
log = logging.getLogger(__name__)
WORKER_FILE = re.compile(r"^worker-([0-9a-f]+)-(\d+)\.(out|err)(?:\.(\d+))?$")


class LogError(SwarmError):
    """A log request that cannot be answered: unknown or ambiguous id, no such file, node gone."""


# -- node side ------------------------------------------------------------------------------------
def log_file_path(logs_dir: str, name: Any) -> str:
    """The path of the log file called ``name`` directly inside ``logs_dir``; ``ValueError`` for
    anything else (a path, ``..``, a link leading out), ``FileNotFoundError`` when it does not exist."""
    if (not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name
            or "\0" in name):
        raise ValueError(f"{name!r} is not a log file name: give a bare file name as list_logs() shows "
                         f"them, e.g. 'worker-<worker id>-<pid>.out'")
    base = os.path.realpath(logs_dir)
    real = os.path.realpath(os.path.join(base, name))
    if os.path.dirname(real) != base:
        raise ValueError(f"{name!r} leads outside the node's logs directory: only files in it can be read")
    if not os.path.isfile(real):
        raise FileNotFoundError(f"no log file {name!r} on this node (list_logs() shows the files there)")
    return real


def marker_line(task_hex: str, name: str) -> bytes:
    return f"\x1e[task {task_hex} {name}]\n".encode("utf-8", "replace")


def actor_marker_line(actor_hex: str, class_name: str) -> bytes:
    """Written when a worker becomes an actor's: everything after it in the file is that actor's (its
    calls' own task markers do not end it; the worker is the actor's until it exits)."""
    return f"\x1e[actor {actor_hex} {class_name}]\n".encode("utf-8", "replace")


def marker_task(line: bytes) -> str:
    """The task id a marker line names ('' for the no-task marker; "actor:<id>" for an actor's)."""
    if line.startswith(b"\x1e[task "):
        return line[7:].split(b" ", 1)[0].rstrip(b"]").decode("ascii", "replace")
    if line.startswith(b"\x1e[actor "):
        return "actor:" + line[8:].split(b" ", 1)[0].rstrip(b"]").decode("ascii", "replace")
    return ""


def filter_lines(data: bytes, task: str | None, inside: bool) -> tuple[bytes, bool, bool]:
    """Drop marker lines, and with ``task`` keep only that task's lines. ``inside`` says whether the
    first line belongs to the task; returns (kept bytes, inside at the end, whether a marker of the
    task was seen)."""
    if MARKER not in data:
        return (data if task is None or inside else b""), inside, False
    kept = []
    seen = False
    pieces = data.split(b"\n")
    last = pieces.pop()       # b"" after the final newline (a line without one, if any, stays last)
    for i, piece in enumerate(pieces + ([last] if last else [])):
        line = piece + b"\n" if i < len(pieces) else piece
        if line.startswith(MARKER):
            if task is not None and not (inside and task.startswith("actor:")):
                inside = marker_task(line) == task
                seen = seen or inside
        elif task is None or inside:
            kept.append(line)
    return b"".join(kept), inside, seen


def read_chunk(path: str, offset: int, max_bytes: int) -> tuple[bytes, int, int, int, bool]:
    """Whole lines of ``path`` from ``offset`` (negative: that many bytes before the end, starting at
    the next whole line), at most ``max_bytes`` of them (one longer line is returned whole up to
    the limit). Returns (data, start, next offset, file size, restarted); ``restarted`` means the
    file is shorter than ``offset`` (it was rotated): reading began again at 0."""
    max_bytes = max(1, min(int(max_bytes), MAX_READ_BYTES))
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        restarted = offset > size
        start = 0 if restarted else (max(0, size + offset) if offset < 0 else offset)
        tail = offset < 0 and start > 0
        f.seek(start - tail)    # a tail also reads the byte before: is it at the start of a line?
        data = f.read(max_bytes + tail)
    if tail:   # skip to the start of the next whole line
        cut = data.find(b"\n") + 1
        start += cut - 1
        data = data[cut:]
    if data and not data.endswith(b"\n"):
        last = data.rfind(b"\n")
        if last >= 0:
            data = data[:last + 1]      # the rest comes with the next read, whole
        elif len(data) < max_bytes:
            data = b""                  # a line still being written
    return data, start, start + len(data), size, restarted


class LogService:
    """The node manager's side: it calls ``on_tag`` for each tag line a worker writes,
    ``worker_exited`` when one exits, and ``handle`` for LIST_WORKERS / READ_LOG."""

    def __init__(self, nm: Any) -> None:
        self.nm = nm
        self.current: dict[bytes, dict[int, str]] = {}   # worker -> stream -> task its lines belong to
        self.last_task: dict[bytes, str] = {}
        self.started: dict[bytes, float] = {}
        self.exited: collections.deque[dict] = collections.deque(maxlen=EXITED_WORKERS_KEPT)

    def on_tag(self, worker_id: bytes, stream: int, line: str) -> tuple[str, bytes]:
        """A worker's tag line (``TAG name [\\x1f task id]``): the name to prefix forwarded lines with,
        and the marker to write into the log file (empty when the task did not change)."""
        name, _, task = line[1:].partition("\x1f")
        streams = self.current.setdefault(worker_id, {})
        if streams.get(stream, "") == task:
            return name, b""
        if task:
            streams[stream] = task
            self.last_task[worker_id] = task
            return name, marker_line(task, name)
        streams.pop(stream, None)
        return name, NO_TASK_MARKER

    def current_marker(self, worker_id: bytes, stream: int, name: str) -> bytes:
        """For the top of a freshly rotated file: the task its first lines belong to."""
        task = self.current.get(worker_id, {}).get(stream)
        return marker_line(task, name) if task else b""

    def worker_exited(self, w: Any, how: str) -> None:
        self.current.pop(w.worker_id, None)
        self.started.setdefault(w.worker_id, 0.0)   # too late to ask the system when it started
        row = self._row(w, "DEAD")
        row.update(exit=how, ended=time.time())
        self.last_task.pop(w.worker_id, None)
        self.started.pop(w.worker_id, None)
        self.exited.append(row)

    def handle(self, msg: list) -> list:
        kind, req_id = msg[0], msg[1]
        try:
            if kind == P.LIST_WORKERS:
                return [P.LOGS_REPLY, req_id, self.list_workers(), ""]
            _, _, name, offset, max_bytes, task, inside = msg
            result = self.read(name, int(offset), int(max_bytes), task, bool(inside))
            return [P.LOGS_REPLY, req_id, result, ""]
        except (OSError, ValueError, TypeError) as e:
            return [P.LOGS_REPLY, req_id, None, str(e)]
        except Exception as e:   # a bug here must not leave the asker waiting for its deadline
            log.exception("log request %s failed", kind)
            return [P.LOGS_REPLY, req_id, None, f"the node could not answer: {e!r}"]

    def _row(self, w: Any, state: str) -> dict:
        wid = w.worker_id
        if wid not in self.started:
            try:
                self.started[wid] = psutil.Process(w.pid).create_time()
            except Exception:   # already gone: unknown
                self.started[wid] = 0.0
        base = f"worker-{wid.hex()}-{w.pid}"
        return {"worker_id": wid.hex(), "node_id": self.nm.node_id, "pid": w.pid, "state": state,
                "actor_id": w.actor_id.hex() if w.actor_id else None, "name": w.tag.get(1, "worker"),
                "task_id": self.last_task.get(wid), "started": self.started[wid] or None,
                "stdout_file": base + ".out", "stderr_file": base + ".err"}

    def list_workers(self) -> dict:
        nm = self.nm
        idle = set(nm.scheduler.idle_workers)
        rows = []
        for wid, w in nm.workers.items():
            if not w.ready:
                state = "STARTING"
            elif w.actor_id is not None:
                state = "ACTOR"
            elif wid in nm.scheduler.leases:
                state = "LEASED"
            else:
                state = "IDLE" if wid in idle else "ALIVE"
            rows.append(self._row(w, state))
        known = {r["worker_id"] for r in rows}
        for row in reversed(self.exited):
            if row["worker_id"] not in known:
                known.add(row["worker_id"])
                rows.append(row)
        files = []
        only_files = 0
        with os.scandir(nm.logs_dir) as it:
            for entry in it:
                try:
                    st = entry.stat()
                except OSError:
                    continue
                files.append({"name": entry.name, "size": st.st_size, "mtime": st.st_mtime})
                m = WORKER_FILE.match(entry.name)
                if m and m.group(1) not in known and only_files < EXITED_WORKERS_KEPT:
                    # exited long ago (or before this node manager knew it): only its files remain
                    known.add(m.group(1))
                    only_files += 1
                    base = f"worker-{m.group(1)}-{m.group(2)}"
                    rows.append({"worker_id": m.group(1), "node_id": nm.node_id, "pid": int(m.group(2)),
                                 "state": "DEAD", "actor_id": None, "name": None, "task_id": None,
                                 "started": None, "stdout_file": base + ".out", "stderr_file": base + ".err"})
        files.sort(key=lambda f: f["name"])
        return {"node_id": nm.node_id, "workers": rows, "files": files}

    def read(self, name: str, offset: int, max_bytes: int, task: str | None, inside: bool) -> dict:
        path = log_file_path(self.nm.logs_dir, name)
        data, start, nxt, size, restarted = read_chunk(path, offset, max_bytes)
        if restarted:
            inside = False
        data, inside, seen = filter_lines(data, task, inside)
        return {"data": data, "start": start, "offset": nxt, "size": size, "restarted": restarted,
                "live": self._is_live(name), "inside": inside, "seen": seen}

    def _is_live(self, name: str) -> bool:
        """Still being written: a file of a live worker (not a rotated one), or one of the node's own
        (node manager, object server, dashboard: they live as long as the node)."""
        m = WORKER_FILE.match(name)
        if m is None:
            return True
        if m.group(4) is not None:
            return False
        w = self.nm.workers.get(bytes.fromhex(m.group(1)))
        return w is not None and w.pid == int(m.group(2))


# -- reading side ---------------------------------------------------------------------------------
class NodeLink:
    """One authenticated connection to a node manager for log requests: blocking request/reply, each
    with a deadline."""

    def __init__(self, node_id: str, address: str, token: bytes, timeout: float = 30.0) -> None:
        self.node_id = node_id
        self.timeout = timeout
        try:
            self.sock = connection.connect(address, token, timeout=timeout)
        except (OSError, ConnectionError) as e:
            raise LogError(f"cannot reach node {node_id} at {address}: {e}") from None
        self.sock.settimeout(timeout)
        self.reader = P.FrameReader()
        self.pending: list = []
        self.req_ids = iter(range(1, 1 << 62))

    def call(self, kind: int, *fields: Any, reply_kind: int = P.LOGS_REPLY) -> Any:
        req_id = next(self.req_ids)
        try:
            self.sock.sendall(P.encode([kind, req_id, *fields]))
            while True:
                while self.pending:
                    msg = self.pending.pop(0)
                    if msg[0] == reply_kind and msg[1] == req_id:
                        if reply_kind != P.LOGS_REPLY:
                            return msg[2]
                        if msg[2] is None:
                            raise LogError(f"node {self.node_id}: {msg[3]}")
                        return msg[2]
                data = self.sock.recv(1 << 20)
                if not data:
                    raise LogError(f"node {self.node_id} closed the connection (it may have stopped)")
                self.pending.extend(self.reader.feed(data))
        except TimeoutError:
            raise LogError(f"node {self.node_id} did not answer within {self.timeout:g} s") from None
        except OSError as e:
            raise LogError(f"lost the connection to node {self.node_id}: {e}") from None

    def list_workers(self) -> dict:
        return self.call(P.LIST_WORKERS)

    def list_objects(self) -> list[dict]:
        """What this node's shared-memory store holds (size, owner, pins, spilled)."""
        return self.call(P.LIST_OBJECTS, reply_kind=P.LIST_OBJECTS_REPLY)

    def read(self, name: str, offset: int, max_bytes: int = MAX_READ_BYTES, task: str | None = None,
             inside: bool = False) -> dict:
        return self.call(P.READ_LOG, name, offset, max_bytes, task, inside)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _lines(data: bytes, errors: str) -> list[str]:
    # split on newlines only: str.splitlines() would also cut at \x1c-\x1e, \x85, \u2028 ...
    lines = data.decode("utf-8", errors).split("\n")
    if lines and not lines[-1]:
        lines.pop()
    return lines


def stream_log(link: NodeLink, name: str, *, tail: int = 1000, follow: bool = False,
               timeout: float | None = None, task: str | None = None, poll_s: float = 0.2,
               stop: Callable[[], bool] | None = None, errors: str = "replace") -> Iterator[str]:
    """Lines of one log file: its last ``tail`` lines (all with ``tail < 0``), then with ``follow``
    the lines written later, until the file is no longer written (its worker exited), the task's
    output ended (with ``task``), ``stop()`` says so (asked about once a second while nothing new
    comes), or ``timeout`` seconds passed."""
    deadline = None if timeout is None else time.monotonic() + timeout
    offset, inside = 0, False
    if task is None and tail >= 0:
        # the last lines are in the last bytes: read only those (up to one request's worth)
        r = link.read(name, -MAX_READ_BYTES, MAX_READ_BYTES)
        lines = _lines(r["data"], errors)
        yield from (lines[-tail:] if tail else [])
        offset = r["offset"]
    else:
        # a task's lines can be anywhere in a shared worker's log: scan it from the start
        kept: collections.deque[str] = collections.deque(maxlen=tail if tail >= 0 else None)
        seen = False
        while True:
            r = link.read(name, offset, MAX_READ_BYTES, task, inside)
            kept.extend(_lines(r["data"], errors))
            offset, inside, seen = r["offset"], r["inside"], seen or r["seen"] or r["inside"]
            if r["offset"] >= r["size"] or r["offset"] == r["start"]:
                break
        yield from kept
        if task is not None and seen and not inside:
            return                 # another task's output follows: this one's is complete
    if not follow:
        return
    left_task = stopping = False
    next_check = time.monotonic() + 1.0
    while True:
        r = link.read(name, offset, MAX_READ_BYTES, task, inside)
        if r["data"]:
            yield from _lines(r["data"], errors)
        if task is not None and (inside or r["seen"]) and not r["inside"]:
            left_task = True       # another task's output follows: this one's is complete
        offset, inside = r["offset"], r["inside"]
        if left_task:
            return
        if r["offset"] < r["size"] and r["offset"] > r["start"]:
            continue               # more is already there
        if stopping or not r["live"] or (deadline is not None and time.monotonic() >= deadline):
            return
        if stop is not None and time.monotonic() >= next_check:
            next_check = time.monotonic() + 1.0
            if stop():
                stopping = True    # one more read: what it wrote last may have just arrived
                continue
        time.sleep(poll_s if deadline is None else max(0.0, min(poll_s, deadline - time.monotonic())))
