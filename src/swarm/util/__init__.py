"""Helpers and drop-ins built on the public API only.

    multiprocessing.Pool ──▶ actors running batches of items      (util/multiprocessing.py)
    joblib "swarm" backend ──▶ tasks                                (util/joblib.py)
    Executor (concurrent.futures) ──▶ tasks; futures from refs      (util/executor.py)
    ActorPool, Queue ──▶ actors                                     (util/actor_pool.py, util/queue.py)
    dask scheduler ──▶ one task per graph key, values in the store  (util/dask.py)
    as_completed(refs) ──▶ refs as they finish (wait)                (util/completion.py)
    pdb.set_trace() / breakpoint() in a task ──▶ `swarm debug`       (util/rpdb.py)

Submodules load lazily so ``import swarm`` stays fast.
"""

from __future__ import annotations

import importlib
import socket
from typing import Any

_PG = "swarm.util.placement_group"
_LAZY = {"ActorPool": "swarm.util.actor_pool", "Queue": "swarm.util.queue", "Executor": "swarm.util.executor",
         "placement_group": _PG, "remove_placement_group": _PG, "PlacementGroup": _PG,
         "as_completed": "swarm.util.completion"}
_LAZY_MODULES = {"pdb": "swarm.util.rpdb", "rpdb": "swarm.util.rpdb"}   # swarm.util.pdb, as ray.util.pdb


def get_node_ip_address() -> str:
    """This node's IP address as other nodes reach it (loopback for a local cluster)."""
    from swarm import api
    w = api._worker
    if w is not None and getattr(w, "node_info", None):
        return w.node_info.get("node_ip", "127.0.0.1")
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def __getattr__(name: str) -> Any:
    if name in _LAZY_MODULES:
        return importlib.import_module(_LAZY_MODULES[name])
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'swarm.util' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = ["ActorPool", "Queue", "Executor", "get_node_ip_address", "placement_group",
           "remove_placement_group", "PlacementGroup", "as_completed"]
