"""``AsyncHyperBandScheduler`` (``ASHAScheduler``): asynchronous successive halving.

Rungs sit at ``grace_period * reduction_factor**k`` (below ``max_t``). The first time a trial reaches a
rung, its metric is compared with every value recorded at that rung so far: below the
``1 - 1/reduction_factor`` quantile it stops, otherwise it goes on; either way its value is recorded.
No trial ever waits for others (that is the "asynchronous"): early trials pass freely and later ones
compete against a growing record. A trial reaching ``max_t`` stops.
"""

from __future__ import annotations

import logging
import math
import random
from typing import Any

from swarm.tune.schedulers.trial_scheduler import TrialScheduler, _check_mode

log = logging.getLogger(__name__)


def quantile(values: list[float], q: float) -> float:
    """Linear-interpolated quantile (numpy's default), q in [0, 1]."""
    xs = sorted(values)
    pos = (len(xs) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


class _Bracket:
    def __init__(self, min_t: float, max_t: float, reduction_factor: float, s: int,
                 stop_last_trials: bool = True) -> None:
        self.rf = reduction_factor
        max_rungs = int(math.log(max_t / min_t, reduction_factor) - s + 1)
        # highest milestone first, so a trial is judged at the highest rung it reached
        self.rungs: list[tuple[float, dict[str, float]]] = [
            (min_t * reduction_factor ** (k + s), {}) for k in reversed(range(max_rungs))]
        self.stop_last_trials = stop_last_trials

    def cutoff(self, recorded: dict[str, float]) -> float | None:
        values = [v for v in recorded.values() if not math.isnan(v)]
        return quantile(values, 1 - 1 / self.rf) if values else None

    def on_result(self, trial_id: str, cur_iter: float, cur_rew: float) -> str:
        action = TrialScheduler.CONTINUE
        for milestone, recorded in self.rungs:
            if cur_iter >= milestone and trial_id in recorded and not self.stop_last_trials:
                break
            if cur_iter < milestone or trial_id in recorded:
                continue
            cutoff = self.cutoff(recorded)
            if cutoff is not None and cur_rew < cutoff:
                action = TrialScheduler.STOP
            recorded[trial_id] = cur_rew
            break
        return action

    def debug_str(self) -> str:
        return "Bracket: " + " | ".join(f"Iter {m:.0f}: {len(r)} trials" for m, r in self.rungs)


class AsyncHyperBandScheduler(TrialScheduler):
    def __init__(self, time_attr: str = "training_iteration", metric: str | None = None,
                 mode: str | None = None, max_t: float = 100, grace_period: float = 1,
                 reduction_factor: float = 4, brackets: int = 1, stop_last_trials: bool = True,
                 seed: int | None = None) -> None:
        if grace_period <= 0:
            raise ValueError(f"grace_period must be positive, got {grace_period}")
        if reduction_factor <= 1:
            raise ValueError(f"reduction_factor must be > 1, got {reduction_factor}")
        if max_t < grace_period:
            raise ValueError(f"max_t ({max_t}) must be at least grace_period ({grace_period})")
        _check_mode(mode)
        self._metric, self._mode = metric, mode
        self._time_attr = time_attr
        self._max_t = max_t
        self._stop_last_trials = stop_last_trials
        self._brackets = [_Bracket(grace_period, max_t, reduction_factor, s, stop_last_trials)
                          for s in range(brackets)]
        self._trial_bracket: dict[str, int] = {}
        self._rng = random.Random(seed)
        self._num_stopped = 0
        self._missing_warned = False

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        # Brackets with fewer rungs get proportionally more trials (Hyperband's allocation).
        sizes = [len(b.rungs) for b in self._brackets]
        weights = [s / sum(sizes) for s in sizes] if sum(sizes) else None
        index = self._rng.choices(range(len(self._brackets)), weights=weights)[0]
        self._trial_bracket[trial.trial_id] = index

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if self._metric is None or self._mode is None:
            raise ValueError("ASHAScheduler needs a metric and a mode: pass them to "
                             "ASHAScheduler(metric=, mode=) or TuneConfig(metric=, mode=)")
        if self._time_attr not in result or self._metric not in result:
            if not self._missing_warned:
                log.warning("ASHA ignores results without %r and %r (got %s)", self._time_attr,
                            self._metric, sorted(result))
                self._missing_warned = True
            return TrialScheduler.CONTINUE
        if trial.trial_id not in self._trial_bracket:
            self.on_trial_add(tune_controller, trial)
        t = result[self._time_attr]
        if t >= self._max_t and self._stop_last_trials:
            action = TrialScheduler.STOP
        else:
            sign = 1.0 if self._mode == "max" else -1.0
            value = sign * float(result[self._metric])
            action = self._brackets[self._trial_bracket[trial.trial_id]].on_result(trial.trial_id, t, value)
        if action == TrialScheduler.STOP:
            self._num_stopped += 1
        return action

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        if not result or self._metric not in result or self._time_attr not in result:
            return
        bracket = self._trial_bracket.get(trial.trial_id)
        if bracket is not None:
            sign = 1.0 if self._mode == "max" else -1.0
            self._brackets[bracket].on_result(trial.trial_id, result[self._time_attr],
                                              sign * float(result[self._metric]))

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._trial_bracket.pop(trial.trial_id, None)

    def debug_string(self) -> str:
        lines = [f"Using AsyncHyperBand: num_stopped={self._num_stopped}"]
        lines += [b.debug_str() for b in self._brackets]
        return "\n".join(lines)


ASHAScheduler = AsyncHyperBandScheduler
