"""The fields Tune adds to every result (``training_iteration``, ``time_total_s``, ...), counted across
restarts: a trial restored from a checkpoint continues from that checkpoint's iteration and time."""

from __future__ import annotations

import datetime
import os
import socket
import time


class ResultClock:
    def __init__(self, trial_id: str | None = None, iteration: int = 0, time_total: float = 0.0) -> None:
        self.trial_id = trial_id
        self.iteration = iteration
        self.time_total = time_total
        self.iterations_since_restore = 0
        self._restored_at = time.time()
        self._last = self._restored_at
        from swarm.util import get_node_ip_address
        self._host = {"pid": os.getpid(), "hostname": socket.gethostname(), "node_ip": get_node_ip_address()}

    def restore(self, iteration: int, time_total: float) -> None:
        self.iteration, self.time_total = iteration, time_total
        self.iterations_since_restore = 0
        self._restored_at = self._last = time.time()

    def stamp(self, metrics: dict) -> dict:
        """``metrics`` plus the automatic fields (a metric the user set explicitly wins)."""
        now = time.time()
        this_iter = now - self._last
        self._last = now
        self.iteration += 1
        self.iterations_since_restore += 1
        self.time_total += this_iter
        result = dict(metrics)
        result.setdefault("training_iteration", self.iteration)
        result.setdefault("time_this_iter_s", this_iter)
        result.setdefault("done", False)
        result.update({
            "time_total_s": self.time_total, "timestamp": int(now),
            "time_since_restore": now - self._restored_at,
            "iterations_since_restore": self.iterations_since_restore,
            "date": datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S"),
            **self._host,
        })
        if self.trial_id is not None:
            result["trial_id"] = self.trial_id
        return result
