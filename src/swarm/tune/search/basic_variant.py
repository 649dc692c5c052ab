"""``BasicVariantGenerator``: grid search and random search, the default search algorithm.

Trial order: the ``points_to_evaluate`` first, then ``num_samples`` random samples; each of them once
per combination of ``grid_search`` values. Configs are made lazily from a seeded ``random.Random``, so
the generator pickles with the experiment state and a restored experiment continues the same sequence.
"""

from __future__ import annotations

import random
from typing import Any

from swarm.tune.search import variant_generator as vg
from swarm.tune.search.sample import Function
from swarm.tune.search.search_algorithm import SearchAlgorithm


class BasicVariantGenerator(SearchAlgorithm):
    def __init__(self, points_to_evaluate: list[dict] | None = None, max_concurrent: int = 0,
                 constant_grid_search: bool = False, random_state: int | random.Random | None = None) -> None:
        self._points = [dict(p) for p in points_to_evaluate or []]
        self.max_concurrent = max_concurrent
        self.constant_grid_search = constant_grid_search
        self._rng = random_state if isinstance(random_state, random.Random) else random.Random(random_state)
        self._space: dict = {}
        self._grid: list[dict] = [{}]
        self._samples = 0          # samples to draw: points first, then random ones
        self._sample = 0           # the sample being expanded over the grid
        self._grid_index = 0
        self._sample_grid: list[dict] = [{}]
        self._fixed: dict = {}     # what every grid variant of the current sample shares
        self._live: set[str] = set()

    def setup(self, param_space: dict, num_samples: int) -> None:
        self._space = param_space
        self._grid = vg.grid_variants(param_space)
        self._samples = len(self._points) + max(num_samples - len(self._points), 0)
        self._start_sample()

    def _start_sample(self) -> None:
        self._grid_index = 0
        self._fixed = {}
        self._sample_grid = self._grid
        if self._sample < len(self._points):
            # A point fixes its entries; the grid expands over the keys the point leaves open.
            point = self._points[self._sample]
            self._fixed = {tuple(k.split("/")): v for k, v in vg.flatten(point).items()}
            seen, grid = set(), []
            for variant in self._grid:
                kept = {p: v for p, v in variant.items() if p not in self._fixed}
                key = repr(sorted(kept.items(), key=repr))
                if key not in seen:
                    seen.add(key)
                    grid.append(kept)
            self._sample_grid = grid
        elif self.constant_grid_search:
            self._fixed = {p: d.sample(self._rng) for p, d in vg.domain_paths(self._space)
                           if not isinstance(d, Function)}

    def next_config(self, trial_id: str) -> dict | None:
        if self.is_finished() or (self.max_concurrent and len(self._live) >= self.max_concurrent):
            return None
        assigned = {**self._sample_grid[self._grid_index], **self._fixed}
        space = self._space
        if self._sample < len(self._points):  # point entries may sit where the space has no entry
            space = vg.merge(space, self._points[self._sample])
        config = vg.resolve(space, self._rng, {p: v for p, v in assigned.items()
                                               if _has_path(space, p)})
        self._grid_index += 1
        if self._grid_index >= len(self._sample_grid):
            self._sample += 1
            if self._sample < self._samples:
                self._start_sample()
        self._live.add(trial_id)
        return config

    def is_finished(self) -> bool:
        return self._sample >= self._samples

    @property
    def total_samples(self) -> int | None:
        return self._samples * len(self._grid)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self._live.discard(trial_id)


def _has_path(space: Any, path: tuple) -> bool:
    for key in path:
        try:
            space = space[key]
        except (KeyError, IndexError, TypeError):
            return False
    return True
