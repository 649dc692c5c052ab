"""Settings that solve each supported environment, measured on a 2-core machine (see the example)."""

from __future__ import annotations

import dataclasses
from typing import Any

from swarm.rl.es import ESConfig
from swarm.rl.pg import PGConfig
from swarm.rl.trainer import TrainConfig

# target_return: Gymnasium's reward threshold for "solved" (mean over eval_episodes=100 episodes)
PRESETS: dict[str, dict[str, Any]] = {
    "CartPole-v1": {
        "es": {"hidden": (32,), "target_return": 475.0, "iterations": 200, "es": ESConfig(pop_size=30)},
        "pg": {"hidden": (32,), "target_return": 475.0, "iterations": 300, "pg": PGConfig(lr=0.02)},
    },
    "LunarLander-v3": {  # needs Box2D: pip install "gymnasium[box2d]"
        "es": {"hidden": (32,), "target_return": 200.0, "iterations": 400,
               "es": ESConfig(pop_size=64, sigma=0.1, lr=0.05, pairs_per_job=2)},
    },
}


def config_for(env_id: str, algo: str = "es", **overrides: Any) -> TrainConfig:
    """A :class:`TrainConfig` for ``env_id`` and ``algo`` from its preset, with ``overrides`` applied."""
    base = dict(PRESETS.get(env_id, {}).get(algo, {}))
    for key in ("es", "pg"):
        if key in base:
            base[key] = dataclasses.replace(base[key])  # a fresh copy per call
    base.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(env_id=env_id, algo=algo, **base)
