"""Plain configuration records with Ray Serve's names and defaults: ``AutoscalingConfig``,
``HTTPOptions``, ``ProxyLocation`` and the per-deployment ``DeploymentConfig``.

Every record validates itself on construction, so a bad value fails in the driver, at
``@serve.deployment(...)`` or ``serve.start(...)``, with a message naming the option.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Any

DEFAULT_MAX_ONGOING_REQUESTS = 5
DEFAULT_HTTP_HOST = "127.0.0.1"
DEFAULT_HTTP_PORT = 8000


class ProxyLocation(str, enum.Enum):
    """Where HTTP proxies run; swarm runs one cluster node, so ``EveryNode`` equals ``HeadOnly``."""

    Disabled = "Disabled"
    HeadOnly = "HeadOnly"
    EveryNode = "EveryNode"


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


@dataclasses.dataclass
class AutoscalingConfig:
    """When to add and remove replicas; keys as in Ray Serve's ``autoscaling_config``.

    The controller averages (ongoing requests at replicas + requests queued at handles) over
    ``look_back_period_s`` and aims at ``target_ongoing_requests`` per replica; a change of the replica
    count must be wanted for ``upscale_delay_s`` (``downscale_delay_s``) before it is made.
    """

    min_replicas: int = 1
    max_replicas: int = 1
    initial_replicas: int | None = None
    target_ongoing_requests: float = 2.0
    metrics_interval_s: float = 10.0
    look_back_period_s: float = 30.0
    smoothing_factor: float = 1.0
    upscale_smoothing_factor: float | None = None
    downscale_smoothing_factor: float | None = None
    upscaling_factor: float | None = None
    downscaling_factor: float | None = None
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 600.0
    downscale_to_zero_delay_s: float | None = None

    def __post_init__(self) -> None:
        _check(isinstance(self.min_replicas, int) and self.min_replicas >= 0,
               f"autoscaling_config min_replicas must be an int >= 0, got {self.min_replicas!r}")
        _check(isinstance(self.max_replicas, int) and self.max_replicas >= max(1, self.min_replicas),
               f"autoscaling_config max_replicas ({self.max_replicas!r}) must be an int >= 1 and >= "
               f"min_replicas ({self.min_replicas})")
        if self.initial_replicas is not None:
            _check(self.min_replicas <= self.initial_replicas <= self.max_replicas,
                   f"autoscaling_config initial_replicas ({self.initial_replicas}) must lie between "
                   f"min_replicas ({self.min_replicas}) and max_replicas ({self.max_replicas})")
        _check(self.target_ongoing_requests > 0, "autoscaling_config target_ongoing_requests must be > 0, "
               f"got {self.target_ongoing_requests!r}")
        for name in ("metrics_interval_s", "look_back_period_s", "upscale_delay_s", "downscale_delay_s"):
            _check(getattr(self, name) >= 0, f"autoscaling_config {name} must be >= 0, "
                   f"got {getattr(self, name)!r}")
        for name in ("smoothing_factor", "upscale_smoothing_factor", "downscale_smoothing_factor",
                     "upscaling_factor", "downscaling_factor"):
            value = getattr(self, name)
            _check(value is None or value > 0, f"autoscaling_config {name} must be > 0, got {value!r}")

    @classmethod
    def from_user(cls, value: Any) -> AutoscalingConfig:
        if isinstance(value, AutoscalingConfig):
            return dataclasses.replace(value)
        if not isinstance(value, dict):
            raise TypeError(f"autoscaling_config must be a dict or an AutoscalingConfig, got "
                            f"{type(value).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        # Ray's pre-2.32 name for the target, still found in many programs.
        value = dict(value)
        if "target_num_ongoing_requests_per_replica" in value:
            value.setdefault("target_ongoing_requests", value.pop("target_num_ongoing_requests_per_replica"))
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown autoscaling_config keys {unknown}; the known keys are {sorted(known)}")
        return cls(**value)

    @classmethod
    def default_auto(cls) -> AutoscalingConfig:
        """What ``num_replicas="auto"`` means (as in Ray)."""
        return cls(min_replicas=1, max_replicas=100, target_ongoing_requests=2.0, upscale_delay_s=30.0,
                   downscale_delay_s=600.0)

    def initial_target(self) -> int:
        return self.initial_replicas if self.initial_replicas is not None else self.min_replicas

    def upscale_factor(self) -> float:
        return self.upscaling_factor or self.upscale_smoothing_factor or self.smoothing_factor

    def downscale_factor(self) -> float:
        return self.downscaling_factor or self.downscale_smoothing_factor or self.smoothing_factor


@dataclasses.dataclass
class HTTPOptions:
    """``serve.start(http_options=...)``: where the HTTP proxy listens (loopback unless told)."""

    host: str = DEFAULT_HTTP_HOST
    port: int = DEFAULT_HTTP_PORT
    root_path: str = ""
    request_timeout_s: float | None = None
    keep_alive_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        _check(isinstance(self.port, int) and 0 <= self.port < 65536,
               f"http_options port must be an int in [0, 65535], got {self.port!r}")
        _check(self.request_timeout_s is None or self.request_timeout_s > 0,
               f"http_options request_timeout_s must be > 0 or None, got {self.request_timeout_s!r}")

    @classmethod
    def from_user(cls, value: Any) -> HTTPOptions:
        if value is None:
            return cls()
        if isinstance(value, HTTPOptions):
            return dataclasses.replace(value)
        if not isinstance(value, dict):
            raise TypeError(f"http_options must be a dict or an HTTPOptions, got {type(value).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        ignored = {"location", "middlewares", "ssl_keyfile", "ssl_certfile"}  # accepted, not used
        unknown = sorted(set(value) - known - ignored)
        if unknown:
            raise ValueError(f"unknown http_options keys {unknown}; the known keys are {sorted(known)}")
        return cls(**{k: v for k, v in value.items() if k in known})


@dataclasses.dataclass
class DeploymentConfig:
    """The options of one deployment that can change without restarting its replicas (except
    ``max_ongoing_requests``, which live replicas pick up through ``reconfigure``)."""

    num_replicas: int = 1
    max_ongoing_requests: int = DEFAULT_MAX_ONGOING_REQUESTS
    max_queued_requests: int = -1
    autoscaling_config: AutoscalingConfig | None = None
    user_config: Any = None
    graceful_shutdown_wait_loop_s: float = 2.0
    graceful_shutdown_timeout_s: float = 20.0
    health_check_period_s: float = 10.0
    health_check_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        _check(isinstance(self.num_replicas, int) and self.num_replicas >= 0,
               f"num_replicas must be an int >= 0 or 'auto', got {self.num_replicas!r}")
        _check(isinstance(self.max_ongoing_requests, int) and self.max_ongoing_requests >= 1,
               f"max_ongoing_requests must be an int >= 1, got {self.max_ongoing_requests!r}")
        _check(isinstance(self.max_queued_requests, int) and
               (self.max_queued_requests == -1 or self.max_queued_requests >= 1),
               f"max_queued_requests must be -1 (no limit) or an int >= 1, got {self.max_queued_requests!r}")
        for name in ("graceful_shutdown_wait_loop_s", "graceful_shutdown_timeout_s", "health_check_period_s",
                     "health_check_timeout_s"):
            value = getattr(self, name)
            _check(isinstance(value, (int, float)) and value >= 0 and math.isfinite(value),
                   f"{name} must be a finite number >= 0, got {value!r}")

    def initial_target(self) -> int:
        if self.autoscaling_config is not None:
            return self.autoscaling_config.initial_target()
        return self.num_replicas
