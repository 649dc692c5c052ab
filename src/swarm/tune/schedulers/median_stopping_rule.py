"""``MedianStoppingRule``: stop a trial whose best result so far is worse than the median of the other
trials' running averages at the same point in time (Google Vizier's rule, as in Ray)."""

from __future__ import annotations

import statistics
from typing import Any

from swarm.tune.schedulers.trial_scheduler import TrialScheduler, _check_mode


class MedianStoppingRule(TrialScheduler):
    def __init__(self, time_attr: str = "time_total_s", metric: str | None = None, mode: str | None = None,
                 grace_period: float = 60.0, min_samples_required: int = 3, min_time_slice: float = 0,
                 hard_stop: bool = True) -> None:
        _check_mode(mode)
        self._metric, self._mode = metric, mode
        self._time_attr = time_attr
        self._grace_period = grace_period
        self._min_samples_required = min_samples_required
        self._min_time_slice = min_time_slice
        self._hard_stop = hard_stop
        self._results: dict[str, list[tuple[float, float]]] = {}  # trial_id -> [(time, signed value)]
        self._num_stopped = 0

    def _signed(self, result: dict) -> float:
        return float(result[self._metric]) * (1.0 if self._mode == "max" else -1.0)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if self._metric is None or self._mode is None:
            raise ValueError("MedianStoppingRule needs a metric and a mode: pass them to "
                             "MedianStoppingRule(metric=, mode=) or TuneConfig(metric=, mode=)")
        if self._time_attr not in result or self._metric not in result:
            return TrialScheduler.CONTINUE
        time = float(result[self._time_attr])
        history = self._results.setdefault(trial.trial_id, [])
        history.append((time, self._signed(result)))
        if time <= self._grace_period:
            return TrialScheduler.CONTINUE
        others = [tid for tid, hist in self._results.items()
                  if tid != trial.trial_id and hist and hist[-1][0] >= time]
        if len(others) < self._min_samples_required:
            return TrialScheduler.CONTINUE
        median = statistics.median(self._running_mean(tid, time) for tid in others)
        best = max(value for _, value in history)
        if best < median:
            self._num_stopped += 1
            return TrialScheduler.STOP if self._hard_stop else TrialScheduler.PAUSE
        return TrialScheduler.CONTINUE

    def _running_mean(self, trial_id: str, time: float) -> float:
        """The mean of a trial's results from the grace period up to ``time``."""
        values = [v for t, v in self._results[trial_id] if self._grace_period <= t <= time]
        return sum(values) / len(values) if values else -float("inf")

    def debug_string(self) -> str:
        return f"Using MedianStoppingRule: num_stopped={self._num_stopped}."
