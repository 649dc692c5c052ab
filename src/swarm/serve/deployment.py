"""``@serve.deployment`` → ``Deployment``; ``Deployment.bind(...)`` → ``Application``.

A ``Deployment`` is a description (the class or function, how many replicas, their limits and
resources); nothing runs until an ``Application`` built from it is passed to ``serve.run``. An
``Application`` passed as an argument to another deployment's ``bind`` becomes a
``DeploymentHandle`` inside the replicas of that deployment (see ``_build.py``).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from swarm.serve.config import AutoscalingConfig, DeploymentConfig

ACTOR_OPTION_KEYS = {"num_cpus", "num_gpus", "memory", "resources", "accelerator_type", "runtime_env",
                     "object_store_memory"}
CONFIG_KEYS = {"num_replicas", "max_ongoing_requests", "max_queued_requests", "autoscaling_config",
               "user_config", "graceful_shutdown_wait_loop_s", "graceful_shutdown_timeout_s",
               "health_check_period_s", "health_check_timeout_s"}
# Accepted so Ray programs run, without effect on a single-node cluster (or not implemented yet).
IGNORED_KEYS = {"placement_group_bundles", "placement_group_strategy", "max_replicas_per_node",
                "logging_config", "request_router_config", "_internal"}
OPTION_KEYS = CONFIG_KEYS | IGNORED_KEYS | {"name", "version", "route_prefix", "ray_actor_options",
                                            "max_concurrent_queries"}


class Deployment:
    """A class or function to be served by replicas; see ``serve.deployment``."""

    def __init__(self, func_or_class: Callable, options: dict) -> None:
        unknown = sorted(set(options) - OPTION_KEYS)
        if unknown:
            raise TypeError(f"unknown deployment options {unknown}; the known options are "
                            f"{sorted(OPTION_KEYS - IGNORED_KEYS)}")
        if not (inspect.isclass(func_or_class) or inspect.isfunction(func_or_class)):
            raise TypeError(f"@serve.deployment goes on a class or a function, not on a "
                            f"{type(func_or_class).__name__}")
        self._func_or_class = func_or_class
        self._options = dict(options)
        if "max_concurrent_queries" in self._options:  # Ray's name before 2.32
            self._options.setdefault("max_ongoing_requests", self._options.pop("max_concurrent_queries"))
        self._config = self._make_config()
        self._actor_options = self._make_actor_options()
        route_prefix = self._options.get("route_prefix")
        if route_prefix is not None:
            _check_route_prefix(route_prefix)

    def _make_config(self) -> DeploymentConfig:
        opts = {k: v for k, v in self._options.items() if k in CONFIG_KEYS}
        num_replicas = opts.get("num_replicas")
        autoscaling = opts.get("autoscaling_config")
        if num_replicas == "auto":
            base = AutoscalingConfig.default_auto()
            if autoscaling is not None:
                user = autoscaling if isinstance(autoscaling, dict) else vars(autoscaling)
                base = AutoscalingConfig.from_user({**vars(base), **user})
            opts["autoscaling_config"] = base
            opts.pop("num_replicas")
        elif autoscaling is not None:
            if num_replicas is not None:
                raise ValueError(f"deployment {self.name!r}: pass either num_replicas or autoscaling_config, "
                                 f"not both (num_replicas='auto' combines with autoscaling_config)")
            opts["autoscaling_config"] = AutoscalingConfig.from_user(autoscaling)
        elif num_replicas is None:
            opts.pop("num_replicas", None)
        return DeploymentConfig(**opts)

    def _make_actor_options(self) -> dict:
        opts = self._options.get("ray_actor_options") or {}
        if not isinstance(opts, dict):
            raise TypeError(f"ray_actor_options must be a dict, got {type(opts).__name__}")
        unknown = sorted(set(opts) - ACTOR_OPTION_KEYS)
        if unknown:
            raise ValueError(f"deployment {self.name!r}: ray_actor_options keys {unknown} are not "
                             f"allowed; the allowed keys are {sorted(ACTOR_OPTION_KEYS)}")
        return {"num_cpus": 1, **opts}  # as in Ray, a replica reserves one CPU unless told otherwise

    # -- Ray's attributes ---------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._options.get("name") or self._func_or_class.__name__

    @property
    def func_or_class(self) -> Callable:
        return self._func_or_class

    @property
    def version(self) -> str | None:
        return self._options.get("version")

    @property
    def num_replicas(self) -> int:
        return self._config.num_replicas

    @property
    def max_ongoing_requests(self) -> int:
        return self._config.max_ongoing_requests

    @property
    def max_queued_requests(self) -> int:
        return self._config.max_queued_requests

    @property
    def user_config(self) -> Any:
        return self._config.user_config

    @property
    def autoscaling_config(self) -> AutoscalingConfig | None:
        return self._config.autoscaling_config

    @property
    def ray_actor_options(self) -> dict:
        return dict(self._actor_options)

    @property
    def route_prefix(self) -> str | None:
        return self._options.get("route_prefix")

    @property
    def config(self) -> DeploymentConfig:
        return self._config

    def options(self, func_or_class: Callable | None = None, **options: Any) -> Deployment:
        """A copy with some options changed (the rest kept)."""
        merged = {**self._options, **options}
        if "num_replicas" in options and "autoscaling_config" not in options and \
                options["num_replicas"] not in (None, "auto"):
            merged.pop("autoscaling_config", None)
        if "autoscaling_config" in options and "num_replicas" not in options and \
                merged.get("num_replicas") != "auto":
            merged.pop("num_replicas", None)
        return Deployment(func_or_class or self._func_or_class, merged)

    def bind(self, *args: Any, **kwargs: Any) -> Application:
        """An ``Application``: this deployment with its constructor (or function) arguments."""
        return Application(self, args, kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"Deployments cannot be constructed directly: use {self.name}.bind(...) and pass "
                           f"the result to serve.run(...)")

    def __repr__(self) -> str:
        return f"Deployment(name={self.name})"


class Application:
    """A bound deployment: the argument of ``serve.run`` (and of other deployments' ``bind``)."""

    def __init__(self, deployment: Deployment, args: tuple, kwargs: dict) -> None:
        self._deployment = deployment
        self._args = args
        self._kwargs = kwargs

    @property
    def deployment(self) -> Deployment:
        return self._deployment

    def __repr__(self) -> str:
        return f"Application({self._deployment.name})"


def deployment(_func_or_class: Callable | None = None, *, name: str | None = None, version: str | None = None,
               num_replicas: int | str | None = None, route_prefix: str | None = None,
               ray_actor_options: dict | None = None, user_config: Any = None,
               max_ongoing_requests: int | None = None, max_queued_requests: int | None = None,
               autoscaling_config: dict | AutoscalingConfig | None = None,
               graceful_shutdown_wait_loop_s: float | None = None,
               graceful_shutdown_timeout_s: float | None = None, health_check_period_s: float | None = None,
               health_check_timeout_s: float | None = None, **other: Any) -> Any:
    """``@serve.deployment`` or ``@serve.deployment(num_replicas=2, ...)`` on a class or function."""
    given = {k: v for k, v in dict(
        name=name, version=version, num_replicas=num_replicas, route_prefix=route_prefix,
        ray_actor_options=ray_actor_options, user_config=user_config,
        max_ongoing_requests=max_ongoing_requests, max_queued_requests=max_queued_requests,
        autoscaling_config=autoscaling_config,
        graceful_shutdown_wait_loop_s=graceful_shutdown_wait_loop_s,
        graceful_shutdown_timeout_s=graceful_shutdown_timeout_s, health_check_period_s=health_check_period_s,
        health_check_timeout_s=health_check_timeout_s, **other).items() if v is not None}

    def decorate(target: Callable) -> Deployment:
        return Deployment(target, given)

    if _func_or_class is not None:
        return decorate(_func_or_class)
    return decorate


def _check_route_prefix(route_prefix: str) -> None:
    if not isinstance(route_prefix, str) or not route_prefix.startswith("/") or \
            (route_prefix != "/" and route_prefix.endswith("/")) or "{" in route_prefix:
        raise ValueError(f"route_prefix must start with '/', must not end with '/' (unless it is '/') and "
                         f"must not hold wildcards, got {route_prefix!r}")
