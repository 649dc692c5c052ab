"""``TrialRunner``: the actor that hosts one trial (started with the trial's resource request).

    driver                          TrialRunner actor (one process per running trial)
    next_result.remote() ─────────▶ function trainable: FunctionRunner (user fn in a thread)
                          ◀──────── class trainable: Trainable.train() → step(), plus a checkpoint
                                    every checkpoint_frequency results
    stop.remote(save)    ─────────▶ (class trainable: checkpoint first, for checkpoint_at_end) stop the
                                    thread / Trainable.stop(); then the driver kills the actor

``next_result`` returns ``{"result": dict | None, "checkpoint": path | None, "done": bool}``; an
exception in the trainable is raised from it and reaches the driver as a ``TaskError``.

The actor runs two calls at once (``max_concurrency=2``) so that ``stop`` can reach a function
trainable while a ``next_result`` waits for its next report; a class trainable's calls take a lock, so
``stop`` waits for a running ``step``.
"""

from __future__ import annotations

import os
import tempfile
import threading
from typing import Any

import swarm
from swarm.tune import session as session_mod
from swarm.tune._clock import ResultClock
from swarm.tune._function_runner import FunctionRunner
from swarm.tune.checkpoint import Checkpoint, persist
from swarm.tune.trainable import Trainable, is_class_trainable


class TrialRunner:
    def __init__(self, trainable: Any, config: dict, info: dict, restore: dict | None) -> None:
        """``info``: trial_id, trial_name, trial_dir, experiment_name, resources, checkpoint_frequency,
        checkpoint_index; ``restore``: checkpoint path, iteration and time_total to resume from."""
        self._lock = threading.Lock()
        self._trainable: Trainable | None = None
        self._function: FunctionRunner | None = None
        self._start(trainable, config, info, restore)

    def _start(self, trainable: Any, config: dict, info: dict, restore: dict | None) -> None:
        os.makedirs(info["trial_dir"], exist_ok=True)
        self._info = info
        self._checkpoint_index = info.get("checkpoint_index", 0)
        self._frequency = info.get("checkpoint_frequency", 0)
        self._trainable, self._function = None, None
        if is_class_trainable(trainable):
            # a reused actor gets a new instance: the previous one was stopped (cleanup() ran)
            self._trainable = trainable(config=config, _trial_info=info)
            if restore is not None:
                self._trainable._clock.restore(restore["iteration"], restore["time_total"])
                self._trainable.restore(restore["checkpoint"])
        else:
            clock = ResultClock(info["trial_id"])
            checkpoint = None
            if restore is not None:
                clock.restore(restore["iteration"], restore["time_total"])
                checkpoint = Checkpoint(restore["checkpoint"])
            session = session_mod.TrialSession(info, clock, checkpoint, self._checkpoint_index)
            session_mod.install(session)
            self._function = FunctionRunner(trainable, config, session)

    def next_result(self, reset: tuple | None = None) -> dict:
        """The trial's next result. ``reset`` = (trainable, config, info, restore) first starts another
        trial in this actor (actor reuse; one call, so nothing can run between the reset and the start)."""
        if reset is not None:
            self._start(*reset)
        if self._function is not None:
            return self._function.next_result()
        assert self._trainable is not None
        with self._lock:
            result = self._trainable.train()
            checkpoint = None
            if self._frequency and self._trainable.iteration % self._frequency == 0:
                checkpoint = self._save()
        return {"result": result, "checkpoint": checkpoint, "done": bool(result.get("done"))}

    def _save(self) -> str:
        """Checkpoint the class trainable into the trial directory now; returns the path."""
        assert self._trainable is not None
        staging = tempfile.mkdtemp(prefix=".staging_", dir=self._info["trial_dir"])
        self._trainable.save(staging)
        path = persist(Checkpoint(staging), self._info["trial_dir"], self._checkpoint_index, move=True)
        self._checkpoint_index += 1
        return path

    def stop(self, save: bool = False) -> dict:
        """End the trial; with ``save`` (class trainables) checkpoint it first. Returns the checkpoint
        path and whether the actor is clean enough to host another trial (its thread has ended)."""
        if self._function is not None:
            return {"checkpoint": None, "reusable": self._function.stop()}
        assert self._trainable is not None
        with self._lock:
            path = self._save() if save else None
            self._trainable.stop()
        return {"checkpoint": path, "reusable": True}

    def ping(self) -> int:
        return os.getpid()


_actor_class: Any = None


def runner_actor_class() -> Any:
    """The actor class, made on first use (so importing swarm.tune starts nothing)."""
    global _actor_class
    if _actor_class is None:
        _actor_class = swarm.remote(max_concurrency=2)(TrialRunner)
    return _actor_class
