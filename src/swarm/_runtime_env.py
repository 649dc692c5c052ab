"""``runtime_env``: the environment a job's driver, tasks and actors run in: ``env_vars``,
``working_dir`` and ``py_modules`` (local code shipped to every node).

    driver (or JobSubmissionClient)                          a worker on any node
    ┌──────────────────────────────────────┐                 ┌──────────────────────────────────────┐
    │ validate → zip local dirs → KV       │ pkg_<sha>.zip   │ first use: fetch the package by hash, │
    │ ("runtime_env" namespace) → a spec   │ ──────────────▶ │ unpack under <session>/runtime_       │
    │ with kv:// names (PreparedEnv)       │                 │ resources/ (cached on the node)       │
    │ task: function wrapped together with │ PUSH_TASK       │ activate: sys.path, cwd, env vars;    │
    │ its spec (RuntimeEnvFunction)        │ ──────────────▶ │ unpickle the function, run, restore   │
    │ actor: class loaded via              │ CREATE_ACTOR    │ activate for good (the process is the │
    │ _load_actor_class(spec, class blob)  │ ──────────────▶ │ actor's), then load the class         │
    └──────────────────────────────────────┘                 └──────────────────────────────────────┘

The environment travels inside the function entry, not in each task message: a function is pickled
once per (function, environment) and cached by id on workers, so tasks without a runtime_env pay
nothing and tasks with one pay only the activation (a few dict and path operations).

The job-level environment comes from ``SWARM_RUNTIME_ENV`` (set by the job manager) or
``init(runtime_env=...)``; it is ``current`` in the driver and, while a task runs, in its worker, so
tasks submitted from tasks and actors inherit it. Options given to ``@remote``/``.options()`` override
its fields; ``env_vars`` are merged (as Ray does).

Workers are shared by every job of the cluster, and Python caches imported modules in
``sys.modules``: a module imported from job A's working_dir would otherwise be what job B gets when it
imports the same name from its own. So when a worker switches to a different set of packages, every
module loaded from another package directory is dropped from ``sys.modules`` first (re-imported on
next use). Within one job the cache is kept, so imports stay cheap. A task *without* a runtime_env
does not look at this at all (its hot path is untouched), so it can still see a module cached by a
previous job's task if it imports the very same name.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import pickle
import sys
from typing import Any

from swarm import _packaging
from swarm.exceptions import RuntimeEnvSetupError

SUPPORTED_FIELDS = ("env_vars", "working_dir", "py_modules", "excludes", "config")


class PreparedEnv:
    """A runtime_env in wire form: only plain JSON, local paths replaced by ``kv://`` package names."""

    __slots__ = ("spec", "key")

    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.key = json.dumps(spec, sort_keys=True)


#: the job-level environment of this process (driver), or the one of the task running here (worker)
current: PreparedEnv | None = None
_effective: dict[tuple[str, str], PreparedEnv | None] = {}


# -- validation and preparation (driver side) -------------------------------------------------------
def validate(env: Any) -> dict:
    """``env`` checked for shape and support; raises TypeError/ValueError saying what to change."""
    if env is None:
        return {}
    if not isinstance(env, dict):
        raise TypeError(f"runtime_env must be a dict, e.g. {{'env_vars': {{'KEY': 'value'}}, 'working_dir': "
                        f"'.'}}; got {type(env).__name__}")
    unknown = sorted(set(env) - set(SUPPORTED_FIELDS))
    if unknown:
        raise ValueError(f"runtime_env field(s) {', '.join(map(repr, unknown))} are not supported: swarm "
                         f"supports env_vars, working_dir, py_modules and excludes. Install packages on "
                         f"every node instead of pip/conda/uv, and ship your own code with working_dir or "
                         f"py_modules")
    env_vars = env.get("env_vars")
    if env_vars is not None:
        if not isinstance(env_vars, dict):
            raise TypeError(f"runtime_env['env_vars'] must be a dict of str to str, got "
                            f"{type(env_vars).__name__}")
        for k, v in env_vars.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError(f"runtime_env['env_vars'] must map str to str, but {k!r} maps to {v!r} "
                                f"({type(v).__name__}): pass str(value)")
    wd = env.get("working_dir")
    if wd is not None and not isinstance(wd, (str, os.PathLike)):
        raise TypeError(f"runtime_env['working_dir'] must be a local directory path, got {type(wd).__name__}")
    mods = env.get("py_modules")
    if mods is not None:
        if not isinstance(mods, (list, tuple)):
            raise TypeError("runtime_env['py_modules'] must be a list of local package directories or "
                            "imported modules")
        for m in mods:
            if not isinstance(m, (str, os.PathLike)) and type(m).__name__ != "module":
                raise TypeError(f"runtime_env['py_modules'] entries must be paths or modules, got {m!r}")
    excludes = env.get("excludes")
    if excludes is not None and (not isinstance(excludes, (list, tuple))
                                 or not all(isinstance(p, str) for p in excludes)):
        raise TypeError("runtime_env['excludes'] must be a list of patterns, e.g. ['*.bin', 'data/']")
    return dict(env)


def _module_path(m: Any) -> str:
    path = getattr(m, "__file__", None)
    if path is None:
        raise ValueError(f"py_modules entry {m!r} has no file on disk: pass its directory instead")
    return os.path.dirname(path) if os.path.basename(path) == "__init__.py" else path


def prepare(env: Any, upload: Any) -> dict:
    """The wire spec of ``env``: local directories zipped and handed to ``upload(name, data)``."""
    env = validate(env)
    spec: dict[str, Any] = {}
    if env.get("env_vars"):
        spec["env_vars"] = dict(env["env_vars"])
    excludes = list(env.get("excludes") or ())
    wd = env.get("working_dir")
    if wd is not None:
        spec["working_dir"] = _to_uri(os.fspath(wd), excludes, upload, None, "working_dir")
    mods = env.get("py_modules")
    if mods:
        uris = []
        for m in mods:
            path = os.fspath(m) if isinstance(m, (str, os.PathLike)) else _module_path(m)
            top = None if _packaging.is_uri(path) else os.path.basename(os.path.abspath(path))
            uris.append(_to_uri(path, excludes, upload, top, "py_modules entry"))
        spec["py_modules"] = uris
    return spec


def _to_uri(path: str, excludes: list, upload: Any, top_level: str | None, what: str) -> str:
    if _packaging.is_uri(path):
        _packaging.package_name(path)
        return path
    path = os.path.abspath(os.path.expanduser(path))
    if what == "working_dir" and not os.path.isdir(path):
        raise ValueError(f"runtime_env working_dir {path!r} is not a directory: pass an existing local "
                         f"directory")
    name, data = _packaging.package(path, excludes=excludes, top_level=top_level, what=what)
    upload(name, data)
    return _packaging.URI_PREFIX + name


def merge(parent: dict, child: dict) -> dict:
    """``child`` over ``parent``: its fields replace the parent's, env_vars are merged."""
    out = dict(parent)
    for k, v in child.items():
        if k == "env_vars":
            out[k] = {**parent.get("env_vars", {}), **v}
        else:
            out[k] = v
    return out


def upload_to_kv(name: str, data: bytes) -> None:
    from swarm.experimental import internal_kv
    if not internal_kv.kv_exists(name, namespace=_packaging.KV_NAMESPACE):
        internal_kv.kv_put(name, data, namespace=_packaging.KV_NAMESPACE)


def init_job_env(runtime_env: Any = None) -> None:
    """At ``init()``: the job-level environment, from ``SWARM_RUNTIME_ENV`` and ``runtime_env=``."""
    global current
    _effective.clear()   # packages uploaded for a previous cluster are not in this one's KV
    raw = os.environ.get("SWARM_RUNTIME_ENV")
    spec: dict = {}
    if raw:
        try:
            spec = json.loads(raw)
        except ValueError:
            raise ValueError(f"SWARM_RUNTIME_ENV is not valid JSON: {raw[:200]!r}") from None
        validate(spec)
    if runtime_env:
        spec = merge(spec, prepare(runtime_env, upload_to_kv))
    current = PreparedEnv(spec) if spec else None


def effective(options_env: Any) -> PreparedEnv | None:
    """The environment a task or actor submitted here with ``runtime_env=options_env`` runs in."""
    cur = current
    if options_env is None:
        return cur
    raw = json.dumps(options_env, sort_keys=True, default=str)
    key = (cur.key if cur is not None else "", raw)
    if key not in _effective:
        spec = merge(cur.spec if cur is not None else {}, prepare(options_env, upload_to_kv))
        _effective[key] = PreparedEnv(spec) if spec else None
    return _effective[key]


def task_entry(rf: Any, worker: Any, name: str, options_env: Any) -> Any:
    """The FunctionEntry of remote function ``rf`` under its runtime_env (None: it has none)."""
    from swarm.core import serialization
    from swarm.core.submitter import FunctionEntry

    env = effective(options_env)
    if env is None:
        return None
    cache = rf.__dict__.setdefault("_env_entries", {})
    hit = cache.get((env.key, name))
    if hit is not None and hit[0] is worker:
        return hit[1]
    inner = serialization.dumps_function(rf._function, rf._name)
    blob = serialization.dumps_function(RuntimeEnvFunction(env.spec, inner), rf._name)
    entry = FunctionEntry(hashlib.blake2b(blob, digest_size=16).digest(), blob, name)
    cache[(env.key, name)] = (worker, entry)
    return entry


def actor_entry(ac: Any, options_env: Any) -> Any:
    """The FunctionEntry of actor class ``ac`` under its runtime_env (None: it has none)."""
    from swarm.core import serialization
    from swarm.core.submitter import FunctionEntry

    env = effective(options_env)
    if env is None:
        return None
    cache = ac.__dict__.setdefault("_env_entries", {})
    entry = cache.get(env.key)
    if entry is None:
        inner = serialization.dumps_function(ac._cls, ac._name)
        blob = serialization.dumps_function(_ActorClassWithEnv(env.spec, inner), ac._name)
        entry = cache[env.key] = FunctionEntry(hashlib.blake2b(blob, digest_size=16).digest(), blob,
                                               ac._name)
    return entry


# -- activation (worker side) -----------------------------------------------------------------------
_local_dirs: dict[str, str] = {}        # package uri -> its unpacked directory on this node
_active_dirs: frozenset[str] = frozenset()
_known_dirs: set[str] = set()


def resources_dir() -> str:
    """Where this node keeps unpacked packages: in its session directory (removed with it)."""
    from swarm._config import CONFIG
    from swarm.core import core_worker
    w = core_worker.current()
    session = (w.node_info.get("session_dir") if w is not None else None) or CONFIG.temp_dir
    return os.path.join(session, "runtime_resources")


def _fetch_kv(name: str) -> bytes | None:
    from swarm.experimental import internal_kv
    return internal_kv.kv_get(name, namespace=_packaging.KV_NAMESPACE)


def local_dir(uri: str) -> str:
    path = _local_dirs.get(uri)
    if path is None:
        path = _local_dirs[uri] = _packaging.ensure_local(uri, resources_dir(), _fetch_kv)
    return path


def _switch_packages(dirs: list[str]) -> None:
    """Drop modules imported from package directories other than ``dirs`` (see the module docstring)."""
    global _active_dirs
    active = frozenset(dirs)
    if active == _active_dirs:
        return
    _known_dirs.update(active)
    stale = tuple(d + os.sep for d in _known_dirs - active)
    if stale:
        for name, module in list(sys.modules.items()):
            where = getattr(module, "__file__", None)
            if where is None:
                path = getattr(module, "__path__", None)
                where = next(iter(path), None) if path is not None else None
            if where and (where + os.sep).startswith(stale):
                del sys.modules[name]
        importlib.invalidate_caches()
    _active_dirs = active


class _Saved:
    __slots__ = ("env_vars", "cwd", "paths", "previous")

    def __init__(self, env_vars: dict, cwd: str | None, paths: list, previous: PreparedEnv | None) -> None:
        self.env_vars = env_vars
        self.cwd = cwd
        self.paths = paths
        self.previous = previous


def activate(env: PreparedEnv) -> _Saved:
    """Set ``env`` up in this process (package dirs first on sys.path, cwd, env vars)."""
    global current
    spec = env.spec
    try:
        wd = local_dir(spec["working_dir"]) if spec.get("working_dir") else None
        dirs = ([wd] if wd else []) + [local_dir(u) for u in spec.get("py_modules") or ()]
    except Exception as e:
        raise RuntimeEnvSetupError(f"cannot set up the runtime_env {spec}: {e}") from e
    _switch_packages(dirs)
    added = [d for d in dirs if d not in sys.path]
    sys.path[:0] = added
    cwd = None
    if wd is not None:
        try:
            cwd = os.getcwd()
        except OSError:
            cwd = None
        os.chdir(wd)
    saved = {}
    for k, v in (spec.get("env_vars") or {}).items():
        saved[k] = os.environ.get(k)
        os.environ[k] = v
    saved_env, current = current, env
    return _Saved(saved, cwd, added, saved_env)


def deactivate(saved: _Saved) -> None:
    """Undo ``activate`` after a task (modules stay cached: see the module docstring)."""
    global current
    for k, v in saved.env_vars.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    if saved.cwd is not None:
        try:
            os.chdir(saved.cwd)
        except OSError:
            pass
    for d in saved.paths:
        try:
            sys.path.remove(d)
        except ValueError:
            pass
    current = saved.previous


class RuntimeEnvFunction:
    """A task's function shipped with its runtime_env. The function stays pickled until the environment
    is set up: unpickling it may import modules that only the working_dir provides."""

    __slots__ = ("env", "blob", "fn")

    def __init__(self, spec: dict, blob: bytes) -> None:
        self.env = PreparedEnv(spec)
        self.blob = blob
        self.fn: Any = None

    def __reduce__(self) -> Any:
        return (RuntimeEnvFunction, (self.env.spec, self.blob))

    def run(self, executor: Any, fn_name: str, task_id: bytes, args_blob: bytes, resolved: list | None,
            num_returns: int) -> list:
        """Execute one task in this environment (called by the worker's TaskExecutor)."""
        try:
            saved = activate(self.env)
        except Exception as e:
            return executor._error_reply(task_id, fn_name, e, num_returns)
        try:
            fn = self.fn
            if fn is None:
                try:
                    fn = self.fn = pickle.loads(self.blob)
                except Exception as e:
                    return executor._error_reply(task_id, fn_name, e, num_returns)
            return executor.invoke(fn, fn_name, task_id, args_blob, resolved, num_returns)
        finally:
            deactivate(saved)


class _ActorClassWithEnv:
    """Pickles as a call that sets the environment up (for good: the process is the actor's) and then
    loads the class, so the actor's constructor arguments are read inside the environment too."""

    __slots__ = ("spec", "blob")

    def __init__(self, spec: dict, blob: bytes) -> None:
        self.spec = spec
        self.blob = blob

    def __reduce__(self) -> Any:
        return (_load_actor_class, (self.spec, self.blob))


def _load_actor_class(spec: dict, blob: bytes) -> Any:
    activate(PreparedEnv(spec))
    return pickle.loads(blob)
