"""``Trial``: the driver's record of one trial — config, status, results summary, checkpoints, failures.
Plain data (no actor handle): it is pickled into the experiment state as is."""

from __future__ import annotations

import math
import numbers
import os
import pickle
import shutil
from collections import deque
from typing import Any

from swarm.tune.checkpoint import Checkpoint
from swarm.tune.config import CheckpointConfig

PENDING, RUNNING, PAUSED, TERMINATED, ERROR = "PENDING", "RUNNING", "PAUSED", "TERMINATED", "ERROR"


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class Trial:
    PENDING, RUNNING, PAUSED, TERMINATED, ERROR = PENDING, RUNNING, PAUSED, TERMINATED, ERROR

    def __init__(self, trial_id: str, config: dict, trainable_name: str, local_path: str,
                 resources: dict, experiment_tag: str = "") -> None:
        self.trial_id = trial_id
        self.config = config
        self.trainable_name = trainable_name
        self.local_path = local_path      # rebased by Tuner.restore when the experiment moved
        self.resources = resources
        self.experiment_tag = experiment_tag
        self.custom_trial_name: str | None = None
        self.status = PENDING
        self.last_result: dict = {}
        self.metric_analysis: dict[str, dict[str, float]] = {}
        self._recent: dict[str, deque] = {}
        self.num_results = 0
        self.checkpoints: list[tuple[str, dict]] = []   # kept (dir name, metrics), oldest first
        self.checkpoint_index = 0                       # the next checkpoint's number
        self.num_failures = 0
        self.restore_on_start = False                   # restart from the latest checkpoint
        self.error: BaseException | None = None
        self.error_msg: str | None = None

    def __str__(self) -> str:
        return self.custom_trial_name or f"{self.trainable_name}_{self.trial_id}"

    def __repr__(self) -> str:
        return str(self)

    @property
    def path(self) -> str:
        return self.local_path

    @property
    def is_finished(self) -> bool:
        return self.status in (TERMINATED, ERROR)

    @property
    def checkpoint(self) -> Checkpoint | None:
        """The latest checkpoint (what a restart resumes from)."""
        return Checkpoint(self._abs(self.checkpoints[-1][0])) if self.checkpoints else None

    def _abs(self, name: str) -> str:
        return os.path.join(self.local_path, name)

    @property
    def latest_checkpoint_result(self) -> dict:
        return self.checkpoints[-1][1] if self.checkpoints else {}

    def update_last_result(self, result: dict) -> None:
        self.last_result = result
        self.num_results += 1
        for key, value in result.items():
            if not _is_number(value) or key in ("pid", "timestamp"):
                continue
            value = float(value)
            stats = self.metric_analysis.get(key)
            recent = self._recent.setdefault(key, deque(maxlen=10))
            recent.append(value)
            if stats is None:
                stats = self.metric_analysis[key] = {"max": value, "min": value, "avg": value, "_n": 0}
            n = stats["_n"] + 1
            stats.update(_n=n, last=value, avg=stats["avg"] + (value - stats["avg"]) / n)
            if not math.isnan(value):
                stats["max"] = value if math.isnan(stats["max"]) else max(stats["max"], value)
                stats["min"] = value if math.isnan(stats["min"]) else min(stats["min"], value)
            stats["last-5-avg"] = sum(list(recent)[-5:]) / min(len(recent), 5)
            stats["last-10-avg"] = sum(recent) / len(recent)

    def register_checkpoint(self, path: str, result: dict, config: CheckpointConfig) -> None:
        """Record a persisted checkpoint; delete the ones ``config`` does not keep (never the latest)."""
        self.checkpoint_index += 1
        self.checkpoints.append((os.path.basename(path), result))
        keep = config.num_to_keep
        if keep is None or len(self.checkpoints) <= keep:
            return
        ranked = list(reversed(self.checkpoints))  # most recent first
        attr = config.checkpoint_score_attribute
        if attr is not None:
            sign = 1.0 if config.checkpoint_score_order == "max" else -1.0

            def score(item: tuple[str, dict]) -> float:
                value: Any = item[1].get(attr)
                return sign * float(value) if _is_number(value) else -math.inf
            ranked.sort(key=score, reverse=True)
        # the latest is kept in any case: failure recovery and Tuner.restore resume from it
        kept = {path for path, _ in ranked[:keep]} | {self.checkpoints[-1][0]}
        for path, _ in self.checkpoints:
            if path not in kept:
                shutil.rmtree(self._abs(path), ignore_errors=True)
        self.checkpoints = [c for c in self.checkpoints if c[0] in kept]

    def reset_error(self, keep_progress: bool) -> None:
        """Make an errored trial pending again: resumed from its latest checkpoint (``keep_progress``)
        or restarted from scratch."""
        self.status = PENDING
        self.error, self.error_msg, self.num_failures = None, None, 0
        if not keep_progress:
            self.checkpoints, self.last_result, self.metric_analysis, self._recent = [], {}, {}, {}
            self.num_results = 0
        self.restore_on_start = self.checkpoint is not None

    def best_checkpoints(self) -> list[tuple[Checkpoint, dict]]:
        return [(Checkpoint(self._abs(p)), m) for p, m in self.checkpoints if os.path.isdir(self._abs(p))]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_recent"] = {k: list(v) for k, v in self._recent.items()}
        if self.error is not None:
            try:
                pickle.dumps(self.error)
            except Exception:  # keep the state savable: the text is what matters
                from swarm.tune.error import TuneError
                state["error"] = TuneError(self.error_msg or repr(self.error))
        return state

    def __setstate__(self, state: dict) -> None:
        state["_recent"] = {k: deque(v, maxlen=10) for k, v in state.get("_recent", {}).items()}
        self.__dict__.update(state)
