"""What the training loop and the learners share: a unit of rollout work (:class:`Job`), the learner
interface, and the Adam optimizer used by both learners."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class Job:
    """One call on a rollout worker: ``worker.<method>.remote(params_ref, *args)``.

    Jobs carry everything that makes their result deterministic (noise offsets, episode seeds), so a
    job lost with a dead worker is simply sent again, to its replacement, with the same outcome.
    """

    method: str
    args: tuple = ()


class Learner(Protocol):
    """An algorithm as the training loop sees it: the current flat parameters, this iteration's jobs,
    and an update from their results (given in job order, whatever order they finished in)."""

    params: np.ndarray

    def jobs(self) -> list[Job]: ...

    def update(self, results: list[Any]) -> dict[str, float]: ...


class Adam:
    """Adam on a flat parameter vector; ``step`` takes the gradient of a loss to *minimize*."""

    def __init__(self, dim: int, lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.m = np.zeros(dim, dtype=np.float32)
        self.v = np.zeros(dim, dtype=np.float32)
        self.t = 0

    def step(self, params: np.ndarray, grad: np.ndarray) -> np.ndarray:
        self.t += 1
        self.m = (self.beta1 * self.m + (1 - self.beta1) * grad).astype(np.float32)
        self.v = (self.beta2 * self.v + (1 - self.beta2) * grad * grad).astype(np.float32)
        a = self.lr * np.sqrt(1 - self.beta2 ** self.t) / (1 - self.beta1 ** self.t)
        return (params - a * self.m / (np.sqrt(self.v) + self.eps)).astype(np.float32)


def chunks(n: int, size: int) -> list[slice]:
    """``[0, n)`` cut into consecutive slices of at most ``size``."""
    size = max(1, int(size))
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]
