"""``Searcher``: the interface of suggestion-based search (Optuna and any user searcher), as in
``ray.tune.search.Searcher``; plus ``ConcurrencyLimiter``.

A searcher is asked for one config at a time (``suggest(trial_id)``) and told how each trial went
(``on_trial_result`` / ``on_trial_complete``). It works on flat configs and knows nothing of actors or
storage; ``SearchGenerator`` (``search_algorithm.py``) adapts it to the controller.
"""

from __future__ import annotations

import pickle
from typing import Any


class Searcher:
    """Base class of suggestion-based search algorithms."""

    FINISHED = "FINISHED"

    def __init__(self, metric: str | None = None, mode: str | None = None) -> None:
        if mode is not None and mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self._metric = metric
        self._mode = mode

    @property
    def metric(self) -> str | None:
        return self._metric

    @property
    def mode(self) -> str | None:
        return self._mode

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict,
                              **spec: Any) -> bool:
        """Take metric, mode and param space from the Tuner; False when this searcher cannot accept them
        (e.g. it was already given its own search space)."""
        if self._metric is None and metric is not None:
            self._metric = metric
        if self._mode is None and mode is not None:
            self._mode = mode
        return True

    def suggest(self, trial_id: str) -> dict | str | None:
        """A config for a new trial, None to be asked again later, or ``Searcher.FINISHED``."""
        raise NotImplementedError

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        pass

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass

    def add_evaluated_point(self, parameters: dict, value: float, error: bool = False,
                            pruned: bool = False, intermediate_values: list | None = None) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not accept evaluated points")

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))


class ConcurrencyLimiter(Searcher):
    """At most ``max_concurrent`` trials of ``searcher`` running at once (model-based searchers learn
    more from finished trials than from many trials started blind)."""

    def __init__(self, searcher: Searcher, max_concurrent: int, batch: bool = False) -> None:
        if not isinstance(max_concurrent, int) or max_concurrent < 1:
            raise ValueError(f"max_concurrent must be a positive int, got {max_concurrent!r}")
        super().__init__(searcher.metric, searcher.mode)
        self.searcher = searcher
        self.max_concurrent = max_concurrent
        self.batch = batch
        self._live: set[str] = set()
        self._batch_done: set[str] = set()

    @property
    def metric(self) -> str | None:
        return self.searcher.metric

    @property
    def mode(self) -> str | None:
        return self.searcher.mode

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict,
                              **spec: Any) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str) -> dict | str | None:
        if self.batch and self._live:  # batch mode: wait for the whole batch before the next one
            if len(self._live) >= self.max_concurrent or self._batch_done:
                return None
        if len(self._live) >= self.max_concurrent:
            return None
        suggestion = self.searcher.suggest(trial_id)
        if isinstance(suggestion, dict):
            self._live.add(trial_id)
        return suggestion

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self._live:
            return
        self.searcher.on_trial_complete(trial_id, result=result, error=error)
        if self.batch:
            self._batch_done.add(trial_id)
            if self._batch_done >= self._live:
                self._live.clear()
                self._batch_done.clear()
        else:
            self._live.discard(trial_id)

    def add_evaluated_point(self, *args: Any, **kwargs: Any) -> None:
        self.searcher.add_evaluated_point(*args, **kwargs)
