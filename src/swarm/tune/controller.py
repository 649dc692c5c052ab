"""``TuneController``: the driver's event loop that runs an experiment's trials as actors.

    ┌──────────────────────────── one step of the loop (driver thread) ────────────────────────────┐
    │ start trials while the cluster has room: pending ones first (restarts, restored), then new    │
    │   ones from search_alg.next_config(); each is a TrialRunner actor with the trial's resources  │
    │ swarm.wait(next_result refs) ──▶ result ──▶ result.json, checkpoint registry, callbacks       │
    │      stopper(trial_id, result) / scheduler.on_trial_result() ──▶ CONTINUE: next_result.remote │
    │                                                              └─▶ STOP: stop.remote(), kill    │
    │                              ──▶ ActorDiedError / TaskError ──▶ restart from the latest       │
    │                                   checkpoint (FailureConfig.max_failures) or mark ERROR       │
    │ save the experiment state (every status change; results throttled); redraw progress table     │
    └───────────────────────────────────────────────────────────────────────────────────────────────┘

Every trial has at most one call in flight, so the trainable never runs ahead of a scheduler's verdict.
Only the public swarm API is used: actors, ``wait``, ``get``, ``kill``, ``cluster_resources``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator

import swarm
from swarm.exceptions import ActorDiedError, SwarmError
from swarm.tune import storage
from swarm.tune._runner import runner_actor_class
from swarm.tune.callback import CallbackList
from swarm.tune.config import CheckpointConfig, FailureConfig
from swarm.tune.error import TuneError
from swarm.tune.experiment_state import Experiment, ExperimentStateWriter
from swarm.tune.schedulers.trial_scheduler import TrialScheduler
from swarm.tune.trainable import actor_options, is_class_trainable, trainable_name, trial_resources
from swarm.tune.trial import ERROR, PAUSED, PENDING, RUNNING, TERMINATED, Trial

log = logging.getLogger(__name__)

POLL_S = 0.1
STOP_TIMEOUT_S = 10.0


@dataclass
class _Stopping:
    """A finished trial whose actor was asked to stop (and maybe save); killed once it did or timed out."""

    trial: Trial
    actor: Any
    stop_ref: Any
    deadline: float


class TuneController:
    def __init__(self, trainable: Any, experiment: Experiment, reporter: Any = None) -> None:
        self.trainable = trainable
        self.exp = experiment
        self._name = trainable_name(trainable)
        self._is_class = is_class_trainable(trainable)
        self._reporter = reporter
        self._callbacks = CallbackList(experiment.run_config.callbacks)
        self._writer = ExperimentStateWriter(experiment.experiment_dir)
        self._inflight: dict[Any, Trial] = {}
        self._actors: dict[str, Any] = {}
        self._stopping: list[_Stopping] = []
        self._idle: list[tuple[Any, dict[str, float]]] = []  # finished trials' actors, kept for reuse
        self._on_reused: set[str] = set()  # trials started in a reused actor, no result from it yet
        self._used: dict[str, float] = {}
        self._totals: dict[str, float] = {}
        self._pending = [t for t in experiment.trials if t.status in (PENDING, PAUSED)]
        self._stop_all = False
        self._interrupted = False
        self._raise: BaseException | None = None
        self._dirty = True
        self._iteration = 0
        self._pause_warned = False
        tc = experiment.tune_config
        self._max_concurrent = tc.max_concurrent_trials or math.inf
        self._reuse = tc.reuse_actors if tc.reuse_actors is not None else not self._is_class
        searcher = getattr(experiment.search_alg, "searcher", None)
        metrics = (tc.metric, experiment.scheduler.metric, getattr(searcher, "metric", None))
        self._metrics = {m for m in metrics if m}
        rc = experiment.run_config
        self._checkpoint_config = rc.checkpoint_config or CheckpointConfig()
        self._failure_config = rc.failure_config or FailureConfig()

    @property
    def trials(self) -> list[Trial]:
        return self.exp.trials

    def get_trials(self) -> list[Trial]:
        return self.exp.trials

    # -- the loop --------------------------------------------------------------------------------------
    def run(self) -> list[Trial]:
        self._totals = {k: float(v) for k, v in swarm.cluster_resources().items()}
        if self._reporter is not None:
            self._reporter.setup(self.exp.param_space, self.exp.tune_config.metric,
                                 self.exp.tune_config.mode, [f"Result logdir: {self.exp.experiment_dir}"])
        self._callbacks.call("setup", stop=self.exp.run_config.stop,
                             num_samples=self.exp.tune_config.num_samples,
                             total_num_samples=self.exp.search_alg.total_samples)
        with self._sigint_handler():
            try:
                while not self._step():
                    pass
            finally:
                self._shutdown()
        if self._raise is not None:
            raise self._raise
        return self.exp.trials

    def _step(self) -> bool:
        """One round of the loop; True when the experiment is over."""
        self._iteration += 1
        self._callbacks.call("on_step_begin", self._iteration, self.trials)
        if self._interrupted:
            return True
        if self.exp.stopper is not None and self.exp.stopper.stop_all():
            self._stop_all = True
        if self._stop_all:
            for trial in [t for t in self._inflight.values()]:
                self._finish(trial, None)
            self._inflight.clear()
        else:
            self._start_trials()
        self._process_results()
        self._process_stopping()
        self._callbacks.call("on_step_end", self._iteration, self.trials)
        self._save()
        if self._reporter is not None:
            self._reporter.update(self.trials, self._status_lines())
        if self._inflight or self._stopping:
            return False
        return self._stop_all or (not self._pending and self.exp.search_alg.is_finished())

    # -- starting trials -------------------------------------------------------------------------------
    def _start_trials(self) -> None:
        while len(self._actors) < self._max_concurrent:
            trial = self._pending[0] if self._pending else self._new_trial()
            if trial is None:
                break
            actor = self._take_idle(trial.resources)
            if actor is None and self._reuse and any(s.trial.resources == trial.resources
                                                     for s in self._stopping):
                return  # an actor of this shape is stopping: reusing it beats starting a process
            if actor is None and not self._fits(trial.resources):
                if not self._idle:
                    return
                self._kill(*self._idle.pop())  # an idle actor of another shape holds what it needs
                continue
            self._pending.remove(trial)
            self._launch(trial, actor)
        if not self._pending and self.exp.search_alg.is_finished():
            while self._idle:  # no trial will need them
                self._kill(*self._idle.pop())

    def _take_idle(self, resources: dict[str, float]) -> Any:
        for i, (actor, shape) in enumerate(self._idle):
            if shape == resources:
                del self._idle[i]
                return actor
        return None

    def _new_trial(self) -> Trial | None:
        exp = self.exp
        if exp.search_alg.is_finished():
            return None
        trial_id = f"{exp.experiment_tag}_{exp.trial_counter:05d}"
        config = exp.search_alg.next_config(trial_id)
        if config is None:
            return None
        exp.trial_counter += 1
        resources = trial_resources(self.trainable, config)
        short = {k: v for k, v in resources.items() if v > self._totals.get(k, 0.0) + 1e-9}
        if short:
            raise TuneError(f"trial {trial_id} needs {resources} but the cluster has "
                            f"{ {k: self._totals.get(k, 0.0) for k in short} } in total: lower the request "
                            f"in tune.with_resources(...) or start swarm with more resources")
        trial = Trial(trial_id, config, self._name, "", resources, experiment_tag=exp.experiment_tag)
        tc = exp.tune_config
        if tc.trial_name_creator is not None:
            trial.custom_trial_name = str(tc.trial_name_creator(trial))
        dirname = str(tc.trial_dirname_creator(trial)) if tc.trial_dirname_creator else trial_id
        trial.local_path = os.path.join(exp.experiment_dir, dirname)
        storage.write_params(trial.local_path, config)
        exp.trials.append(trial)
        self._pending.append(trial)
        exp.scheduler.on_trial_add(self, trial)
        self._dirty = True
        return trial

    def _fits(self, resources: dict[str, float]) -> bool:
        used, total = self._used, self._totals
        return all(used.get(k, 0.0) + v <= total.get(k, 0.0) + 1e-9 for k, v in resources.items())

    def _launch(self, trial: Trial, actor: Any = None) -> None:
        """Start ``trial`` in a new actor, or in ``actor`` (an idle one of the same shape, reused)."""
        restore = None
        if trial.restore_on_start and trial.checkpoint is not None:
            at = trial.latest_checkpoint_result
            restore = {"checkpoint": trial.checkpoint.path, "iteration": at.get("training_iteration", 0),
                       "time_total": at.get("time_total_s", 0.0)}
        trial.restore_on_start = False
        info = {"trial_id": trial.trial_id, "trial_name": str(trial), "trial_dir": trial.local_path,
                "experiment_name": self.exp.name, "resources": dict(trial.resources),
                "checkpoint_index": trial.checkpoint_index,
                "checkpoint_frequency": self._checkpoint_config.checkpoint_frequency}
        args = (self.trainable, trial.config, info, restore)
        if actor is None:
            actor = runner_actor_class().options(**actor_options(trial.resources)).remote(*args)
            for k, v in trial.resources.items():
                self._used[k] = self._used.get(k, 0.0) + v
            ref = actor.next_result.remote()
        else:
            ref = actor.next_result.remote(args)  # reset the reused actor to this trial, then run it
            self._on_reused.add(trial.trial_id)
        self._actors[trial.trial_id] = actor
        self._inflight[ref] = trial
        trial.status = RUNNING
        self._dirty = True
        hook = "on_trial_restore" if restore else "on_trial_start"
        self._callbacks.call(hook, self._iteration, self.trials, trial)

    # -- results ---------------------------------------------------------------------------------------
    def _process_results(self) -> None:
        # stop calls are waited on too, so a finished trial's resources are free as soon as it exits
        refs = list(self._inflight) + [s.stop_ref for s in self._stopping]
        if not refs:
            time.sleep(POLL_S)  # nothing running (e.g. a searcher not ready yet): do not spin
            return
        ready, _ = swarm.wait(refs, num_returns=1, timeout=POLL_S)
        if ready:
            ready, _ = swarm.wait(refs, num_returns=len(refs), timeout=0)
        for ref in ready:
            if ref not in self._inflight:
                continue
            trial = self._inflight.pop(ref)
            reused = trial.trial_id in self._on_reused
            self._on_reused.discard(trial.trial_id)
            try:
                out = swarm.get(ref)
            except ActorDiedError as e:
                # an idle actor that died while it waited for this trial is not the trial's failure
                self._on_failure(trial, e, count=not reused)
                continue
            except SwarmError as e:  # TaskError: the trainable raised
                self._on_failure(trial, e)
                continue
            if out["result"] is not None:
                self._on_result(trial, out["result"], out["checkpoint"], out["done"])
            elif out["done"]:
                trial.last_result = {**trial.last_result, "done": True}
                self._finish(trial, trial.last_result)

    def _on_result(self, trial: Trial, result: dict, checkpoint: str | None, done: bool) -> None:
        exp = self.exp
        result = {**result, "config": trial.config}
        trial.update_last_result(result)
        storage.append_result(trial.local_path, result)
        if checkpoint is not None:
            self._register_checkpoint(trial, checkpoint, result)
        self._callbacks.call("on_trial_result", self._iteration, self.trials, trial, result)
        missing = sorted(m for m in self._metrics if m not in result)
        if missing and not done:
            self._on_failure(trial, TuneError(
                f"trial {trial} reported a result without {missing}, the metric the search optimises "
                f"(TuneConfig/scheduler/searcher metric=...): report it in every tune.report() call, or "
                f"fix the name. The result had {sorted(k for k in result if k != 'config')}"), retry=False)
            return
        if done or (exp.stopper is not None and exp.stopper(trial.trial_id, result)):
            decision = TrialScheduler.STOP
        else:
            decision = exp.scheduler.on_trial_result(self, trial, result)
        if decision == TrialScheduler.PAUSE:
            if not self._pause_warned:
                log.warning("%s asked to PAUSE a trial; swarm.tune does not pause trials, it stops them",
                            type(exp.scheduler).__name__)
                self._pause_warned = True
            decision = TrialScheduler.STOP
        if decision == TrialScheduler.STOP or self._stop_all:
            self._finish(trial, result)
        else:
            exp.search_alg.on_trial_result(trial.trial_id, result)
            self._inflight[self._actors[trial.trial_id].next_result.remote()] = trial

    def _register_checkpoint(self, trial: Trial, path: str, result: dict) -> None:
        trial.register_checkpoint(path, result, self._checkpoint_config)
        self._dirty = True  # what a restore resumes from: save it like a status change
        self._callbacks.call("on_checkpoint", self._iteration, self.trials, trial, trial.checkpoint)

    def _finish(self, trial: Trial, result: dict | None) -> None:
        """The trial is done (it returned, a stopper or the scheduler stopped it): TERMINATED."""
        result = result if result is not None else trial.last_result
        trial.status = TERMINATED
        actor = self._actors.pop(trial.trial_id)
        cc = self._checkpoint_config
        at_latest = bool(trial.checkpoints) and trial.latest_checkpoint_result is trial.last_result
        save = bool(self._is_class and cc.checkpoint_at_end and not at_latest)
        self._stopping.append(_Stopping(trial, actor, actor.stop.remote(save),
                                        time.monotonic() + STOP_TIMEOUT_S))
        self.exp.scheduler.on_trial_complete(self, trial, result)
        self.exp.search_alg.on_trial_complete(trial.trial_id, result=result)
        self._callbacks.call("on_trial_complete", self._iteration, self.trials, trial)
        self._dirty = True

    def _process_stopping(self) -> None:
        for s in list(self._stopping):
            ready, _ = swarm.wait([s.stop_ref], timeout=0)
            if not ready and time.monotonic() < s.deadline:
                continue
            self._stopping.remove(s)
            reusable = False
            if ready:
                try:
                    out = swarm.get(s.stop_ref)
                    reusable = out["reusable"]
                    if out["checkpoint"]:
                        self._register_checkpoint(s.trial, out["checkpoint"], s.trial.last_result)
                        self._dirty = True
                except SwarmError as e:
                    log.warning("Trial %s did not stop cleanly: %s", s.trial, _first_line(e))
            if reusable and self._reuse and not self._interrupted:
                self._idle.append((s.actor, s.trial.resources))
            else:
                self._kill(s.actor, s.trial.resources)

    def _kill(self, actor: Any, resources: dict[str, float]) -> None:
        """Kill a trial actor and give back what it held."""
        with contextlib.suppress(Exception):  # already dead is fine
            swarm.kill(actor)
        for k, v in resources.items():
            self._used[k] = self._used.get(k, 0.0) - v

    # -- failures --------------------------------------------------------------------------------------
    def _on_failure(self, trial: Trial, error: BaseException, retry: bool = True, count: bool = True) -> None:
        """Restart the trial from its latest checkpoint (within ``FailureConfig.max_failures``; a
        failure not ``count``ed is always retried) or mark it ERROR."""
        actor = self._actors.pop(trial.trial_id, None)
        if actor is not None:
            self._kill(actor, trial.resources)
        trial.num_failures += int(count)
        max_failures = self._failure_config.max_failures
        if retry and (not count or max_failures < 0 or trial.num_failures <= max_failures):
            where = f"from {trial.checkpoint.path}" if trial.checkpoint else "from scratch (no checkpoint)"
            budget = "not counted: the reused actor it was given had died" if not count else \
                f"failure {trial.num_failures} of at most {'∞' if max_failures < 0 else max_failures}"
            log.warning("Trial %s failed (%s: %s); restarting it %s (%s)", trial, type(error).__name__,
                        _first_line(error), where, budget)
            trial.status = PENDING
            trial.restore_on_start = trial.checkpoint is not None
            self._pending.insert(0, trial)
            self._callbacks.call("on_trial_recover", self._iteration, self.trials, trial)
        else:
            trial.status = ERROR
            trial.error = error
            trial.error_msg = str(error)
            storage.write_error(trial.local_path, error)
            log.error("Trial %s errored: %s", trial, _first_line(error))
            self.exp.scheduler.on_trial_error(self, trial)
            self.exp.search_alg.on_trial_complete(trial.trial_id, result=None, error=True)
            self._callbacks.call("on_trial_error", self._iteration, self.trials, trial)
            fail_fast = self._failure_config.fail_fast
            if fail_fast:
                self._stop_all = True
                if fail_fast == "raise":
                    self._raise = error
        self._dirty = True

    # -- end, state, display ---------------------------------------------------------------------------
    def _shutdown(self) -> None:
        """Stop whatever still runs (interrupt or error), save the state, print the final table."""
        for trial_id, actor in list(self._actors.items()):
            trial = next(t for t in self.trials if t.trial_id == trial_id)
            trial.status = PENDING  # unfinished: Tuner.restore resumes it from its latest checkpoint
            trial.restore_on_start = trial.checkpoint is not None
            self._kill(actor, trial.resources)
        self._actors.clear()
        self._inflight.clear()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while self._stopping and time.monotonic() < deadline:
            self._process_stopping()
            time.sleep(0.01)
        for s in self._stopping:
            self._kill(s.actor, s.trial.resources)
        self._stopping.clear()
        while self._idle:
            self._kill(*self._idle.pop())
        self._save(final=True)
        if self._reporter is not None:
            self._reporter.final(self.trials, self._status_lines())
        self._callbacks.call("on_experiment_end", self.trials)
        if self._interrupted:
            log.warning("The experiment was interrupted; its state is saved. Resume it with "
                        "Tuner.restore(%r, trainable=...)", self.exp.experiment_dir)

    def _save(self, final: bool = False) -> None:
        self._writer.save(self.exp, status_changed=self._dirty, final=final)
        self._dirty = False

    def _status_lines(self) -> list[str]:
        used = ", ".join(f"{self._used.get(k, 0.0):g}/{v:g} {k}" for k, v in self._totals.items()
                         if k in ("CPU", "GPU") or self._used.get(k))
        return [*self.exp.scheduler.debug_string().splitlines(), f"Logical resource usage: {used}"]

    @contextlib.contextmanager
    def _sigint_handler(self) -> Iterator[None]:
        """First Ctrl+C: stop trials, save the state and return; second: raise KeyboardInterrupt."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_sigint(signum: int, frame: Any) -> None:
            if self._interrupted:
                raise KeyboardInterrupt
            self._interrupted = True
            log.warning("Stopping the experiment and saving its state (Ctrl+C again to force)")

        previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[-1] if text else repr(error)
