"""APIs that may still change: ``internal_kv`` (the cluster's small KV), ``tqdm`` (progress bars from
tasks), ``as_completed``."""

from __future__ import annotations

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    # lazily, so ``import swarm`` and importing one of these stays cheap
    if name == "as_completed":
        from swarm.util.completion import as_completed
        return as_completed
    if name in ("internal_kv", "tqdm"):
        return importlib.import_module(f"swarm.experimental.{name}")
    raise AttributeError(f"module 'swarm.experimental' has no attribute {name!r}")


__all__ = ["as_completed", "internal_kv", "tqdm"]
