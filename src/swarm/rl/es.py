"""OpenAI-ES (Salimans et al., 2017): antithetic Gaussian perturbations named by offsets into a shared
noise table, centered-rank fitness shaping, Adam with weight decay.

Per iteration: ``pop_size / 2`` offsets and episode seeds are drawn; each pair ``θ ± σε`` is run on the
same seed (common random numbers); the returns are replaced by their centered ranks in [-0.5, 0.5]
and the gradient estimate is ``Σ (rank⁺ - rank⁻) ε / pop_size``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from swarm.rl.base import Adam, Job, chunks
from swarm.rl.noise import noise_slice, sample_offsets
from swarm.rl.policy import MLPPolicy


@dataclass
class ESConfig:
    pop_size: int = 30          # perturbed policies per iteration (an even number: pairs)
    sigma: float = 0.1          # perturbation scale
    lr: float = 0.1             # Adam step size
    l2: float = 0.005           # weight decay
    pairs_per_job: int = 1      # antithetic pairs per worker call


def centered_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks of ``x`` (same shape) scaled to [-0.5, 0.5]: fitness shaping insensitive to outliers."""
    flat = x.ravel()
    ranks = np.empty(flat.size, dtype=np.float64)
    ranks[flat.argsort(kind="stable")] = np.arange(flat.size)
    return (ranks / max(flat.size - 1, 1) - 0.5).reshape(x.shape)


class ESLearner:
    """Evolution strategies on a flat parameter vector; ``noise`` is the (local) shared noise table."""

    def __init__(self, policy: MLPPolicy, noise: np.ndarray, config: ESConfig | None = None,
                 seed: int = 0) -> None:
        self.config = config or ESConfig()
        if self.config.pop_size < 2 or self.config.pop_size % 2:
            raise ValueError(f"pop_size must be an even number >= 2, got {self.config.pop_size}")
        self.policy = policy
        self.noise = noise
        self.rng = np.random.default_rng(seed)
        self.params = policy.init_params(self.rng)
        self.optimizer = Adam(self.params.size, self.config.lr)
        self._offsets = np.zeros(0, dtype=np.int64)

    def jobs(self) -> list[Job]:
        pairs = self.config.pop_size // 2
        self._offsets = sample_offsets(self.rng, self.noise.size, self.params.size, pairs)
        seeds = self.rng.integers(0, 2**31 - 1, size=pairs)
        return [Job("es_rollouts", ([int(o) for o in self._offsets[s]], [int(x) for x in seeds[s]],
                                    self.config.sigma))
                for s in chunks(pairs, self.config.pairs_per_job)]

    def update(self, results: list[Any]) -> dict[str, float]:
        returns = np.concatenate([r["returns"] for r in results], axis=0)  # (pairs, 2)
        if returns.shape[0] != self._offsets.size:
            raise ValueError(f"expected {self._offsets.size} pairs of returns, got {returns.shape[0]}")
        ranks = centered_ranks(returns)
        weights = ranks[:, 0] - ranks[:, 1]
        dim = self.params.size
        grad = np.zeros(dim, dtype=np.float64)
        for w, off in zip(weights, self._offsets, strict=True):
            grad += w * noise_slice(self.noise, int(off), dim)
        grad /= returns.size
        # ascend the return (Adam minimizes) and decay the weights
        step = (-grad + self.config.l2 * self.params).astype(np.float32)
        self.params = self.optimizer.step(self.params, step)
        return {"mean_return": float(returns.mean()), "max_return": float(returns.max()),
                "min_return": float(returns.min()), "episodes": float(returns.size),
                "update_norm": float(np.linalg.norm(grad))}
