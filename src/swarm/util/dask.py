"""Dask on swarm: a Dask scheduler that runs every task of a graph as a swarm task.

    dask collection ──compute()──▶ swarm_dask_get(graph, keys)
        graph key ──▶ one swarm task; its dependencies are passed as ObjectRefs (top-level
                      arguments), so each task is dispatched when its inputs exist and every
                      intermediate result lives in the object store, not in the driver
        literal data ──▶ swarm.put;  aliases ──▶ the same ref, no task
        requested keys ──▶ one swarm.get at the end (or the refs, with ``swarm_persist=True``)

Use it per call (``x.compute(scheduler=swarm_dask_get)``), in a block
(``with dask.config.set(scheduler=swarm_dask_get): ...``) or for the whole program
(``enable_dask_on_swarm()``). Both graph forms are understood: the task-spec objects of current Dask
(``dask._task_spec.Task`` / ``GraphNode``) and the legacy tuple form (``(func, arg, ...)``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from swarm import api

_REMOTE: dict[str, Any] = {}


def _execute_node(node: Any, dep_keys: list, *dep_values: Any) -> Any:
    """Run one graph node (new-style ``GraphNode``) given its dependencies' values."""
    return node(dict(zip(dep_keys, dep_values, strict=True)))


def _execute_legacy(task: Any, dep_keys: list, *dep_values: Any) -> Any:
    """Run one legacy (tuple-form) task given its dependencies' values."""
    from dask.core import _execute_task  # type: ignore[attr-defined]
    return _execute_task(task, dict(zip(dep_keys, dep_values, strict=True)))


def _remote(name: str) -> Any:
    fn = _REMOTE.get(name)
    if fn is None:
        fn = _REMOTE[name] = api.remote(_execute_node if name == "node" else _execute_legacy)
    return fn


def _flatten_keys(keys: Any, out: list) -> list:
    if isinstance(keys, list):
        for k in keys:
            _flatten_keys(k, out)
    else:
        out.append(keys)
    return out


def _pack(keys: Any, values: dict) -> Any:
    if isinstance(keys, list):
        return [_pack(k, values) for k in keys]
    return values[keys]


def _toposort(wanted: list, deps_of: Any, graph: Mapping) -> list:
    """The keys ``wanted`` needs (culled), each after its dependencies; iterative (deep graphs)."""
    order: list = []
    state: dict = {}  # key -> 1 while on the stack, 2 when emitted
    for root in wanted:
        if root in state:
            continue
        if root not in graph:
            raise KeyError(f"key {root!r} is not in the dask graph")
        stack = [(root, iter(deps_of(root)))]
        state[root] = 1
        while stack:
            key, children = stack[-1]
            for child in children:
                if child not in graph:
                    continue  # a literal that merely looks like a key
                s = state.get(child)
                if s is None:
                    state[child] = 1
                    stack.append((child, iter(deps_of(child))))
                    break
                if s == 1:
                    raise RuntimeError(f"the dask graph has a cycle through key {child!r}")
            else:
                stack.pop()
                state[key] = 2
                order.append(key)
    return order


def _submit_graph(dsk: Mapping, wanted: list, remote_args: dict) -> dict:
    """Submit every task ``wanted`` needs; returns key -> ObjectRef."""
    refs: dict = {}
    try:
        from dask._task_spec import Alias, DataNode, GraphNode, convert_legacy_graph
    except ImportError:  # a Dask older than the task-spec graphs: tuples all the way
        return _submit_legacy(dsk, wanted, remote_args)
    graph = convert_legacy_graph(dsk)
    run = _remote("node")
    if remote_args:
        run = run.options(**remote_args)
    for key in _toposort(wanted, lambda k: graph[k].dependencies, graph):
        node = graph[key]
        if isinstance(node, Alias):
            target = node.target
            refs[key] = refs[target.key if hasattr(target, "key") else target]
        elif isinstance(node, DataNode):
            refs[key] = api.put(node.value)
        elif isinstance(node, GraphNode):
            dep_keys = list(node.dependencies)
            refs[key] = run.remote(node, dep_keys, *[refs[d] for d in dep_keys])
        else:  # not a graph node at all: a plain value
            refs[key] = api.put(node)
    return refs


def _submit_legacy(dsk: Mapping, wanted: list, remote_args: dict) -> dict:
    from dask.core import get_dependencies, istask
    refs: dict = {}
    run = _remote("legacy")
    if remote_args:
        run = run.options(**remote_args)
    deps: dict = {}
    for key in _toposort(wanted, lambda k: deps.setdefault(k, sorted(get_dependencies(dsk, k), key=str)),
                         dsk):
        task = dsk[key]
        dep_keys = deps[key]
        if istask(task) or dep_keys:
            refs[key] = run.remote(task, dep_keys, *[refs[d] for d in dep_keys])
        else:
            refs[key] = api.put(task)
    return refs


def swarm_dask_get(dsk: Mapping, keys: Any, **kwargs: Any) -> Any:
    """A Dask scheduler (the ``get`` function Dask calls): run the graph ``dsk`` as swarm tasks and
    return the values of ``keys`` (a key or nested lists of keys, answered in the same shape).

    Options: ``swarm_remote_args`` (alias ``ray_remote_args``) — ``.options()`` for every task, e.g.
    ``{"num_cpus": 2}``; ``swarm_persist=True`` (alias ``ray_persist``) — return ObjectRefs instead of
    values. Options of Dask's local schedulers (``num_workers``, ``pool``, ...) are accepted and
    ignored: the cluster decides the parallelism.
    """
    remote_args = kwargs.pop("swarm_remote_args", None) or kwargs.pop("ray_remote_args", None) or {}
    persist = bool(kwargs.pop("swarm_persist", False) or kwargs.pop("ray_persist", False))
    if hasattr(dsk, "__dask_graph__"):
        dsk = dsk.__dask_graph__()
    if not isinstance(dsk, dict):
        dsk = dict(dsk)
    if api._worker is None:
        api._auto_init()
    wanted = list(dict.fromkeys(_flatten_keys(keys, [])))
    refs = _submit_graph(dsk, wanted, remote_args)
    if persist:
        return _pack(keys, refs)
    values = api.get([refs[k] for k in wanted])
    return _pack(keys, dict(zip(wanted, values, strict=True)))


def enable_dask_on_swarm(shuffle: str = "tasks") -> Any:
    """Make swarm the scheduler of every Dask computation in this process (and use task-based
    shuffles, which run on the cluster, instead of local-disk ones). The return value also works as
    a context manager that restores the previous settings on exit."""
    import dask
    return dask.config.set({"scheduler": swarm_dask_get, "dataframe.shuffle.method": shuffle})


def disable_dask_on_swarm() -> Any:
    """Give Dask back its default scheduler."""
    import dask
    return dask.config.set({"scheduler": None, "dataframe.shuffle.method": None})


# Ray's names, so code written for Dask-on-Ray keeps working after `import swarm as ray`.
ray_dask_get = swarm_dask_get
enable_dask_on_ray = enable_dask_on_swarm
disable_dask_on_ray = disable_dask_on_swarm

__all__ = ["swarm_dask_get", "enable_dask_on_swarm", "disable_dask_on_swarm", "ray_dask_get",
           "enable_dask_on_ray", "disable_dask_on_ray"]
