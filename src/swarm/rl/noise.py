"""The shared noise table of evolution strategies (Salimans et al., 2017).

One large block of standard-normal float32 numbers, made once by the learner and ``put`` once into the
object store; every rollout worker gets the same ref and reads it as a zero-copy, read-only view. A
perturbation is then named by an integer offset into the table instead of shipping the vector itself.
"""

from __future__ import annotations

import numpy as np

DEFAULT_SIZE = 2**22  # 4 Mi float32 numbers = 16 MiB


def make_noise_table(seed: int, size: int = DEFAULT_SIZE) -> np.ndarray:
    """``size`` standard-normal float32 numbers from ``seed`` (same seed: same table)."""
    return np.random.default_rng(seed).standard_normal(size, dtype=np.float32)


def sample_offsets(rng: np.random.Generator, table_size: int, dim: int, count: int) -> np.ndarray:
    """``count`` random offsets at which a ``dim``-long slice fits in the table."""
    if dim > table_size:
        raise ValueError(f"noise table of {table_size} numbers is smaller than the {dim} parameters")
    return rng.integers(0, table_size - dim + 1, size=count)


def noise_slice(table: np.ndarray, offset: int, dim: int) -> np.ndarray:
    """The perturbation at ``offset``: a view of the table, never a copy."""
    return table[offset:offset + dim]
