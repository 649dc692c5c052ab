"""The remote debugger: ``breakpoint()`` (or ``swarm.util.pdb.set_trace()``) in a task or actor method
pauses it until ``swarm debug`` attaches a pdb prompt to it from a terminal.

    worker (the task's thread)                                        `swarm debug` (any machine)
      breakpoint() ──▶ listen on tcp:NODE_IP:0 ──▶ kv_put(_debugger/ID: task, file:line, address)
                       print "paused ... attach with `swarm debug`" (reaches the driver)
                                                  ◀── lists the sessions (kv), picks one, connects
                       HMAC handshake (cluster token) ◀────────────────▶ proves it knows the token
                       pdb.Pdb(stdin/stdout = the socket) ◀═ lines ═▶ terminal
      `c` ──▶ session removed from the kv, socket closed, the task goes on
      `q` ──▶ the same, then BdbQuit is raised in the task: it fails with that error

``SWARM_DEBUG_POST_MORTEM=1`` in the workers' environment opens the same kind of session on an uncaught
exception of a task or actor method (``pdb.post_mortem``); when it ends, the task fails with the original
exception. A peer that fails the handshake is dropped before anything it sent is read as a command.
While paused the task is only slow: nothing times it out; but if the process that submitted it exits
before anyone attached, the session closes and the task stops. In a driver, ``set_trace`` is plain pdb.

A cluster started by ``init()`` inside a driver has no address the CLI can find, and its token is known
only to that driver: there a session is also announced in ``<temp_dir>/debugger/ID.json`` (readable only
by this user) with a token of its own, which ``swarm debug`` on the same machine uses instead.
"""

from __future__ import annotations

import bdb
import json
import logging
import os
import pdb
import select
import socket
import sys
import time
from types import FrameType, TracebackType
from typing import Any

from swarm.core import connection, core_worker

log = logging.getLogger(__name__)

NAMESPACE = "_debugger"   # volatile kv namespace: sessions mean nothing after a head restart


def sessions_dir() -> str:
    """Where sessions of local clusters (``init()`` without an address) are announced."""
    from swarm._config import CONFIG
    return os.path.join(CONFIG.temp_dir, "debugger")


def _worker() -> Any:
    w = core_worker.current()
    return w if w is not None and w.mode == "worker" else None


def _node_ip(w: Any) -> str:
    # workers of a multi-node cluster listen on the node's address; those of a local one on loopback
    if isinstance(w.address, str) and w.address.startswith("tcp:"):
        return w.address[4:].rpartition(":")[0]
    return "127.0.0.1"


class _Wire:
    """The socket as pdb's stdin and stdout. A vanished client reads as end of input (pdb quits) and
    writes to it are dropped, so a broken connection never raises inside the user's code."""

    encoding = "utf-8"

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._in = sock.makefile("r", encoding="utf-8", errors="replace", newline="\n")
        self._out = sock.makefile("w", encoding="utf-8", errors="replace")
        self.broken = False

    def readline(self) -> str:
        if self.broken:
            return ""
        try:
            return self._in.readline()
        except (OSError, ValueError):
            self.broken = True
            return ""

    def write(self, s: str) -> int:
        if not self.broken:
            try:
                self._out.write(s)
            except (OSError, ValueError):
                self.broken = True
        return len(s)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._out.flush()
            except (OSError, ValueError):
                self.broken = True

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        self.flush()
        for f in (self._in, self._out):
            try:
                f.close()
            except OSError:
                pass
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class OwnerGone(bdb.BdbQuit):
    """The paused task's owner exited before anyone attached: the task is stopped (its result has
    nowhere to go) rather than left paused forever."""


class Session:
    """One paused task: its listening socket and its entry in the cluster kv."""

    def __init__(self, w: Any, frame: FrameType, kind: str, reason: str = "") -> None:
        self.id = os.urandom(8).hex()
        self.core = w
        # a task id starts with the id of the process that submitted it (its owner, or the caller of
        # an actor method): when that process is gone, nobody waits for this task any more
        self.owner: bytes | None = w.current_task_id[:8] if w.current_task_id else None
        self.watch_owner = self._owner_connected()
        self.listener = connection.listen(f"tcp:{_node_ip(w)}:0")
        host, port = self.listener.getsockname()[:2]
        self.token: bytes = w.token
        self.file: str | None = None
        if isinstance(w.address, str) and w.address.startswith("unix:"):
            # a cluster started by init() in a driver: `swarm debug` cannot reach it (no address, and
            # its token lives only in that driver), so the session is also announced in a file only
            # this user can read, with a token of its own
            self.token = os.urandom(32)
            self.file = os.path.join(sessions_dir(), f"{self.id}.json")
        self.wire: _Wire | None = None
        self.ended = False
        self.info = {
            "session_id": self.id, "task_name": w.current_task_name or "task",
            "task_id": w.current_task_id.hex() if w.current_task_id else None,
            "actor_id": w.current_actor_id.hex() if w.current_actor_id else None,
            "pid": os.getpid(), "node_id": w.node_id, "address": f"tcp:{host}:{port}",
            "file": frame.f_code.co_filename, "line": frame.f_lineno, "function": frame.f_code.co_name,
            "time": time.time(), "kind": kind, "reason": reason, "attached": False}

    def register(self) -> None:
        from swarm.experimental import internal_kv
        if self.file is not None:
            self._write_file()
            self._update_kv()   # for the state API; `swarm debug` reads the file
        else:
            internal_kv.kv_put(self.id, json.dumps(self.info).encode(), namespace=NAMESPACE)
        where = f"{os.path.basename(self.info['file'])}:{self.info['line']}"
        what = "at a breakpoint" if self.info["kind"] == "breakpoint" else \
            f"after an uncaught exception ({self.info['reason']})"
        print(f"swarm: {self.info['task_name']} is paused {what} at {where}; attach a debugger with "
              f"`swarm debug` (session {self.id})", file=sys.stderr, flush=True)

    def _owner_connected(self) -> bool:
        conns = list(getattr(self.core, "_all_conns", ()))
        return self.owner is not None and any(c.peer_id == self.owner and not c.closed for c in conns)

    def wait_for_client(self) -> _Wire:
        """Block until a peer proves it knows the cluster token (others are dropped unread). Raises
        OwnerGone if the process that submitted the task exits meanwhile: nobody would ever attach."""
        while True:
            readable, _, _ = select.select([self.listener], [], [], 1.0)
            if not readable:
                if self.watch_owner and not self._owner_connected():
                    raise OwnerGone(f"the debugger session of {self.info['task_name']} was closed unused: "
                                    f"the process that submitted the task exited")
                continue
            sock, _ = self.listener.accept()
            if connection.server_handshake(sock, self.token):
                break
            sock.close()
        self.listener.close()   # one client per session
        self.wire = _Wire(sock)
        self.info["attached"] = True
        self._update_kv()
        return self.wire

    def _write_file(self) -> None:
        assert self.file is not None
        os.makedirs(os.path.dirname(self.file), mode=0o700, exist_ok=True)
        fd = os.open(self.file + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(dict(self.info, token=self.token.hex()), f)
        os.replace(self.file + ".tmp", self.file)   # readers never see half a file

    def _update_kv(self) -> None:
        from swarm.experimental import internal_kv
        if self.file is not None and self.info["attached"]:
            try:
                self._write_file()
            except OSError:
                pass
        try:
            internal_kv.kv_put(self.id, json.dumps(self.info).encode(), namespace=NAMESPACE)
        except Exception as e:   # the session still works; `swarm debug` just shows it as not attached
            log.debug("could not update debugger session %s: %s", self.id, e)

    def end(self, note: str = "") -> None:
        if self.ended:
            return
        self.ended = True
        if self.wire is not None:
            if note:
                self.wire.write(f"swarm: {note}\n")
            self.wire.close()
        else:
            self.listener.close()
        if self.file is not None:
            try:
                os.unlink(self.file)
            except OSError:
                pass
        from swarm.experimental import internal_kv
        try:
            internal_kv.kv_del(self.id, namespace=NAMESPACE)
        except Exception as e:   # stale entries are dropped by `swarm debug` when it finds them dead
            log.debug("could not remove debugger session %s: %s", self.id, e)


def _open(w: Any, frame: FrameType, kind: str, reason: str = "") -> Session | None:
    try:
        session = Session(w, frame, kind, reason)
    except OSError as e:
        print(f"swarm: cannot pause for the debugger (no port to listen on: {e}); going on",
              file=sys.stderr, flush=True)
        return None
    try:
        session.register()
    except Exception as e:
        session.end()
        print(f"swarm: cannot pause for the debugger: registering the session with the cluster failed "
              f"({e}); going on", file=sys.stderr, flush=True)
        return None
    return session


def _entry_frame(frame: FrameType) -> FrameType:
    """The outermost frame of user code under swarm's worker loop: the task function (or method)."""
    entry = frame
    f = frame.f_back
    while f is not None and not str(f.f_globals.get("__name__", "")).startswith("swarm."):
        entry = f
        f = f.f_back
    return entry


class RemotePdb(pdb.Pdb):
    """pdb over a session's socket. ``c`` ends the session and the task goes on; ``q`` (or the client
    going away) ends it and raises BdbQuit in the task; a ``swarm.cancel`` while paused cancels."""

    def __init__(self, session: Session, wire: _Wire) -> None:
        # nosigint: SIGINT belongs to the worker (it is how swarm.cancel interrupts a task);
        # skip: stepping never stops inside swarm's own code (the worker loop, swarm.get, ...)
        super().__init__(stdin=wire, stdout=wire, nosigint=True, readrc=False,  # type: ignore[arg-type]
                         skip=["swarm.*"])
        self.session = session
        self.entry: FrameType | None = None
        self.prompt = "(swarm-pdb) "

    def _end(self, note: str) -> None:
        self.clear_all_breaks()   # nobody is attached any more to stop at them
        if self.session.info["kind"] == "post_mortem":
            note = "session ended; the task fails with its exception"
        self.session.end(note)

    def do_continue(self, arg: str) -> bool:
        self._end("session ended; the task continues")
        self.set_continue()
        return True

    do_c = do_cont = do_continue

    def do_quit(self, arg: str) -> bool:
        self._end("session ended; the task fails with BdbQuit")
        self._user_requested_quit = True
        self.set_quit()
        if self.session.info["kind"] == "breakpoint":
            # raised here (rather than bare by bdb at the next line) so the task's error says why
            raise bdb.BdbQuit(f"the debugger session of {self.session.info['task_name']} was quit "
                              f"(q in `swarm debug`), which stops the task")
        return True

    do_q = do_exit = do_quit

    def do_EOF(self, arg: str) -> bool:  # noqa: N802  (pdb's name)
        return self.do_quit(arg)

    def _cmdloop(self) -> None:
        # pdb turns Ctrl-C into "--KeyboardInterrupt--" at the prompt; here a KeyboardInterrupt is
        # swarm.cancel interrupting the task, so it must reach the task
        try:
            self.cmdloop()
        except KeyboardInterrupt:
            self._end("the task was cancelled")
            self.set_continue()
            sys.settrace(None)
            raise

    def user_return(self, frame: FrameType, return_value: Any) -> None:
        super().user_return(frame, return_value)
        if frame is self.entry and not self.session.ended:
            # the task function returned: leave before stepping into swarm's loop or the next task
            self._end("the task's function returned; session ended")
            self.set_continue()


def set_trace(frame: FrameType | None = None) -> None:
    """Pause here until ``swarm debug`` attaches (in a task or actor method); plain pdb elsewhere."""
    frame = frame or sys._getframe().f_back
    w = _worker()
    if w is None:
        pdb.Pdb().set_trace(frame)
        return
    session = _open(w, frame, "breakpoint")   # type: ignore[arg-type]
    if session is None:
        return
    try:
        wire = session.wait_for_client()
        debugger = RemotePdb(session, wire)
        debugger.entry = _entry_frame(frame)   # type: ignore[arg-type]
    except BaseException as e:   # owner gone, cancelled while waiting (KeyboardInterrupt), listener failed
        session.end()
        if isinstance(e, OwnerGone):
            print(f"swarm: {e}", file=sys.stderr, flush=True)
        raise
    # last: once tracing is on, any further call here would be stepped into
    debugger.set_trace(frame)


def breakpointhook(*args: Any, **kwargs: Any) -> None:
    """``sys.breakpointhook`` of workers: ``breakpoint()`` opens a remote session (PYTHONBREAKPOINT=0
    still turns breakpoints off)."""
    if os.environ.get("PYTHONBREAKPOINT") == "0":
        return
    set_trace(sys._getframe().f_back)


def post_mortem(error: BaseException) -> None:
    """A session on the frames of ``error`` (uncaught in a task); returns when it ends."""
    w = _worker()
    tb = error.__traceback__
    if w is None or tb is None:
        return
    inner: TracebackType = tb
    while inner.tb_next is not None:
        inner = inner.tb_next
    reason = f"{type(error).__name__}: {error}"[:200]
    session = _open(w, inner.tb_frame, "post_mortem", reason)
    if session is None:
        return
    try:
        wire = session.wait_for_client()
        debugger = RemotePdb(session, wire)
        debugger.message(f"swarm: post-mortem of {session.info['task_name']}: {reason}")
        debugger.reset()
        debugger.interaction(None, tb)
    except OwnerGone as e:
        print(f"swarm: {e}", file=sys.stderr, flush=True)
    except bdb.BdbQuit:
        pass
    finally:
        session.end("session ended; the task fails with its exception")
        sys.settrace(None)


def maybe_post_mortem(error: BaseException) -> None:
    """For the worker: a post-mortem session when SWARM_DEBUG_POST_MORTEM is set. Read now, not at
    start, because a task's runtime_env env_vars can set it for that task alone."""
    if os.environ.get("SWARM_DEBUG_POST_MORTEM", "").lower() not in ("1", "true", "yes", "on"):
        return
    if isinstance(error, bdb.BdbQuit):   # the user quit a debugger session: that is not a bug to debug
        return
    try:
        post_mortem(error)
    except Exception:
        log.exception("the post-mortem debugger session failed")


__all__ = ["set_trace", "post_mortem", "breakpointhook", "RemotePdb", "Session"]
