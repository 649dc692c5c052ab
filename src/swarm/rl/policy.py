"""A small NumPy MLP policy whose parameters are one flat float32 vector.

The flat vector is what the learner ``put``s into the object store once per iteration; a rollout worker
reads it as a zero-copy, read-only view and never needs to copy it: :meth:`MLPPolicy.unflatten` returns
views into it, and every forward pass only reads them.

Discrete action spaces take the arg-max of the logits (``act``) or sample from their softmax
(``sample``, for policy gradient); continuous (Box) spaces squash the output with ``tanh`` into the
action bounds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class MLPPolicy:
    """Shape of a tanh MLP: ``obs_dim -> hidden... -> act_dim``; no parameters are kept here."""

    obs_dim: int
    act_dim: int
    hidden: tuple[int, ...] = (32,)
    discrete: bool = True
    act_low: tuple[float, ...] = field(default=())
    act_high: tuple[float, ...] = field(default=())

    @staticmethod
    def for_env(env: Any, hidden: tuple[int, ...] = (32,)) -> MLPPolicy:
        """The policy shape for a Gymnasium env's observation and action spaces."""
        obs_dim = int(np.prod(env.observation_space.shape))
        space = env.action_space
        if hasattr(space, "n"):
            return MLPPolicy(obs_dim, int(space.n), tuple(hidden), True)
        low = tuple(float(x) for x in np.ravel(space.low))
        high = tuple(float(x) for x in np.ravel(space.high))
        return MLPPolicy(obs_dim, int(np.prod(space.shape)), tuple(hidden), False, low, high)

    # -- parameters ------------------------------------------------------------------------------

    @property
    def sizes(self) -> list[int]:
        return [self.obs_dim, *self.hidden, self.act_dim]

    @property
    def num_params(self) -> int:
        s = self.sizes
        return sum(s[i] * s[i + 1] + s[i + 1] for i in range(len(s) - 1))

    def init_params(self, rng: np.random.Generator) -> np.ndarray:
        """Scaled-normal weights (last layer small, so the initial policy is near uniform), zero biases."""
        parts = []
        s = self.sizes
        for i in range(len(s) - 1):
            scale = 1.0 / np.sqrt(s[i]) if i < len(s) - 2 else 0.1 / np.sqrt(s[i])
            parts.append((rng.standard_normal((s[i], s[i + 1])) * scale).ravel())
            parts.append(np.zeros(s[i + 1]))
        return np.concatenate(parts).astype(np.float32)

    def unflatten(self, flat: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """``[(W, b), ...]`` as views of ``flat`` (no copy: works on read-only shared memory)."""
        if flat.shape != (self.num_params,):
            raise ValueError(f"expected {self.num_params} parameters, got shape {flat.shape}")
        layers = []
        off = 0
        s = self.sizes
        for i in range(len(s) - 1):
            w = flat[off:off + s[i] * s[i + 1]].reshape(s[i], s[i + 1])
            off += s[i] * s[i + 1]
            b = flat[off:off + s[i + 1]]
            off += s[i + 1]
            layers.append((w, b))
        return layers

    # -- forward -------------------------------------------------------------------------------------

    @staticmethod
    def logits(layers: list[tuple[np.ndarray, np.ndarray]], obs: np.ndarray) -> np.ndarray:
        h = obs
        for w, b in layers[:-1]:
            h = np.tanh(h @ w + b)
        w, b = layers[-1]
        return h @ w + b

    def act(self, layers: list[tuple[np.ndarray, np.ndarray]], obs: np.ndarray) -> Any:
        """The deterministic action for one observation."""
        out = self.logits(layers, obs)
        if self.discrete:
            return int(np.argmax(out))
        return self._squash(out)

    def _squash(self, out: np.ndarray) -> np.ndarray:
        low = np.asarray(self.act_low, dtype=np.float32)
        high = np.asarray(self.act_high, dtype=np.float32)
        return (low + (np.tanh(out) + 1.0) * 0.5 * (high - low)).astype(np.float32)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def policy_gradient(policy: MLPPolicy, flat: np.ndarray, obs: np.ndarray, actions: np.ndarray,
                    weights: np.ndarray) -> tuple[np.ndarray, float]:
    """Gradient of ``mean(weights * log pi(a|s))`` w.r.t. the flat parameters (discrete policies).

    Hand-written backprop through the tanh MLP; returns ``(grad, mean entropy)``.
    """
    layers = policy.unflatten(flat)
    acts = [obs.astype(np.float32)]
    h = acts[0]
    for w, b in layers[:-1]:
        h = np.tanh(h @ w + b)
        acts.append(h)
    w, b = layers[-1]
    probs = softmax(h @ w + b)
    n = obs.shape[0]
    # d/dlogits of weights * log softmax(logits)[a] = weights * (onehot(a) - probs)
    dz = -probs
    dz[np.arange(n), actions] += 1.0
    dz *= (weights / n)[:, None]
    grads: list[np.ndarray] = []
    for i in range(len(layers) - 1, -1, -1):
        w, _ = layers[i]
        a_in = acts[i]
        grads.append(dz.sum(axis=0))
        grads.append((a_in.T @ dz).ravel())
        if i > 0:
            dz = (dz @ w.T) * (1.0 - acts[i] ** 2)
    grads.reverse()
    entropy = float(-(probs * np.log(probs + 1e-8)).sum(axis=1).mean())
    return np.concatenate(grads).astype(np.float32), entropy
