"""Policy gradient (REINFORCE with a normalized-return baseline) for discrete actions, in NumPy.

Per iteration the workers sample ``episodes_per_iter`` episodes with the softmax policy; the learner
turns rewards into discounted returns-to-go, standardizes them over the batch (the baseline) and takes
an Adam step along ``∇ mean(G_t · log π(a_t|s_t))`` (hand-written backprop in ``policy.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from swarm.rl.base import Adam, Job, chunks
from swarm.rl.policy import MLPPolicy, policy_gradient


@dataclass
class PGConfig:
    episodes_per_iter: int = 10
    lr: float = 0.01
    gamma: float = 0.99
    episodes_per_job: int = 1


def discounted_returns(rewards: np.ndarray, gamma: float) -> np.ndarray:
    out = np.empty(len(rewards), dtype=np.float64)
    acc = 0.0
    for i in range(len(rewards) - 1, -1, -1):
        acc = float(rewards[i]) + gamma * acc
        out[i] = acc
    return out


class PGLearner:
    def __init__(self, policy: MLPPolicy, config: PGConfig | None = None, seed: int = 0) -> None:
        if not policy.discrete:
            raise ValueError("PGLearner supports discrete action spaces only")
        self.config = config or PGConfig()
        self.policy = policy
        self.rng = np.random.default_rng(seed)
        self.params = policy.init_params(self.rng)
        self.optimizer = Adam(self.params.size, self.config.lr)

    def jobs(self) -> list[Job]:
        n = self.config.episodes_per_iter
        seeds = self.rng.integers(0, 2**31 - 1, size=n)
        return [Job("pg_rollouts", ([int(x) for x in seeds[s]],))
                for s in chunks(n, self.config.episodes_per_job)]

    def update(self, results: list[Any]) -> dict[str, float]:
        episodes = [ep for r in results for ep in r["episodes"]]
        obs = np.concatenate([ep["obs"] for ep in episodes])
        actions = np.concatenate([ep["actions"] for ep in episodes])
        g = np.concatenate([discounted_returns(ep["rewards"], self.config.gamma) for ep in episodes])
        weights = (g - g.mean()) / (g.std() + 1e-8)
        grad, entropy = policy_gradient(self.policy, self.params, obs, actions, weights)
        self.params = self.optimizer.step(self.params, -grad)
        totals = np.array([float(ep["rewards"].sum()) for ep in episodes])
        return {"mean_return": float(totals.mean()), "max_return": float(totals.max()),
                "min_return": float(totals.min()), "episodes": float(len(episodes)), "entropy": entropy}
