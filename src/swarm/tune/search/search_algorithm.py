"""``SearchAlgorithm``: what the controller asks for new trial configs, and ``SearchGenerator``, which
turns any ``Searcher`` (one suggestion at a time) into one, counting trials up to ``num_samples``.

    controller ──next_config(trial_id)──▶ SearchAlgorithm ──▶ dict (start a trial) | None (not now)
               ──on_trial_result / on_trial_complete──▶            is_finished() → no more trials
"""

from __future__ import annotations

import random
from typing import Any

from swarm.tune.search import variant_generator as vg
from swarm.tune.search.searcher import Searcher


class SearchAlgorithm:
    """Produces the configs of an experiment's trials."""

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict,
                              **spec: Any) -> bool:
        return True

    def setup(self, param_space: dict, num_samples: int) -> None:
        """Called once by the Tuner before the first ``next_config`` (not again on restore)."""

    def next_config(self, trial_id: str) -> dict | None:
        raise NotImplementedError

    def is_finished(self) -> bool:
        raise NotImplementedError

    @property
    def total_samples(self) -> int | None:
        return None

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        pass

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass


class SearchGenerator(SearchAlgorithm):
    """A ``Searcher`` run for ``num_samples`` trials; entries the searcher does not set (constants,
    ``sample_from``) come from the param space."""

    def __init__(self, searcher: Searcher) -> None:
        self.searcher = searcher
        self._space: dict = {}
        self._num_samples = 1
        self._created = 0
        self._finished = False
        self._rng = random.Random()

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict,
                              **spec: Any) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def setup(self, param_space: dict, num_samples: int) -> None:
        if vg.grid_paths(param_space):
            raise ValueError(f"{type(self.searcher).__name__} cannot expand grid_search entries "
                             f"({', '.join('/'.join(map(str, p)) for p, _ in vg.grid_paths(param_space))}): "
                             f"use tune.choice([...]) instead, or run a grid with the default search")
        self._space = param_space
        self._num_samples = num_samples

    def next_config(self, trial_id: str) -> dict | None:
        if self.is_finished():
            return None
        suggestion = self.searcher.suggest(trial_id)
        if suggestion == Searcher.FINISHED:
            self._finished = True
            return None
        if suggestion is None:
            return None
        self._created += 1
        return vg.resolve(vg.merge(self._space, suggestion), self._rng)  # type: ignore[arg-type]

    def is_finished(self) -> bool:
        return self._finished or self._created >= self._num_samples

    @property
    def total_samples(self) -> int | None:
        return self._num_samples

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.searcher.on_trial_complete(trial_id, result=result, error=error)
