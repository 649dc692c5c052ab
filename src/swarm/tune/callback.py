"""``Callback``: hooks into the experiment's life (``RunConfig(callbacks=[...])``), as in
``ray.tune.Callback``. Every hook receives ``iteration`` (the controller's loop count) and ``trials``."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


class Callback:
    def setup(self, stop: Any = None, num_samples: int | None = None, total_num_samples: int | None = None,
              **info: Any) -> None:
        pass

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        pass

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        pass

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        pass

    def on_trial_restore(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        pass

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        pass

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        pass

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        pass

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        pass

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:
        pass

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        pass


class CallbackList:
    """Calls every callback's hook; a failing callback is logged, not allowed to stop the experiment."""

    def __init__(self, callbacks: list | None) -> None:
        self._callbacks = list(callbacks or [])

    def call(self, hook: str, *args: Any, **kwargs: Any) -> None:
        for cb in self._callbacks:
            try:
                getattr(cb, hook)(*args, **kwargs)
            except Exception:
                log.exception("Tune callback %s.%s failed", type(cb).__name__, hook)
