"""How a worker process starts, dies and is reaped; ``node_manager`` decides *when*.

Workers are forked from the node manager, which is single-threaded and has already imported the
runtime (and frozen its heap with ``gc.freeze()``), so a new worker costs a couple of milliseconds
and little unique memory. Each worker gets its own process group (so a kill reaches its children
too) and ``PR_SET_PDEATHSIG`` (so it dies with the node manager, even when that one is SIGKILLed).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import socket
from typing import Callable

PR_SET_PDEATHSIG = 1
_libc = None


def set_parent_death_signal(sig: int = signal.SIGKILL) -> None:
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        _libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    except OSError:  # not Linux: the node manager's teardown still kills its workers
        pass


def _close_fds_except(keep: set[int]) -> None:
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 1024))
    for fd in fds:
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _reset_logging() -> None:
    """Forget the node manager's log handlers: their files are closed here and the descriptor numbers
    will be reused by sockets. Worker logging goes to stderr (the node manager captures it)."""
    import logging
    import sys

    for lg in [logging.getLogger()] + [v for v in logging.Logger.manager.loggerDict.values()
                                        if isinstance(v, logging.Logger)]:
        lg.handlers = []
    logging.getLogger().setLevel(logging.WARNING)

    class CurrentStderr(logging.StreamHandler):
        """Writes to whatever sys.stderr is at the time (the worker tags it with the task name)."""

        @property  # type: ignore[override]
        def stream(self) -> object:
            return sys.stderr

        @stream.setter
        def stream(self, _value: object) -> None:
            pass

    handler = CurrentStderr()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)


def fork_worker(child_main: Callable[[], None], keep_fds: set[int], stdout_fd: int, stderr_fd: int,
                parent_pid: int) -> int:
    """Fork; in the child wire stdio, drop every other inherited fd and run ``child_main``."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        os.setpgid(0, 0)
        set_parent_death_signal(signal.SIGKILL)
        if os.getppid() != parent_pid:   # the parent died between fork and prctl
            os._exit(1)
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.dup2(stdout_fd, 1)
        os.dup2(stderr_fd, 2)
        _reset_logging()
        _close_fds_except(keep_fds | {0, 1, 2})
        child_main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 0
    except BaseException:
        import traceback
        traceback.print_exc()
    finally:
        os._exit(code)


def describe_exit(status: int) -> tuple[str, int | None, int | None]:
    """(text, exit code, signal) for a ``waitpid`` status."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"killed by signal {sig} ({name})", None, sig
    code = os.WEXITSTATUS(status)
    return f"exited with code {code}", code, None


def socketpair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
