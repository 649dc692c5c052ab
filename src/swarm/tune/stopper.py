"""Stopping criteria (``ray.tune.stopper``): ``RunConfig(stop=...)`` takes a dict (``{"metric": bound}``:
stop once ``result[metric] >= bound``), a function ``(trial_id, result) -> bool``, or a ``Stopper``.

    result ──▶ stopper(trial_id, result) ──▶ True: this trial stops
               stopper.stop_all()        ──▶ True: every trial stops and no new one starts
"""

from __future__ import annotations

import math
import numbers
import statistics
import time
from collections import defaultdict, deque
from typing import Any, Callable


class Stopper:
    def __call__(self, trial_id: str, result: dict) -> bool:
        raise NotImplementedError

    def stop_all(self) -> bool:
        return False


class CombinedStopper(Stopper):
    """Stops a trial (or everything) as soon as any of its stoppers does."""

    def __init__(self, *stoppers: Stopper) -> None:
        self._stoppers = stoppers

    def __call__(self, trial_id: str, result: dict) -> bool:
        return any([s(trial_id, result) for s in self._stoppers])  # a list: every stopper sees the result

    def stop_all(self) -> bool:
        return any(s.stop_all() for s in self._stoppers)


class FunctionStopper(Stopper):
    def __init__(self, function: Callable[[str, dict], bool]) -> None:
        self._fn = function

    def __call__(self, trial_id: str, result: dict) -> bool:
        return bool(self._fn(trial_id, result))


class MaximumIterationStopper(Stopper):
    """Stops each trial after ``max_iter`` results."""

    def __init__(self, max_iter: int) -> None:
        self._max_iter = max_iter
        self._iter: dict[str, int] = defaultdict(int)

    def __call__(self, trial_id: str, result: dict) -> bool:
        self._iter[trial_id] += 1
        return self._iter[trial_id] >= self._max_iter


class TimeoutStopper(Stopper):
    """Stops the whole experiment ``timeout`` seconds (or a ``datetime.timedelta``) after it started."""

    def __init__(self, timeout: float | Any) -> None:
        self._budget = timeout.total_seconds() if hasattr(timeout, "total_seconds") else float(timeout)
        self._start: float | None = None

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        if self._start is None:
            self._start = time.monotonic()
        return time.monotonic() - self._start >= self._budget

    def __getstate__(self) -> dict:
        # a restored experiment gets a fresh budget measured from its own start
        return {**self.__dict__, "_start": None}


class TrialPlateauStopper(Stopper):
    """Stops a trial once the std of its last ``num_results`` values of ``metric`` is below ``std``."""

    def __init__(self, metric: str, std: float = 0.01, num_results: int = 4, grace_period: int = 4,
                 metric_threshold: float | None = None, mode: str | None = None) -> None:
        if metric_threshold is not None and mode not in ("min", "max"):
            raise ValueError("TrialPlateauStopper with metric_threshold needs mode='min' or 'max'")
        self._metric, self._std, self._num, self._grace = metric, std, num_results, grace_period
        self._threshold, self._mode = metric_threshold, mode
        self._values: dict[str, deque] = defaultdict(lambda: deque(maxlen=num_results))
        self._counts: dict[str, int] = defaultdict(int)

    def __call__(self, trial_id: str, result: dict) -> bool:
        raw = result.get(self._metric)
        if not isinstance(raw, numbers.Real):
            return False
        value = float(raw)
        self._counts[trial_id] += 1
        values = self._values[trial_id]
        values.append(value)
        if self._counts[trial_id] < self._grace or len(values) < self._num:
            return False
        if self._threshold is not None:
            if (self._mode == "min" and value > self._threshold) or \
                    (self._mode == "max" and value < self._threshold):
                return False
        return statistics.pstdev(values) <= self._std

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_values"] = {k: list(v) for k, v in self._values.items()}
        state["_counts"] = dict(self._counts)
        return state

    def __setstate__(self, state: dict) -> None:
        n = state["_num"]
        values = state.pop("_values")
        counts = state.pop("_counts")
        self.__dict__.update(state)
        self._values = defaultdict(lambda: deque(maxlen=n),
                                   {k: deque(v, maxlen=n) for k, v in values.items()})
        self._counts = defaultdict(int, counts)


class _DictStopper(Stopper):
    """``stop={"training_iteration": 10, "mean_accuracy": 0.98}``: any criterion reached stops the trial."""

    def __init__(self, criteria: dict) -> None:
        self._criteria = dict(criteria)

    def __call__(self, trial_id: str, result: dict) -> bool:
        for key, bound in self._criteria.items():
            if key not in result:
                from swarm.tune.error import TuneError
                raise TuneError(f"the stopping criterion {key!r} (RunConfig(stop=...)) is not in the trial's "
                                f"results, which have {sorted(result)}: report {key!r} or fix the name")
            value = result[key]
            if isinstance(value, numbers.Real) and not math.isnan(value) and value >= bound:
                return True
        return False


def make_stopper(stop: Any) -> Stopper | None:
    """The Stopper for ``RunConfig(stop=...)``."""
    if stop is None:
        return None
    if isinstance(stop, Stopper):
        return stop
    if isinstance(stop, dict):
        return _DictStopper(stop)
    if callable(stop):
        return FunctionStopper(stop)
    raise TypeError(f"RunConfig(stop=...) takes a dict, a function (trial_id, result) -> bool or a "
                    f"Stopper, got {type(stop).__name__}")
