"""Scheduling strategies (names as ``ray.util.scheduling_strategies``)."""

from __future__ import annotations

from typing import Any


class NodeAffinitySchedulingStrategy:
    """Run on the node ``node_id`` (hex id from ``nodes()`` / the runtime context); with ``soft=True``
    fall back to any node when that one is dead or cannot fit the request."""

    def __init__(self, node_id: str, soft: bool, _spill_on_unavailable: bool = False,
                 _fail_on_unavailable: bool = False) -> None:
        self.node_id = node_id
        self.soft = soft


class PlacementGroupSchedulingStrategy:
    """Run in bundle ``placement_group_bundle_index`` of ``placement_group`` (-1: any of its bundles)."""

    def __init__(self, placement_group: Any, placement_group_bundle_index: int = -1,
                 placement_group_capture_child_tasks: bool | None = None) -> None:
        self.placement_group = placement_group
        self.placement_group_bundle_index = placement_group_bundle_index
        self.placement_group_capture_child_tasks = placement_group_capture_child_tasks


def to_wire(strategy: Any) -> dict | None:
    """The strategy as the node managers understand it (None: the default hybrid policy)."""
    if strategy is None or strategy == "DEFAULT":
        return None
    if strategy == "SPREAD":
        return {"type": "SPREAD"}
    if isinstance(strategy, NodeAffinitySchedulingStrategy):
        return {"node_id": strategy.node_id, "soft": bool(strategy.soft)}
    raise ValueError(f"unknown scheduling_strategy {strategy!r}: use 'DEFAULT', 'SPREAD' or "
                     f"NodeAffinitySchedulingStrategy(node_id, soft)")
