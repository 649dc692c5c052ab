"""The rollout worker: an actor that owns a Gymnasium environment for its whole life.

The environment is made once, in the constructor, and stepped by every later call (``reset`` with a
per-episode seed makes each episode reproducible); the worker also keeps its own counters. Each call
gets the policy parameters as its first argument: the learner passes the *same* ObjectRef to every
worker, so the array arrives from the object store (a zero-copy, read-only view when it is large) and
is only ever read here. The ES noise table is given once, to the constructor, the same way.

Start one with :func:`start_worker`; the class itself is plain Python, so it can also be used in
process (tests, debugging).
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from swarm.rl.noise import noise_slice
from swarm.rl.policy import MLPPolicy, softmax


def make_env(env_id: str, env_kwargs: dict | None = None) -> Any:
    """``gymnasium.make`` without the passive checker (it only slows every step down)."""
    import gymnasium as gym
    return gym.make(env_id, disable_env_checker=True, **(env_kwargs or {}))


class RolloutWorker:
    """Runs episodes of one environment with policies given as flat parameter vectors."""

    def __init__(self, env_id: str, hidden: tuple[int, ...] = (32,), worker_index: int = 0,
                 noise: np.ndarray | None = None, env_kwargs: dict | None = None) -> None:
        self.env_id = env_id
        self.env = make_env(env_id, env_kwargs)
        self.policy = MLPPolicy.for_env(self.env, tuple(hidden))
        self.worker_index = worker_index
        self.noise = noise
        self.episodes = 0
        self.steps = 0
        self.calls = 0
        self.params_writeable: list[bool] = []
        self._cpu0 = 0.0

    # -- helpers ---------------------------------------------------------------------------------

    def _receive(self, params: np.ndarray) -> None:
        self._cpu0 = time.process_time()
        self.calls += 1
        self.params_writeable.append(bool(params.flags.writeable))
        del self.params_writeable[:-100]

    def _meta(self, params: np.ndarray) -> dict:
        return {"pid": os.getpid(), "worker_index": self.worker_index,
                "params_writeable": bool(params.flags.writeable),
                "cpu_s": time.process_time() - self._cpu0}

    def _episode(self, flat: np.ndarray, seed: int) -> tuple[float, int]:
        """One episode of the deterministic policy ``flat``: (return, length)."""
        layers = self.policy.unflatten(flat)
        act = self.policy.act
        obs, _ = self.env.reset(seed=int(seed))
        total, n = 0.0, 0
        while True:
            obs, reward, terminated, truncated, _ = self.env.step(act(layers, obs))
            total += float(reward)
            n += 1
            if terminated or truncated:
                break
        self.episodes += 1
        self.steps += n
        return total, n

    # -- calls -------------------------------------------------------------------------------------

    def evaluate(self, params: np.ndarray, seeds: list[int]) -> dict:
        """Returns of the deterministic policy on one episode per seed."""
        self._receive(params)
        out = [self._episode(params, s) for s in seeds]
        return {"returns": np.array([r for r, _ in out]), "steps": sum(n for _, n in out),
                **self._meta(params)}

    def es_rollouts(self, params: np.ndarray, offsets: list[int], seeds: list[int], sigma: float) -> dict:
        """Antithetic pairs: for each (offset, seed), the return of ``params ± sigma * noise[offset:]``
        on the same episode seed. ``returns`` has shape (pairs, 2)."""
        if self.noise is None:
            raise ValueError("this worker was started without a noise table")
        self._receive(params)
        dim = params.shape[0]
        returns = np.zeros((len(offsets), 2))
        steps = 0
        for i, (off, seed) in enumerate(zip(offsets, seeds, strict=True)):
            eps = sigma * noise_slice(self.noise, int(off), dim)
            for k, sign in enumerate((1.0, -1.0)):
                returns[i, k], n = self._episode(params + sign * eps, seed)
                steps += n
        return {"returns": returns, "steps": steps, **self._meta(params)}

    def pg_rollouts(self, params: np.ndarray, seeds: list[int]) -> dict:
        """Episodes of the stochastic (softmax) policy, one per seed, with everything policy gradient
        needs: per-episode observations, actions and rewards."""
        if not self.policy.discrete:
            raise ValueError("policy gradient here supports discrete action spaces only")
        self._receive(params)
        layers = self.policy.unflatten(params)
        episodes = []
        steps = 0
        for seed in seeds:
            rng = np.random.default_rng(int(seed))
            obs, _ = self.env.reset(seed=int(seed))
            obs_l, act_l, rew_l = [], [], []
            while True:
                p = softmax(MLPPolicy.logits(layers, obs))
                a = min(int(np.searchsorted(np.cumsum(p), rng.random())), len(p) - 1)
                obs_l.append(obs)
                act_l.append(a)
                obs, reward, terminated, truncated, _ = self.env.step(a)
                rew_l.append(float(reward))
                if terminated or truncated:
                    break
            self.episodes += 1
            self.steps += len(rew_l)
            steps += len(rew_l)
            episodes.append({"obs": np.asarray(obs_l, dtype=np.float32), "actions": np.asarray(act_l),
                             "rewards": np.asarray(rew_l, dtype=np.float32)})
        return {"episodes": episodes, "steps": steps, **self._meta(params)}

    def stats(self) -> dict:
        """What this worker has done so far (it lives across calls) and how it saw its inputs."""
        return {"pid": os.getpid(), "worker_index": self.worker_index, "env_id": self.env_id,
                "episodes": self.episodes, "steps": self.steps, "calls": self.calls,
                "params_writeable": list(self.params_writeable),
                "noise_writeable": None if self.noise is None else bool(self.noise.flags.writeable)}

    def ping(self) -> int:
        return os.getpid()


_ACTOR_CLASS: Any = None


def start_worker(env_id: str, hidden: tuple[int, ...], worker_index: int, noise_ref: Any = None,
                 env_kwargs: dict | None = None, num_cpus: float = 1) -> Any:
    """A :class:`RolloutWorker` actor (``num_cpus`` reserved for it); returns its handle at once."""
    global _ACTOR_CLASS
    if _ACTOR_CLASS is None:
        import swarm
        _ACTOR_CLASS = swarm.remote(RolloutWorker)
    return _ACTOR_CLASS.options(num_cpus=num_cpus).remote(env_id, tuple(hidden), worker_index, noise_ref,
                                                      env_kwargs)
