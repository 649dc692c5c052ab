"""``ResultGrid``: the outcome of ``Tuner.fit()`` — one ``Result`` per trial, in trial order."""

from __future__ import annotations

import math
from typing import Any, Iterator

from swarm.tune import storage
from swarm.tune.result import Result, import_pandas
from swarm.tune.search import variant_generator as vg
from swarm.tune.trial import ERROR, TERMINATED, Trial

SCOPES = ("last", "avg", "last-5-avg", "last-10-avg", "all")


class ResultGrid:
    def __init__(self, trials: list[Trial], experiment_path: str, metric: str | None = None,
                 mode: str | None = None) -> None:
        self._trials = list(trials)
        self._experiment_path = experiment_path
        self._metric, self._mode = metric, mode
        self._results = [_result(t) for t in self._trials]

    @property
    def experiment_path(self) -> str:
        return self._experiment_path

    def __len__(self) -> int:
        return len(self._results)

    def __getitem__(self, i: int) -> Result:
        return self._results[i]

    def __iter__(self) -> Iterator[Result]:
        return iter(self._results)

    @property
    def errors(self) -> list[BaseException]:
        return [r.error for r in self._results if r.error is not None]

    @property
    def num_errors(self) -> int:
        return sum(t.status == ERROR for t in self._trials)

    @property
    def num_terminated(self) -> int:
        return sum(t.status == TERMINATED for t in self._trials)

    def get_best_result(self, metric: str | None = None, mode: str | None = None, scope: str = "last",
                        filter_nan_and_inf: bool = True) -> Result:
        """The trial with the best ``metric``: its last value (``scope="last"``), its average
        (``"avg"``, ``"last-5-avg"``, ``"last-10-avg"``) or its best ever (``"all"``)."""
        metric = metric or self._metric
        mode = mode or self._mode
        if not metric or not mode:
            raise ValueError("get_best_result() needs a metric and a mode: pass them here, or set "
                             "TuneConfig(metric=, mode=) for the Tuner")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
        best, best_value = None, None
        for i, trial in enumerate(self._trials):
            stats = trial.metric_analysis.get(metric)
            if stats is None:
                continue
            value = stats[mode if scope == "all" else scope]
            if filter_nan_and_inf and not math.isfinite(value):
                continue
            if best_value is None or (value > best_value if mode == "max" else value < best_value):
                best, best_value = i, value
        if best is None:
            raise RuntimeError(f"no trial reported a{' finite' if filter_nan_and_inf else ''} value of "
                               f"{metric!r}: check the metric name against the reported metrics "
                               f"({sorted(self._reported_metrics())})")
        return self._results[best]

    def _reported_metrics(self) -> set[str]:
        return {k for t in self._trials for k in t.last_result if k != "config"}

    def get_dataframe(self, filter_metric: str | None = None, filter_mode: str | None = None) -> Any:
        """One row per trial: its last result (or, with ``filter_metric``, its best result by
        ``filter_mode``), config entries as ``config/<key>`` columns, and ``logdir``. Needs pandas."""
        pd = import_pandas()
        if (filter_metric is None) != (filter_mode is None):
            raise ValueError("pass both filter_metric and filter_mode, or neither")
        rows = []
        for trial in self._trials:
            row = dict(trial.last_result)
            if filter_metric is not None:
                history = [r for r in storage.read_results(trial.local_path)
                           if storage.is_finite_number(r.get(filter_metric))]
                if history:
                    pick = max if filter_mode == "max" else min
                    row = pick(history, key=lambda r: r[filter_metric])
            row.pop("config", None)
            row.update({f"config/{k}": v for k, v in vg.flatten(trial.config).items()})
            row["logdir"] = trial.local_path
            row.setdefault("trial_id", trial.trial_id)
            rows.append(row)
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        return f"ResultGrid<{len(self)} results, {self.num_errors} errors, path={self._experiment_path!r}>"


def _result(trial: Trial) -> Result:
    metrics = dict(trial.last_result)
    metrics["config"] = trial.config
    return Result(metrics=metrics, checkpoint=trial.checkpoint, error=trial.error, path=trial.local_path,
                  best_checkpoints=trial.best_checkpoints())
