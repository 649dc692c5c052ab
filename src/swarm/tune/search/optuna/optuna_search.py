"""``OptunaSearch``: model-based search by the optuna library through its ask-and-tell interface.

    suggest(trial_id) ──▶ study.ask(distributions) ──▶ optuna trial ──▶ trial.params → config
    on_trial_result   ──▶ optuna_trial.report(value, step)     (intermediate values, for its pruners)
    on_trial_complete ──▶ study.tell(optuna_trial, value | FAIL)

Tune's domains become optuna distributions (``uniform`` → ``FloatDistribution``, ``randint`` →
``IntDistribution`` with its exclusive upper bound made inclusive, ``choice`` →
``CategoricalDistribution``); ``space`` may also be optuna's own dict of distributions or a
define-by-run function ``space(trial) -> dict | None`` as in Ray.
"""

from __future__ import annotations

import logging
import math
import numbers
from typing import Any, Callable

from swarm.tune.search import variant_generator as vg
from swarm.tune.search.sample import Categorical, Domain, Float, Function, Integer
from swarm.tune.search.searcher import Searcher

log = logging.getLogger(__name__)


def _import_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ImportError("OptunaSearch needs the optuna library: pip install optuna "
                          "(or pip install 'swarm[tune]')") from None
    return optuna


def to_distribution(path: str, domain: Domain) -> Any:
    """The optuna distribution that samples the same values as ``domain``."""
    dist = _import_optuna().distributions
    if isinstance(domain, Float):
        if domain.normal is not None:
            raise ValueError(f"OptunaSearch cannot sample {path}={domain!r}: optuna has no normal "
                             f"distribution; use tune.uniform or tune.loguniform")
        if domain.log and domain.q is not None:
            raise ValueError(f"OptunaSearch cannot sample {path}={domain!r}: optuna has no quantized "
                             f"log-uniform distribution; use tune.loguniform or tune.quniform")
        return dist.FloatDistribution(domain.lower, domain.upper, log=domain.log, step=domain.q)
    if isinstance(domain, Integer):
        return dist.IntDistribution(domain.lower, domain.top, log=domain.log, step=domain.q)
    if isinstance(domain, Categorical):
        return dist.CategoricalDistribution(domain.categories)
    if isinstance(domain, Function):
        raise ValueError(f"OptunaSearch cannot model {path}=sample_from(...): a model-based searcher needs "
                         f"a distribution; use tune.uniform/choice/randint/... for this entry")
    raise ValueError(f"OptunaSearch does not know how to sample {path}={domain!r}")


class OptunaSearch(Searcher):
    def __init__(self, space: dict | Callable[[Any], dict | None] | None = None,
                 metric: str | list | None = None, mode: str | list | None = None,
                 points_to_evaluate: list[dict] | None = None, sampler: Any = None, seed: int | None = None,
                 evaluated_rewards: list | None = None) -> None:
        if isinstance(metric, list) or isinstance(mode, list):
            raise NotImplementedError("multi-objective OptunaSearch is not supported yet: pass one metric")
        super().__init__(metric, mode)
        _import_optuna()
        self._space: dict[str, Any] | Callable | None = None
        if space is not None:
            self._space = space if callable(space) else self._convert(space)
        self._points = list(points_to_evaluate or [])
        self._rewards = list(evaluated_rewards or [])
        if self._rewards and len(self._rewards) != len(self._points):
            raise ValueError(f"evaluated_rewards has {len(self._rewards)} values for "
                             f"{len(self._points)} points_to_evaluate: give one per point")
        self._sampler = sampler
        self._seed = seed
        self._study: Any = None
        self._trials: dict[str, Any] = {}

    @staticmethod
    def _convert(space: dict) -> dict[str, Any]:
        if vg.grid_paths(space):
            raise ValueError("OptunaSearch does not support grid_search: use tune.choice([...]) instead")
        dists = {}
        for path, value in vg.flatten(space).items():
            if isinstance(value, Domain):
                dists[path] = to_distribution(path, value)
            elif type(value).__module__.startswith("optuna"):
                dists[path] = value  # already an optuna distribution
        return dists

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict,
                              **spec: Any) -> bool:
        if self._space is not None and config and vg.is_unresolved(config):
            return False  # two search spaces: the Tuner reports the conflict
        super().set_search_properties(metric, mode, config, **spec)
        if self._space is None:
            self._space = self._convert(config)
        return True

    def _ensure_study(self) -> Any:
        if self._study is not None:
            return self._study
        if self._metric is None or self._mode is None:
            raise ValueError("OptunaSearch needs a metric and a mode: pass them to OptunaSearch(metric=, "
                             "mode=) or to TuneConfig(metric=, mode=)")
        if self._space is None:
            raise ValueError("OptunaSearch has no search space: pass param_space to the Tuner or "
                             "space= to OptunaSearch")
        optuna = _import_optuna()
        sampler = self._sampler or optuna.samplers.TPESampler(seed=self._seed)
        direction = "minimize" if self._mode == "min" else "maximize"
        self._study = optuna.create_study(sampler=sampler, direction=direction)
        for i, point in enumerate(self._points):
            flat = vg.flatten(point)
            if self._rewards:
                self.add_evaluated_point(point, self._rewards[i])
            else:
                self._study.enqueue_trial(flat)
        return self._study

    def suggest(self, trial_id: str) -> dict | str | None:
        study = self._ensure_study()
        if callable(self._space):
            ot_trial = study.ask()
            constants = self._space(ot_trial) or {}
            flat = {**ot_trial.params, **vg.flatten(constants)}
        else:
            ot_trial = study.ask(fixed_distributions=self._space)
            flat = dict(ot_trial.params)
        self._trials[trial_id] = ot_trial
        return vg.unflatten(flat)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        ot_trial = self._trials.get(trial_id)
        value = result.get(self._metric) if self._metric else None
        step = result.get("training_iteration")
        if ot_trial is None or not _is_number(value) or step is None:
            return
        ot_trial.report(value, step)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        ot_trial = self._trials.pop(trial_id, None)
        if ot_trial is None or self._study is None:
            return
        states = _import_optuna().trial.TrialState
        value = (result or {}).get(self._metric) if self._metric else None
        if error or not _is_number(value):
            self._study.tell(ot_trial, None, state=states.FAIL)
        else:
            self._study.tell(ot_trial, value, state=states.COMPLETE)

    def add_evaluated_point(self, parameters: dict, value: float, error: bool = False,
                            pruned: bool = False, intermediate_values: list | None = None) -> None:
        optuna = _import_optuna()
        study = self._ensure_study()
        space = self._space
        if space is None or callable(space):
            raise TypeError("add_evaluated_point needs a dict search space, not a define-by-run function")
        flat = vg.flatten(parameters)
        states = optuna.trial.TrialState
        state = states.FAIL if error else states.PRUNED if pruned else states.COMPLETE
        trial = optuna.trial.create_trial(
            params=flat, distributions={k: space[k] for k in flat if k in space},
            value=None if state != states.COMPLETE else value, state=state,
            intermediate_values=dict(enumerate(intermediate_values or [])))
        study.add_trial(trial)

    @property
    def study(self) -> Any:
        """The underlying ``optuna.Study`` (e.g. for ``study.best_params``)."""
        return self._ensure_study()


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isnan(value)
