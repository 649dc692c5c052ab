"""The autoscaling decision for one deployment: a plain class, fed load samples and asked for a target.

    load = ongoing requests at its replicas + requests queued at handles   (sampled by the controller)
    desired = ceil(current * (1 + (avg_load / (target_ongoing * current) - 1) * factor)), in [min, max]

As in Ray, a change must be wanted continuously for ``upscale_delay_s`` (``downscale_delay_s``) before
it is made, so a short burst or lull does not flap the replica count.
"""

from __future__ import annotations

import collections
import math

from swarm.serve.config import AutoscalingConfig


class AutoscalingPolicy:
    def __init__(self, config: AutoscalingConfig) -> None:
        self.config = config
        self.samples: collections.deque[tuple[float, float]] = collections.deque()
        self._up_since: float | None = None
        self._down_since: float | None = None

    def record(self, now: float, load: float) -> None:
        self.samples.append((now, load))
        horizon = now - max(self.config.look_back_period_s, 1e-9)
        while len(self.samples) > 1 and self.samples[0][0] < horizon:
            self.samples.popleft()

    def average_load(self) -> float | None:
        if not self.samples:
            return None
        return sum(v for _, v in self.samples) / len(self.samples)

    def desired(self, current: int) -> int:
        """The replica count the recent load asks for, ignoring delays."""
        c = self.config
        avg = self.average_load()
        if avg is None:
            return max(c.min_replicas, min(current, c.max_replicas))
        if current == 0:
            want = math.ceil(avg / c.target_ongoing_requests) if avg > 0 else 0
        else:
            error_ratio = avg / (c.target_ongoing_requests * current)
            factor = c.upscale_factor() if error_ratio >= 1 else c.downscale_factor()
            want = math.ceil(current * (1 + (error_ratio - 1) * factor))
            if avg > 0:
                want = max(want, 1)
        return max(c.min_replicas, min(want, c.max_replicas))

    def decide(self, now: float, current: int) -> int:
        """The target replica count now: ``current`` unless a change has been wanted long enough."""
        c = self.config
        want = self.desired(current)
        if want > current:
            self._down_since = None
            if self._up_since is None:
                self._up_since = now
            if now - self._up_since >= c.upscale_delay_s:
                self._up_since = None
                return want
        elif want < current:
            self._up_since = None
            if self._down_since is None:
                self._down_since = now
            delay = c.downscale_delay_s
            if want == 0 and c.downscale_to_zero_delay_s is not None:
                delay = c.downscale_to_zero_delay_s
            if now - self._down_since >= delay:
                self._down_since = None
                return want
        else:
            self._up_since = self._down_since = None
        return current
