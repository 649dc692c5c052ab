"""Make logging safe in Serve's actor processes (a workaround for a swarm runtime bug).

swarm's worker processes are forked from the node manager and inherit its root ``FileHandler``, whose
file descriptor is, in the worker, one of the worker's *sockets*: a record logged to the root logger
is written into that socket, and ``logging.config.dictConfig`` (which uvicorn calls) closes it, after
which the worker's replies never arrive. Here the inherited handler is detached without closing its
descriptor, and records go to stderr (which swarm forwards to the driver, prefixed).
"""

from __future__ import annotations

import logging
import os
import sys

_done = False
# Detached handlers are kept alive: garbage-collecting one would close its stream, i.e. the socket.
_quarantine: list[logging.Handler] = []


def repair_worker_logging() -> None:
    global _done
    if _done:
        return
    _done = True
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, logging.FileHandler) and not _writes_its_file(h):
            root.removeHandler(h)  # not h.close(): that would close the worker's socket
            _quarantine.append(h)
            refs = getattr(logging, "_handlerList", [])  # so logging.shutdown() never closes it either
            refs[:] = [r for r in refs if r() is not h]
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.WARNING)


def _writes_its_file(h: logging.FileHandler) -> bool:
    stream = getattr(h, "stream", None)
    if stream is None:
        return True
    try:
        return os.path.samefile(f"/proc/self/fd/{stream.fileno()}", h.baseFilename)
    except (OSError, ValueError):
        return False
