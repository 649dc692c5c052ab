"""Actors: ``@remote`` on a class gives an ``ActorClass``; ``.remote()`` starts one and returns an
``ActorHandle`` whose methods return ObjectRefs.

An actor is a dedicated worker process holding one instance. Calls go from the caller straight to
that process (``core/actor_submitter.py``) and run there in the order each caller made them
(``core/worker_main.py``). A handle is counted like an ObjectRef: when no handle is left anywhere
(and the actor is not detached) the actor exits.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable

from swarm import _runtime_env
from swarm.remote_function import _api, _merge, placement_shape, resource_shape, validate_options

ACTOR_OPTIONS = {"num_cpus", "num_gpus", "resources", "max_concurrency", "name", "namespace", "lifetime",
                 "get_if_exists", "max_restarts", "max_task_retries", "max_pending_calls", "memory",
                 "runtime_env", "scheduling_strategy", "concurrency_groups", "_metadata", "label_selector",
                 "placement_group", "placement_group_bundle_index", "placement_group_capture_child_tasks",
                 "enable_task_events", "accelerator_type"}
METHOD_OPTIONS = {"num_returns", "name", "max_task_retries", "retry_exceptions", "concurrency_group",
                  "enable_task_events"}
ASYNC_DEFAULT_CONCURRENCY = 1000


class ActorExit(SystemExit):
    """Raised by ``exit_actor()``: the actor finishes the current call and exits."""


def exit_actor() -> None:
    """Called inside an actor method: terminate this actor once the current call returns."""
    from swarm.core import core_worker
    w = core_worker.current()
    if w is None or getattr(w, "current_actor_id", None) is None:
        raise TypeError("exit_actor() can only be called inside an actor method")
    raise ActorExit(0)


def method(*args: Any, **kwargs: Any) -> Callable:
    """``@swarm.method(num_returns=2)`` on an actor method sets its default options."""
    if args and callable(args[0]) and len(args) == 1 and not kwargs:
        return args[0]
    validate_options(kwargs, METHOD_OPTIONS, "@swarm.method")

    def decorate(fn: Callable) -> Callable:
        fn.__swarm_method_options__ = kwargs  # type: ignore[attr-defined]
        return fn
    return decorate


def _method_table(cls: type) -> dict[str, dict]:
    import inspect
    table = {}
    for name, member in inspect.getmembers(cls):
        if not callable(member) or (name.startswith("__") and name not in ("__call__",)):
            continue
        fn = getattr(member, "__func__", member)
        opts = dict(getattr(fn, "__swarm_method_options__", {}))
        opts.setdefault("num_returns", 1)
        opts["is_async"] = inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)
        table[name] = opts
    return table


class ActorClass:
    def __init__(self, cls: type, options: dict) -> None:
        validate_options(options, ACTOR_OPTIONS, f"actor class {cls.__qualname__}")
        _check_lifetime(options)
        self._cls = cls
        self._name = cls.__name__
        self._options = options
        self._methods = _method_table(cls)
        self._entry: Any = None
        self._entry_session: Any = None
        self.__doc__ = cls.__doc__
        self.__name__ = cls.__name__
        self.__qualname__ = cls.__qualname__
        self.__module__ = cls.__module__

    def __reduce__(self) -> Any:
        return (ActorClass, (self._cls, self._options))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"Actor classes cannot be instantiated directly: use {self._name}.remote(...) to "
                        f"start an actor (it returns a handle whose methods you call with .remote())")

    def options(self, **options: Any) -> _ActorClassOptions:
        validate_options(options, ACTOR_OPTIONS, f"actor class {self._name}")
        _check_lifetime(options)
        return _ActorClassOptions(self, _merge(self._options, options))

    def remote(self, *args: Any, **kwargs: Any) -> ActorHandle:
        return self._create(args, kwargs, self._options)

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("DAG building with .bind() is not supported yet; use .remote()")

    def _class_entry(self, worker: Any) -> Any:
        from swarm.core import serialization
        from swarm.core.submitter import FunctionEntry
        if self._entry_session is not worker:
            blob = serialization.dumps_function(self._cls, self._name)
            self._entry = FunctionEntry(hashlib.blake2b(blob, digest_size=16).digest(), blob, self._name)
            self._entry_session = worker
        return self._entry

    def _create(self, args: tuple, kwargs: dict, opts: dict) -> ActorHandle:
        api = _api()
        worker = api._worker or api._auto_init()
        if worker.mode == "local":
            raise NotImplementedError("actors are not supported with local_mode=True yet")
        is_async = any(m["is_async"] for m in self._methods.values())
        max_conc = opts.get("max_concurrency") or (ASYNC_DEFAULT_CONCURRENCY if is_async else 1)
        if not isinstance(max_conc, int) or max_conc < 1:
            raise ValueError(f"max_concurrency must be a positive int, got {max_conc!r}")
        shape = resource_shape(opts) if opts.get("num_cpus") is not None else \
            resource_shape({**opts, "num_cpus": 0})
        opts = dict(opts)
        shape = placement_shape(shape, opts)
        info = {"class_name": self._name, "methods": self._methods, "name": opts.get("name"),
                "namespace": opts.get("namespace") or getattr(worker, "namespace", "default"),
                "detached": opts.get("lifetime") == "detached", "max_concurrency": max_conc,
                "is_async": is_async, "shape": shape,
                "max_restarts": opts.get("max_restarts", 0),
                "max_task_retries": opts.get("max_task_retries", 0),
                "strategy": _strategy(opts.get("scheduling_strategy"))}
        from swarm.core import actor_submitter
        entry = None
        if _runtime_env.current is not None or opts.get("runtime_env") is not None:
            entry = _runtime_env.actor_entry(self, opts.get("runtime_env"))
        return actor_submitter.create_actor(worker, entry or self._class_entry(worker), args, kwargs, info,
                                            bool(opts.get("get_if_exists")))


class _ActorClassOptions:
    def __init__(self, ac: ActorClass, options: dict) -> None:
        self._ac = ac
        self._options = options

    def remote(self, *args: Any, **kwargs: Any) -> ActorHandle:
        return self._ac._create(args, kwargs, self._options)

    def options(self, **options: Any) -> _ActorClassOptions:
        validate_options(options, ACTOR_OPTIONS, f"actor class {self._ac._name}")
        return _ActorClassOptions(self._ac, _merge(self._options, options))


def _strategy(strategy: Any) -> dict | None:
    if strategy is None:
        return None
    from swarm.util.scheduling_strategies import to_wire
    return to_wire(strategy)


def _check_lifetime(options: dict) -> None:
    lifetime = options.get("lifetime")
    if lifetime not in (None, "detached", "non_detached"):
        raise ValueError(f"lifetime must be None or 'detached', got {lifetime!r}")


class ActorHandle:
    """A reference to an actor; pass it anywhere, call its methods with ``.method.remote()``."""

    def __init__(self, actor_id: bytes, info: dict, owner_address: str, worker: Any,
                 counted: bool = False) -> None:
        self._id = actor_id
        self._info = info
        self._owner = owner_address
        self._worker = worker
        if worker is not None and not counted:
            worker.add_local_ref(actor_id, owner_address)

    @property
    def _actor_id(self) -> bytes:
        return self._id

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        methods = self._info["methods"]
        if name in methods:
            return ActorMethod(self, name, methods[name])
        cls = self._info["class_name"]
        raise AttributeError(
            f"'{cls}' actor handle has no method '{name}'. An actor's state lives in its own process: "
            f"read it through a method, e.g. `def get_{name}(self): return self.{name}` in class {cls}, "
            f"then `swarm.get(handle.get_{name}.remote())`")

    def __repr__(self) -> str:
        return f"Actor({self._info['class_name']}, {self._id.hex()})"

    def __hash__(self) -> int:
        return hash(self._id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorHandle) and other._id == self._id

    def __del__(self) -> None:
        w = self._worker
        if w is not None:
            try:
                w.remove_local_ref(self._id)
            except Exception:
                pass

    def __reduce__(self) -> Any:
        from swarm.core import serialization
        serialization.record_contained_ref(self)
        return (_rebuild_handle, (self._id, self._info, self._owner))


def _rebuild_handle(actor_id: bytes, info: dict, owner_address: str) -> ActorHandle:
    from swarm.core import core_worker
    return ActorHandle(actor_id, info, owner_address, core_worker.current())


class ActorMethod:
    def __init__(self, handle: ActorHandle, name: str, options: dict) -> None:
        self._handle = handle
        self._name = name
        self._options = options

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        from swarm.core import actor_submitter
        h = self._handle
        n = self._options.get("num_returns", 1)
        refs = actor_submitter.submit_call(h._worker, h, self._name, args, kwargs, n)
        return refs[0] if n == 1 else refs

    def options(self, **options: Any) -> ActorMethod:
        validate_options(options, METHOD_OPTIONS, f"actor method {self._name}")
        return ActorMethod(self._handle, self._name, {**self._options, **options})

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"Actor methods cannot be called directly: use handle.{self._name}.remote(...)")
