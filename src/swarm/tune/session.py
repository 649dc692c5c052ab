"""The trial's side of ``tune.report``: in a trial actor, the user's function runs in its own thread and
each ``report`` hands a result to the actor's ``next_result`` call, then waits for the driver's verdict.

    user thread                               actor method thread (driver calls next_result/stop)
    ───────────                               ───────────────────
    report(metrics, checkpoint)
      copy checkpoint → trial_dir/checkpoint_N
      results.put(result) ───────────────────▶ next_result() returns it to the driver
      wait for verdict ◀───────────────────── next next_result(): go on   |  stop(): raise TrialStopped
                                                                            in the user thread

So the function never runs ahead of the driver: a scheduler's STOP lands at the very next ``report``.
Outside a trial (e.g. calling the function directly to debug it) ``report`` logs and does nothing.
"""

from __future__ import annotations

import logging
import queue
import threading

from swarm.tune._clock import ResultClock
from swarm.tune.checkpoint import Checkpoint, persist

log = logging.getLogger(__name__)

_session: TrialSession | None = None


class TrialStopped(BaseException):
    """Raised inside the trainable's thread at ``report`` when Tune stops the trial. A BaseException so a
    trainable's own ``except Exception`` does not swallow it."""


class TuneContext:
    """What a trainable can ask about its trial (``tune.get_context()``)."""

    def __init__(self, info: dict) -> None:
        self._info = info

    def get_trial_id(self) -> str | None:
        return self._info.get("trial_id")

    def get_trial_name(self) -> str | None:
        return self._info.get("trial_name")

    def get_trial_dir(self) -> str | None:
        return self._info.get("trial_dir")

    def get_experiment_name(self) -> str | None:
        return self._info.get("experiment_name")

    def get_trial_resources(self) -> dict:
        return dict(self._info.get("resources", {}))

    def get_world_size(self) -> int:
        return 1

    def get_world_rank(self) -> int:
        return 0

    def get_local_rank(self) -> int:
        return 0


class TrialSession:
    def __init__(self, info: dict, clock: ResultClock, checkpoint: Checkpoint | None,
                 checkpoint_index: int) -> None:
        self.info = info
        self.clock = clock
        self.checkpoint = checkpoint
        self.checkpoint_index = checkpoint_index
        self.results: queue.Queue = queue.Queue()
        self._verdict = threading.Event()
        self._stop = False

    def report(self, metrics: dict, checkpoint: Checkpoint | None) -> None:
        if not isinstance(metrics, dict):
            raise TypeError(f"tune.report() takes a dict of metrics, got {type(metrics).__name__}")
        if checkpoint is not None and not isinstance(checkpoint, Checkpoint):
            raise TypeError(f"tune.report(checkpoint=...) takes a tune.Checkpoint, got "
                            f"{type(checkpoint).__name__}: wrap a directory with Checkpoint.from_directory")
        if self._stop:
            raise TrialStopped()
        path = None
        if checkpoint is not None:
            path = persist(checkpoint, self.info["trial_dir"], self.checkpoint_index)
            self.checkpoint_index += 1
            self.checkpoint = Checkpoint(path)
        self.results.put(("result", self.clock.stamp(metrics), path))
        self._verdict.wait()
        self._verdict.clear()
        if self._stop:
            raise TrialStopped()

    def proceed(self) -> None:
        """The driver wants the next result."""
        self._verdict.set()

    def stop(self) -> None:
        """The driver stops the trial: ``report`` raises ``TrialStopped`` in the user thread."""
        self._stop = True
        self._verdict.set()


def install(session: TrialSession | None) -> None:
    global _session
    _session = session


def report(metrics: dict, *, checkpoint: Checkpoint | None = None) -> None:
    """Report this iteration's ``metrics`` (and optionally a checkpoint) to Tune. Blocks until Tune asks
    for the next result; raises ``TrialStopped`` (do not catch it) when Tune stops the trial."""
    if _session is None:
        log.warning("tune.report() was called outside of a Tune trial (metrics %s were dropped): run "
                    "the function through Tuner(...).fit()",
                    sorted(metrics) if isinstance(metrics, dict) else metrics)
        return
    _session.report(metrics, checkpoint)


def get_checkpoint() -> Checkpoint | None:
    """The checkpoint to resume from: the latest this trial reported, or the one it was restored from
    (after a failure or ``Tuner.restore``); None on a fresh start."""
    return _session.checkpoint if _session is not None else None


def get_context() -> TuneContext:
    return TuneContext(_session.info if _session is not None else {})


def current() -> TrialSession | None:
    return _session
