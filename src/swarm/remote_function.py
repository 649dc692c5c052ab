"""``@remote`` on a function: a ``RemoteFunction`` whose ``.remote()`` submits a task."""

from __future__ import annotations

import hashlib
from typing import Any, Callable

from swarm import _runtime_env
from swarm.core import core_worker, serialization
from swarm.core.submitter import FunctionEntry

_api_module: Any = None


def _api() -> Any:
    global _api_module
    if _api_module is None:
        from swarm import api
        _api_module = api
    return _api_module


TASK_OPTIONS = {"num_cpus", "num_gpus", "resources", "num_returns", "max_retries", "retry_exceptions",
                "scheduling_strategy", "name", "memory", "runtime_env", "max_calls", "accelerator_type",
                "_metadata", "label_selector", "enable_task_events", "placement_group",
                "placement_group_bundle_index", "placement_group_capture_child_tasks"}
TASK_DEFAULTS = {"num_cpus": 1, "num_gpus": 0, "num_returns": 1, "max_retries": 3,
                 "retry_exceptions": False}


def validate_options(opts: dict, allowed: set, what: str) -> None:
    unknown = sorted(set(opts) - allowed)
    if unknown:
        raise ValueError(f"invalid option(s) for {what}: {', '.join(unknown)}; valid options are "
                         f"{', '.join(sorted(allowed))}")
    for key in ("num_cpus", "num_gpus", "memory"):
        v = opts.get(key)
        if v is not None and (not isinstance(v, (int, float)) or v < 0):
            raise ValueError(f"{key} must be a non-negative number, got {v!r}")
    res = opts.get("resources")
    if res is not None:
        if not isinstance(res, dict) or not all(isinstance(v, (int, float)) and v >= 0 for v in res.values()):
            raise ValueError(f"resources must be a dict of non-negative numbers, got {res!r}")
        for k in ("CPU", "GPU"):
            if k in res:
                raise ValueError(f"use num_{k.lower()}= instead of resources={{'{k}': ...}}")
    n = opts.get("num_returns")
    if n is not None and (not isinstance(n, int) or n < 0):
        raise ValueError(f"num_returns must be a non-negative int, got {n!r}")
    if opts.get("runtime_env") is not None:
        _runtime_env.validate(opts["runtime_env"])


def resource_shape(opts: dict) -> dict:
    shape = {}
    if opts.get("num_cpus"):
        shape["CPU"] = float(opts["num_cpus"])
    if opts.get("num_gpus"):
        shape["GPU"] = float(opts["num_gpus"])
    for k, v in (opts.get("resources") or {}).items():
        if v:
            shape[k] = float(v)
    return shape


def placement_shape(shape: dict, opts: dict) -> dict:
    """Route into a placement group's bundles when the options name one."""
    strategy = opts.get("scheduling_strategy")
    pg = opts.get("placement_group")
    index = opts.get("placement_group_bundle_index", -1)
    if strategy is not None and type(strategy).__name__ == "PlacementGroupSchedulingStrategy":
        pg, index = strategy.placement_group, strategy.placement_group_bundle_index
        opts["scheduling_strategy"] = None
    if pg is None or pg == "default":
        return shape
    from swarm.util.placement_group import bundle_shape
    return bundle_shape(shape, pg, index)


class RemoteFunction:
    def __init__(self, fn: Callable, options: dict) -> None:
        validate_options(options, TASK_OPTIONS, f"remote function {fn.__qualname__}")
        self._function = fn
        self._name = fn.__qualname__ if "<locals>" not in fn.__qualname__ else fn.__name__
        self._options = {**TASK_DEFAULTS, **options}
        self._entry: Any = None
        self._entry_session: Any = None
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__
        self.__qualname__ = fn.__qualname__
        self.__module__ = fn.__module__
        self.__wrapped__ = fn

    def __reduce__(self) -> Any:
        # a remote function captured by a task's code travels without this process's caches
        opts = {k: v for k, v in self._options.items() if k != "_shape" and TASK_DEFAULTS.get(k, k) != v}
        return (RemoteFunction, (self._function, opts))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"Remote functions cannot be called directly: call {self._name}.remote(...) to run "
                        f"it as a task (it returns an ObjectRef; swarm.get() it for the value), or call the "
                        f"plain function via {self._name}.__wrapped__(...)")

    def options(self, **options: Any) -> _BoundOptions:
        validate_options(options, TASK_OPTIONS, f"remote function {self._name}")
        return _BoundOptions(self, _merge(self._options, options))

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        return self._submit(args, kwargs, self._options)

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("DAG building with .bind() is not supported yet; use .remote()")

    def _submit(self, args: tuple, kwargs: dict, opts: dict) -> Any:
        api = _api()
        worker = api._worker or api._auto_init()
        n = opts["num_returns"]
        name = opts.get("name") or self._name
        if worker.mode == "local":
            refs = worker.run_task(self._function, name, args, kwargs, n)
        else:
            entry = None
            if _runtime_env.current is not None or opts.get("runtime_env") is not None:
                entry = _runtime_env.task_entry(self, worker, name, opts.get("runtime_env"))
            if entry is None:
                if self._entry_session is not worker or self._entry.name != name:
                    blob = serialization.dumps_function(self._function, self._name)
                    fn_id = hashlib.blake2b(blob, digest_size=16).digest()
                    self._entry = FunctionEntry(fn_id, blob, name)
                    self._entry_session = worker
                entry = self._entry
            shape = opts.get("_shape")
            if shape is None:
                shape = opts["_shape"] = placement_shape(resource_shape(opts), opts)
            retry = opts.get("retry_exceptions") or False
            if isinstance(retry, (list, tuple)):
                retry = list(retry)
            strategy = opts.get("scheduling_strategy")
            if strategy is not None:
                from swarm.util.scheduling_strategies import to_wire
                strategy = to_wire(strategy)
            refs = core_worker.submit_task(worker, entry, args, kwargs, n, shape,
                                           opts.get("max_retries", 3), retry, strategy)
        if n == 1:
            return refs[0]
        return refs


class _BoundOptions:
    def __init__(self, rf: RemoteFunction, options: dict) -> None:
        self._rf = rf
        self._options = options

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        return self._rf._submit(args, kwargs, self._options)

    def options(self, **options: Any) -> _BoundOptions:
        validate_options(options, TASK_OPTIONS, f"remote function {self._rf._name}")
        return _BoundOptions(self._rf, _merge(self._options, options))


def _merge(base: dict, options: dict) -> dict:
    merged = {**base, **options}
    merged.pop("_shape", None)  # derived from the resource options: recomputed on first submit
    return merged


def make_remote(target: Any, options: dict) -> Any:
    if isinstance(target, type):
        from swarm.actor import ActorClass
        return ActorClass(target, options)
    if callable(target):
        return RemoteFunction(target, options)
    raise TypeError(f"@remote applies to a function or a class, not {type(target).__name__}")
