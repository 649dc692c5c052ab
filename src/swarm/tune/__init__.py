"""swarm.tune: hyperparameter search on swarm, with Ray Tune's API (``from swarm import tune``).

    from swarm import tune

    def train_fn(config):
        for step in range(10):
            tune.report({"loss": (config["lr"] - 0.1) ** 2 / (step + 1)})

    tuner = tune.Tuner(train_fn, param_space={"lr": tune.loguniform(1e-4, 1.0)},
                       tune_config=tune.TuneConfig(num_samples=8, metric="loss", mode="min",
                                                   scheduler=tune.schedulers.ASHAScheduler()))
    best = tuner.fit().get_best_result()

How an experiment flows (driver on the left, one actor per running trial on the right):

    Tuner.fit()                                                   TrialRunner actor (_runner.py)
      │ search_alg.next_config()  (search/: grid, random, Optuna)   (resources from with_resources)
      ▼                                                             ┌───────────────────────────────┐
    TuneController (controller.py) ── create actor ───────────────▶ │ fn(config) in a thread        │
      │   ▲                         ── next_result.remote() ──────▶ │   tune.report(metrics, ckpt)  │
      │   └──── swarm.wait ◀──────────────── result ─────────────── │   (checkpoint copied to the   │
      │ stopper / scheduler (schedulers/: FIFO, ASHA, median)        │    trial dir, then blocks)    │
      │   CONTINUE → next_result.remote()  STOP → stop.remote(),    │ or Trainable.step()           │
      │   kill; report raises TrialStopped in the user's thread     └───────────────────────────────┘
      │ ActorDiedError → new actor restored from the latest checkpoint (FailureConfig.max_failures)
      ├─▶ storage_path/name/<trial_id>/result.json, checkpoint_NNNNNN/   (storage.py, checkpoint.py)
      ├─▶ storage_path/name/experiment_state.pkl   ──▶ Tuner.restore(path, trainable)
      ├─▶ progress table on stdout (progress.py)
      ▼
    ResultGrid[Result(metrics, config, checkpoint, path, error)]   (result_grid.py, result.py)

Built on swarm's public API only (actors, ``wait``, ``get``, ``kill``, ``cluster_resources``).
Optuna is optional: ``swarm.tune.search.optuna`` imports it when an ``OptunaSearch`` is created.
Names load lazily: a trial's actor process imports only what a trial needs (session, checkpoint),
not the driver's controller, searchers and schedulers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    "Tuner": "swarm.tune.tuner",
    "TuneConfig": "swarm.tune.config", "RunConfig": "swarm.tune.config",
    "CheckpointConfig": "swarm.tune.config", "FailureConfig": "swarm.tune.config",
    "ResultGrid": "swarm.tune.result_grid", "Result": "swarm.tune.result",
    "Checkpoint": "swarm.tune.checkpoint",
    "report": "swarm.tune.session", "get_checkpoint": "swarm.tune.session",
    "get_context": "swarm.tune.session", "TuneContext": "swarm.tune.session",
    "Trainable": "swarm.tune.trainable", "with_resources": "swarm.tune.trainable",
    "with_parameters": "swarm.tune.trainable", "PlacementGroupFactory": "swarm.tune.trainable",
    "Stopper": "swarm.tune.stopper", "Callback": "swarm.tune.callback", "CLIReporter": "swarm.tune.progress",
    "TuneError": "swarm.tune.error",
    **{name: "swarm.tune.search.sample" for name in (
        "grid_search", "choice", "uniform", "quniform", "loguniform", "qloguniform", "randn", "qrandn",
        "randint", "qrandint", "lograndint", "qlograndint", "sample_from")},
}
_SUBMODULES = {"schedulers", "search", "stopper"}

if TYPE_CHECKING:
    from swarm.tune import schedulers, search, stopper  # noqa: F401
    from swarm.tune.callback import Callback  # noqa: F401
    from swarm.tune.checkpoint import Checkpoint  # noqa: F401
    from swarm.tune.config import CheckpointConfig, FailureConfig, RunConfig, TuneConfig  # noqa: F401
    from swarm.tune.error import TuneError  # noqa: F401
    from swarm.tune.progress import CLIReporter  # noqa: F401
    from swarm.tune.result import Result  # noqa: F401
    from swarm.tune.result_grid import ResultGrid  # noqa: F401
    from swarm.tune.search.sample import (  # noqa: F401
        choice,
        grid_search,
        lograndint,
        loguniform,
        qlograndint,
        qloguniform,
        qrandint,
        qrandn,
        quniform,
        randint,
        randn,
        sample_from,
        uniform,
    )
    from swarm.tune.session import TuneContext, get_checkpoint, get_context, report  # noqa: F401
    from swarm.tune.stopper import Stopper  # noqa: F401
    from swarm.tune.trainable import (  # noqa: F401
        PlacementGroupFactory,
        Trainable,
        with_parameters,
        with_resources,
    )
    from swarm.tune.tuner import Tuner  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"swarm.tune.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'swarm.tune' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [*_LAZY, *_SUBMODULES]
