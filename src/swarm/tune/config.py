"""Configuration records, with Ray's names and defaults: ``TuneConfig`` (how to search), ``RunConfig``
(where results go and when to stop), ``CheckpointConfig``, ``FailureConfig``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

DEFAULT_STORAGE_PATH = os.path.join("~", "swarm_results")


@dataclass
class TuneConfig:
    """How trials are searched and scheduled.

    ``num_samples`` random samples (each once per grid combination); ``metric``/``mode`` are what
    ``search_alg``, ``scheduler`` and ``ResultGrid.get_best_result`` optimise; ``max_concurrent_trials``
    caps running trials (the cluster's resources cap them anyway). ``reuse_actors`` (default: for
    function trainables) starts the next trial in a finished trial's actor when it asks for the same
    resources, saving a process start per trial; a class trainable gets a fresh instance there.
    """

    mode: str | None = None
    metric: str | None = None
    search_alg: Any = None
    scheduler: Any = None
    num_samples: int = 1
    max_concurrent_trials: int | None = None
    time_budget_s: float | None = None
    reuse_actors: bool | None = None
    trial_name_creator: Callable[[Any], str] | None = None
    trial_dirname_creator: Callable[[Any], str] | None = None

    def __post_init__(self) -> None:
        if self.mode is not None and self.mode not in ("min", "max"):
            raise ValueError(f"TuneConfig(mode=...) must be 'min' or 'max', got {self.mode!r}")
        if not isinstance(self.num_samples, int) or (self.num_samples < 1 and self.num_samples != -1):
            raise ValueError(f"TuneConfig(num_samples=...) must be a positive int (or -1 for as many as the "
                             f"search algorithm gives), got {self.num_samples!r}")
        if self.max_concurrent_trials is not None and self.max_concurrent_trials < 1:
            raise ValueError(f"TuneConfig(max_concurrent_trials=...) must be positive or None, got "
                             f"{self.max_concurrent_trials!r}")


@dataclass
class CheckpointConfig:
    """Which checkpoints are kept: the ``num_to_keep`` best by ``checkpoint_score_attribute`` (most
    recent when None; the latest is always kept, for recovery). ``checkpoint_frequency`` and
    ``checkpoint_at_end`` apply to class trainables, which Tune asks to save."""

    num_to_keep: int | None = None
    checkpoint_score_attribute: str | None = None
    checkpoint_score_order: str = "max"
    checkpoint_frequency: int = 0
    checkpoint_at_end: bool | None = None

    def __post_init__(self) -> None:
        if self.num_to_keep is not None and self.num_to_keep < 1:
            raise ValueError(f"CheckpointConfig(num_to_keep=...) must be a positive int or None, got "
                             f"{self.num_to_keep!r}")
        if self.checkpoint_score_order not in ("min", "max"):
            raise ValueError(f"checkpoint_score_order must be 'min' or 'max', got "
                             f"{self.checkpoint_score_order!r}")


@dataclass
class FailureConfig:
    """``max_failures``: times a failed trial is restarted from its last checkpoint (-1: always);
    ``fail_fast``: stop the whole experiment at the first trial error (``"raise"``: and raise it)."""

    max_failures: int = 0
    fail_fast: bool | str = False


@dataclass
class RunConfig:
    """Where results go (``storage_path/name/``), when trials stop, how failures are handled."""

    name: str | None = None
    storage_path: str | None = None
    storage_filesystem: Any = None
    failure_config: FailureConfig | None = None
    checkpoint_config: CheckpointConfig | None = None
    sync_config: Any = None
    verbose: int | None = None
    stop: Any = None
    callbacks: list | None = None
    progress_reporter: Any = None
    log_to_file: bool | str = False

    def __post_init__(self) -> None:
        if self.storage_filesystem is not None:
            raise NotImplementedError("RunConfig(storage_filesystem=...) is not supported: swarm's tune "
                                      "stores results on a local (or shared, mounted) path")
        if self.failure_config is None:
            self.failure_config = FailureConfig()
        if self.checkpoint_config is None:
            self.checkpoint_config = CheckpointConfig()
