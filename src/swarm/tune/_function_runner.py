"""Runs a function trainable in its own thread inside the trial actor, one result per ``next_result``.

    next_result() #1 ─ start thread ─▶ fn(config) ... report(m) ─▶ results ─▶ #1 returns m
    next_result() #2 ─ session.proceed() ─▶ report returns, fn goes on ... ─▶ #2 returns the next one
    fn returns      ─▶ ("done", value)   ─▶ next_result returns {"done": True, ...}
    fn raises       ─▶ ("error", exc)    ─▶ next_result raises it (the driver sees a TaskError)
    stop()          ─ session.stop() ─▶ report raises TrialStopped in the thread; joined here

The thread is owned by this runner and ended by ``stop()``; it is a daemon only so a trainable that
ignores the stop (e.g. stuck in C code) cannot keep the actor process alive once Tune kills it.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from swarm.tune.session import TrialSession, TrialStopped

STOP_JOIN_TIMEOUT_S = 10.0


class FunctionRunner:
    def __init__(self, fn: Callable[[dict], Any], config: dict, session: TrialSession) -> None:
        self._fn = fn
        self._config = config
        self._session = session
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        try:
            value = self._fn(self._config)
        except TrialStopped:
            value = None
        except BaseException as e:  # handed to the driver through next_result
            self._session.results.put(("error", e, None))
            return
        self._session.results.put(("done", value, None))

    def next_result(self) -> dict:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="tune-trainable", daemon=True)
            self._thread.start()
        else:
            self._session.proceed()
        kind, value, checkpoint = self._session.results.get()
        if kind == "error":
            raise value
        if kind == "done":
            final = None
            if isinstance(value, dict):  # a returned dict is the final result, as in Ray
                final = self._session.clock.stamp({**value, "done": True})
            return {"result": final, "checkpoint": None, "done": True}
        return {"result": value, "checkpoint": checkpoint, "done": False}

    def stop(self) -> bool:
        """Stop the trainable; True once its thread has ended."""
        self._session.stop()
        if self._thread is not None:
            self._thread.join(STOP_JOIN_TIMEOUT_S)
            return not self._thread.is_alive()
        return True
