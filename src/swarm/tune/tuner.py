"""``Tuner``: the entry point. Builds the experiment (search algorithm, scheduler, stopper, storage) from
the configs, runs it with a ``TuneController``, returns a ``ResultGrid``; ``Tuner.restore`` rebuilds it
from the saved state and runs what is left."""

from __future__ import annotations

import datetime
import os
import uuid
from typing import Any

import swarm
from swarm.tune import experiment_state
from swarm.tune.config import DEFAULT_STORAGE_PATH, RunConfig, TuneConfig
from swarm.tune.controller import TuneController
from swarm.tune.experiment_state import Experiment
from swarm.tune.progress import CLIReporter
from swarm.tune.result_grid import ResultGrid
from swarm.tune.schedulers.trial_scheduler import FIFOScheduler
from swarm.tune.search.basic_variant import BasicVariantGenerator
from swarm.tune.search.search_algorithm import SearchAlgorithm, SearchGenerator
from swarm.tune.search.searcher import Searcher
from swarm.tune.stopper import CombinedStopper, TimeoutStopper, make_stopper
from swarm.tune.trainable import trainable_name, validate_trainable
from swarm.tune.trial import ERROR, PAUSED, PENDING, RUNNING, TERMINATED


class Tuner:
    def __init__(self, trainable: Any = None, *, param_space: dict | None = None,
                 tune_config: TuneConfig | None = None, run_config: RunConfig | None = None,
                 _experiment: Experiment | None = None) -> None:
        validate_trainable(trainable)
        if param_space is not None and not isinstance(param_space, dict):
            raise TypeError(f"param_space must be a dict, got {type(param_space).__name__}")
        self._trainable = trainable
        self._param_space = param_space or {}
        self._tune_config = tune_config or TuneConfig()
        self._run_config = run_config or RunConfig()
        self._experiment = _experiment
        self._results: ResultGrid | None = None

    # -- running ---------------------------------------------------------------------------------------
    def fit(self) -> ResultGrid:
        """Run the experiment (or what is left of a restored one); trial errors are in the ResultGrid."""
        if self._results is not None:
            raise RuntimeError("Tuner.fit() was already called on this Tuner: create a new Tuner, or resume "
                               "with Tuner.restore(path, trainable)")
        if not swarm.is_initialized():
            swarm.init()
        if self._experiment is None:
            self._experiment = self._new_experiment()
        exp = self._experiment
        controller = TuneController(self._trainable, exp, _reporter(exp.run_config))
        controller.run()
        self._results = self._result_grid()
        return self._results

    def get_results(self) -> ResultGrid:
        """The results of ``fit()``, or of the restored experiment as it was saved."""
        if self._results is not None:
            return self._results
        if self._experiment is None:
            raise RuntimeError("no results yet: call Tuner.fit() first")
        return self._result_grid()

    def _result_grid(self) -> ResultGrid:
        exp = self._experiment
        assert exp is not None
        metric = exp.tune_config.metric or exp.scheduler.metric
        mode = exp.tune_config.mode or exp.scheduler.mode
        return ResultGrid(exp.trials, exp.experiment_dir, metric, mode)

    def _new_experiment(self) -> Experiment:
        tc, rc = self._tune_config, self._run_config
        name = rc.name or f"{trainable_name(self._trainable)}_{datetime.datetime.now():%Y-%m-%d_%H-%M-%S}"
        storage_path = os.path.expanduser(rc.storage_path or DEFAULT_STORAGE_PATH)
        experiment_dir = os.path.abspath(os.path.join(storage_path, name))

        search_alg: SearchAlgorithm
        if tc.search_alg is None:
            search_alg = BasicVariantGenerator()
        elif isinstance(tc.search_alg, Searcher):
            search_alg = SearchGenerator(tc.search_alg)
        elif isinstance(tc.search_alg, SearchAlgorithm):
            search_alg = tc.search_alg
        else:
            raise TypeError(f"TuneConfig(search_alg=...) takes a Searcher (e.g. OptunaSearch) or a "
                            f"SearchAlgorithm, got {type(tc.search_alg).__name__}")
        if not search_alg.set_search_properties(tc.metric, tc.mode, self._param_space):
            raise ValueError(f"{type(tc.search_alg).__name__} was given its own search space and the Tuner "
                             f"got a param_space with search domains too: define the space in one place")
        search_alg.setup(self._param_space, tc.num_samples)

        scheduler = tc.scheduler or FIFOScheduler()
        if not scheduler.set_search_properties(tc.metric, tc.mode):
            raise ValueError(f"{type(scheduler).__name__} has metric={scheduler.metric!r}, "
                             f"mode={scheduler.mode!r} but TuneConfig has metric={tc.metric!r}, "
                             f"mode={tc.mode!r}: set them in one place")
        stopper = make_stopper(rc.stop)
        if tc.time_budget_s is not None:
            budget = TimeoutStopper(tc.time_budget_s)
            stopper = budget if stopper is None else CombinedStopper(stopper, budget)
        return Experiment(name=name, experiment_dir=experiment_dir, param_space=self._param_space,
                          tune_config=tc, run_config=rc, search_alg=search_alg, scheduler=scheduler,
                          stopper=stopper, trials=[], experiment_tag=uuid.uuid4().hex[:5])

    # -- restoring -------------------------------------------------------------------------------------
    @classmethod
    def can_restore(cls, path: str | os.PathLike, storage_filesystem: Any = None) -> bool:
        return experiment_state.exists(os.path.expanduser(os.fspath(path)))

    @classmethod
    def restore(cls, path: str | os.PathLike, trainable: Any, resume_unfinished: bool = True,
                resume_errored: bool = False, restart_errored: bool = False, param_space: dict | None = None,
                storage_filesystem: Any = None) -> Tuner:
        """The experiment saved at ``path`` (``storage_path/name``), ready to ``fit()`` what is left:
        finished trials are kept as they are; unfinished ones resume from their latest checkpoint
        (``resume_unfinished``); errored ones resume (``resume_errored``), restart from scratch
        (``restart_errored``), or stay errored."""
        experiment_dir = os.path.abspath(os.path.expanduser(os.fspath(path)))
        exp = experiment_state.load(experiment_dir)
        old_dir, exp.experiment_dir = exp.experiment_dir, experiment_dir
        if param_space is not None:
            exp.param_space = param_space
        for trial in exp.trials:
            # the experiment may have been moved: trial directories live under the new path
            trial.local_path = os.path.join(experiment_dir, os.path.relpath(trial.local_path, old_dir))
            if trial.status in (RUNNING, PENDING, PAUSED):
                if resume_unfinished:
                    trial.status = PENDING
                    trial.restore_on_start = trial.checkpoint is not None
                else:
                    trial.status = TERMINATED
            elif trial.status == ERROR and (resume_errored or restart_errored):
                trial.reset_error(keep_progress=not restart_errored)
        return cls(trainable, _experiment=exp)


def _reporter(run_config: RunConfig) -> CLIReporter | None:
    if run_config.verbose == 0:
        return None
    reporter = run_config.progress_reporter
    if reporter is None:
        return CLIReporter()
    if not isinstance(reporter, CLIReporter):
        raise TypeError(f"RunConfig(progress_reporter=...) takes a CLIReporter, got "
                        f"{type(reporter).__name__}")
    return reporter

