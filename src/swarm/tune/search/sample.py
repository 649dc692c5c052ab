"""Search-space primitives: ``uniform``, ``loguniform``, ``quniform``, ``randint``, ``choice``,
``grid_search``, ``sample_from`` and friends, as in ``ray.tune.search.sample``.

A ``Domain`` is a description of a value, not a value: the variant generator (``variant_generator.py``)
samples it with a ``random.Random`` so a seeded search is reproducible, and model-based searchers
(``optuna/``) read its bounds to build their own distributions.
"""

from __future__ import annotations

import math
import random
from typing import Any, Callable, Sequence


class Domain:
    """A set of values a config entry may take."""

    def sample(self, rng: random.Random, spec: Any = None) -> Any:
        raise NotImplementedError

    def is_grid(self) -> bool:
        return False


def _quantize(value: float, q: float | None) -> float:
    return value if q is None else round(round(value / q) * q, 12)


class Float(Domain):
    """A float in ``[lower, upper]``, uniform in value (or in log-value); optionally a multiple of q."""

    def __init__(self, lower: float, upper: float, *, log: bool = False, base: float = 10.0,
                 q: float | None = None, normal: tuple[float, float] | None = None) -> None:
        if normal is None:
            if not lower < upper:
                raise ValueError(f"the lower bound ({lower}) must be smaller than the upper bound ({upper})")
            if log and lower <= 0:
                raise ValueError(f"a log-uniform range needs a positive lower bound, got {lower}")
        if q is not None and q <= 0:
            raise ValueError(f"the quantization step q must be positive, got {q}")
        self.lower, self.upper, self.log, self.base, self.q, self.normal = lower, upper, log, base, q, normal

    def sample(self, rng: random.Random, spec: Any = None) -> float:
        if self.normal is not None:
            return _quantize(rng.gauss(*self.normal), self.q)
        if self.log:
            lo, hi = math.log(self.lower, self.base), math.log(self.upper, self.base)
            value = self.base ** rng.uniform(lo, hi)
        else:
            value = rng.uniform(self.lower, self.upper)
        return min(max(_quantize(value, self.q), self.lower), self.upper)

    def __repr__(self) -> str:
        kind = "normal" if self.normal else ("loguniform" if self.log else "uniform")
        return f"Float({kind}, {self.lower}, {self.upper}" + (f", q={self.q})" if self.q else ")")


class Integer(Domain):
    """An int in ``[lower, upper)`` (``upper_inclusive`` for the q-variants, as Ray does)."""

    def __init__(self, lower: int, upper: int, *, log: bool = False, base: float = 10.0, q: int = 1,
                 upper_inclusive: bool = False) -> None:
        top = upper if upper_inclusive else upper - 1
        if top < lower:
            raise ValueError(f"the integer range [{lower}, {upper}{']' if upper_inclusive else ')'} is empty")
        if log and lower <= 0:
            raise ValueError(f"a log-uniform integer range needs a positive lower bound, got {lower}")
        self.lower, self.upper, self.log, self.base, self.q = lower, upper, log, base, q
        self.upper_inclusive = upper_inclusive

    @property
    def top(self) -> int:
        """The largest value the domain can produce."""
        return self.upper if self.upper_inclusive else self.upper - 1

    def sample(self, rng: random.Random, spec: Any = None) -> int:
        if self.log:
            lo, hi = math.log(self.lower, self.base), math.log(self.top + 1, self.base)
            value = int(self.base ** rng.uniform(lo, hi))
        else:
            value = rng.randint(self.lower, self.top)
        if self.q != 1:
            value = int(round(value / self.q) * self.q)
        return min(max(value, self.lower), self.top)

    def __repr__(self) -> str:
        extra = (", log" if self.log else "") + (f", q={self.q}" if self.q != 1 else "")
        return f"Integer({self.lower}, {self.top}{extra})"


class Categorical(Domain):
    """One of ``categories``, uniformly."""

    def __init__(self, categories: Sequence[Any]) -> None:
        self.categories = list(categories)
        if not self.categories:
            raise ValueError("choice() needs at least one category")

    def sample(self, rng: random.Random, spec: Any = None) -> Any:
        return self.categories[rng.randrange(len(self.categories))]

    def __repr__(self) -> str:
        return f"Categorical({self.categories!r})"


class Function(Domain):
    """``sample_from(func)``: ``func(spec)`` computes the value, ``spec.config`` being the rest of the
    config (already resolved), so one entry can depend on another."""

    def __init__(self, func: Callable[..., Any]) -> None:
        if not callable(func):
            raise TypeError(f"sample_from() needs a callable, got {type(func).__name__}")
        self.func = func

    def sample(self, rng: random.Random, spec: Any = None) -> Any:
        try:
            return self.func(spec)
        except TypeError:
            return self.func()  # Ray also accepts zero-argument functions

    def __repr__(self) -> str:
        return f"Function({getattr(self.func, '__name__', self.func)!r})"


def uniform(lower: float, upper: float) -> Float:
    return Float(lower, upper)


def quniform(lower: float, upper: float, q: float) -> Float:
    return Float(lower, upper, q=q)


def loguniform(lower: float, upper: float, base: float = 10) -> Float:
    return Float(lower, upper, log=True, base=base)


def qloguniform(lower: float, upper: float, q: float, base: float = 10) -> Float:
    return Float(lower, upper, log=True, base=base, q=q)


def randn(mean: float = 0.0, sd: float = 1.0) -> Float:
    return Float(-math.inf, math.inf, normal=(mean, sd))


def qrandn(mean: float, sd: float, q: float) -> Float:
    return Float(-math.inf, math.inf, normal=(mean, sd), q=q)


def randint(lower: int, upper: int) -> Integer:
    """An int in ``[lower, upper)``: the upper bound is exclusive, as in Ray and ``range``."""
    return Integer(lower, upper)


def qrandint(lower: int, upper: int, q: int = 1) -> Integer:
    """A multiple of q in ``[lower, upper]``: the upper bound is inclusive, as in Ray."""
    return Integer(lower, upper, q=q, upper_inclusive=True)


def lograndint(lower: int, upper: int, base: float = 10) -> Integer:
    return Integer(lower, upper, log=True, base=base)


def qlograndint(lower: int, upper: int, q: int, base: float = 10) -> Integer:
    return Integer(lower, upper, log=True, base=base, q=q, upper_inclusive=True)


def choice(categories: Sequence[Any]) -> Categorical:
    return Categorical(categories)


def sample_from(func: Callable[..., Any]) -> Function:
    return Function(func)


def grid_search(values: Sequence[Any]) -> dict:
    """Every value in turn: each sample of the search runs once per grid value (per combination)."""
    values = list(values)
    if not values:
        raise ValueError("grid_search() needs at least one value")
    return {"grid_search": values}


def is_grid(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "grid_search" in value
