"""Saving and loading the experiment state, so ``Tuner.restore`` can pick an interrupted experiment up.

The state is one pickle (trials, search algorithm, scheduler, stopper, configs — everything but the
trainable, which ``restore`` is given again), replaced atomically: a crash mid-save leaves the previous
state intact. It is saved at every trial status change and new checkpoint (unless saving has become
slow: a huge experiment) and at most every ``RESULT_SAVE_PERIOD_S`` for results alone, both
throttled to keep the time spent saving under ~5%.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import cloudpickle

from swarm.tune.config import RunConfig, TuneConfig
from swarm.tune.storage import to_json
from swarm.tune.trial import Trial

log = logging.getLogger(__name__)

STATE_FILE = "experiment_state.pkl"
STATE_JSON = "experiment_state.json"
FORMAT_VERSION = 1
RESULT_SAVE_PERIOD_S = 1.0
SLOW_SAVE_S = 0.05


@dataclass
class Experiment:
    """Everything an experiment is, but its trainable: what is saved, and what restore continues."""

    name: str
    experiment_dir: str
    param_space: dict
    tune_config: TuneConfig
    run_config: RunConfig
    search_alg: Any
    scheduler: Any
    stopper: Any
    trials: list[Trial]
    trial_counter: int = 0
    experiment_tag: str = ""


def state_path(experiment_dir: str) -> str:
    return os.path.join(experiment_dir, STATE_FILE)


def exists(experiment_dir: str) -> bool:
    return os.path.exists(state_path(experiment_dir))


def load(experiment_dir: str) -> Experiment:
    path = state_path(experiment_dir)
    if not os.path.exists(path):
        from swarm.tune.error import TuneError
        raise TuneError(f"no experiment to restore at {experiment_dir!r}: {STATE_FILE} is missing. Pass the "
                        f"experiment directory, i.e. RunConfig.storage_path joined with RunConfig.name")
    with open(path, "rb") as f:
        state = cloudpickle.load(f)
    if not isinstance(state, dict) or state.get("version") != FORMAT_VERSION:
        from swarm.tune.error import TuneError
        raise TuneError(f"{path} was written by an incompatible swarm.tune (expected format "
                        f"{FORMAT_VERSION}); re-run the experiment")
    return state["experiment"]


class ExperimentStateWriter:
    def __init__(self, experiment_dir: str) -> None:
        self.experiment_dir = experiment_dir
        self._last_save = 0.0
        self._save_cost = 0.0
        self._warned = False

    def save(self, experiment: Experiment, *, status_changed: bool = False, final: bool = False) -> None:
        """Write the state: always when ``final``; on a status change unless saving is slow and was done
        recently; otherwise only if the last save is old enough."""
        now = time.monotonic()
        since = now - self._last_save
        if not final:
            if status_changed and (self._save_cost < SLOW_SAVE_S or since >= 20 * self._save_cost):
                pass
            elif since < max(RESULT_SAVE_PERIOD_S, 20 * self._save_cost):
                return
        try:
            blob = cloudpickle.dumps({"version": FORMAT_VERSION, "experiment": experiment})
        except Exception as e:
            # callbacks or a reporter holding locks/sockets: save without them rather than not at all
            if not self._warned:
                log.warning("The experiment state does not pickle (%r); saving it without RunConfig "
                            "callbacks and progress_reporter", e)
                self._warned = True
            run_config = dataclasses.replace(experiment.run_config, callbacks=None, progress_reporter=None)
            blob = cloudpickle.dumps({"version": FORMAT_VERSION,
                                      "experiment": dataclasses.replace(experiment, run_config=run_config)})
        os.makedirs(self.experiment_dir, exist_ok=True)
        _atomic_write(state_path(self.experiment_dir), blob)
        table = [{"trial_id": t.trial_id, "status": t.status, "config": t.config,
                  "last_result": t.last_result, "checkpoint": t.checkpoint.path if t.checkpoint else None,
                  "num_failures": t.num_failures, "error": t.error_msg} for t in experiment.trials]
        _atomic_write(os.path.join(self.experiment_dir, STATE_JSON),
                      to_json({"name": experiment.name, "trials": table}).encode())
        self._last_save = time.monotonic()
        self._save_cost = self._last_save - now


def _atomic_write(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)  # no fsync: this guards against a crashed process, not a lost machine
    os.replace(tmp, path)
