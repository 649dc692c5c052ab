"""An ``Application`` graph → the deployments of one app, as plain specs for the controller.

    A.bind(B.bind(), c=C.bind(1))  ──▶  [spec C, spec B, spec A (ingress)]
                                        A's constructor arguments hold DeploymentHandle("B", app)
                                        and DeploymentHandle("C", app) where the Applications were

Code and arguments are pickled here, in the driver, so the controller never imports user code.
"""

from __future__ import annotations

import copyreg
import dataclasses
import hashlib
import inspect
from typing import Any

import cloudpickle

from swarm.serve.config import DeploymentConfig
from swarm.serve.deployment import Application, Deployment
from swarm.serve.handle import DeploymentHandle


@dataclasses.dataclass
class DeploymentSpec:
    name: str
    serialized_def: bytes
    serialized_init: bytes
    config: DeploymentConfig
    actor_options: dict
    is_function: bool
    code_version: str
    route_prefix: str | None = None


def build_application(app: Application, app_name: str) -> tuple[str, list[DeploymentSpec]]:
    """The ingress deployment's name and every deployment's spec (dependencies first)."""
    if not isinstance(app, Application):
        raise TypeError(f"serve.run() takes an Application (the result of Deployment.bind(...)), got "
                        f"{type(app).__name__}" + (": call .bind() on it first" if isinstance(app, Deployment)
                                                   else ""))
    specs: list[DeploymentSpec] = []
    names: dict[int, str] = {}       # id(Application) -> its deployment's name in this app
    taken: set[str] = set()

    def visit(node: Application) -> str:
        if id(node) in names:
            return names[id(node)]
        args = _replace_apps(node._args, visit, app_name)
        kwargs = _replace_apps(node._kwargs, visit, app_name)
        d = node.deployment
        name = d.name
        suffix = 1
        while name in taken:  # two different bindings of one deployment: as Ray, suffix the name
            name = f"{d.name}_{suffix}"
            suffix += 1
        taken.add(name)
        names[id(node)] = name
        is_function = inspect.isfunction(d.func_or_class)
        if is_function and (args or kwargs):
            raise TypeError(f"function deployment {d.name!r} takes no bind() arguments; pass values in each "
                            f"call instead, or make it a class")
        _register_reducers()
        serialized_def = cloudpickle.dumps(d.func_or_class)
        serialized_init = cloudpickle.dumps((args, kwargs))
        version = d.version or hashlib.blake2b(
            serialized_def + serialized_init + repr(sorted(d.ray_actor_options.items())).encode(),
            digest_size=8).hexdigest()
        specs.append(DeploymentSpec(name, serialized_def, serialized_init, d.config, d.ray_actor_options,
                                    is_function, version, d.route_prefix))
        return name

    return visit(app), specs


def _replace_apps(value: Any, visit: Any, app_name: str) -> Any:
    if isinstance(value, Application):
        return DeploymentHandle(visit(value), app_name)
    if isinstance(value, Deployment):
        raise TypeError(f"deployment {value.name!r} was passed to bind() without being bound: pass "
                        f"{value.name}.bind(...) instead")
    if isinstance(value, list):
        return [_replace_apps(v, visit, app_name) for v in value]
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(_replace_apps(v, visit, app_name) for v in value)
    if isinstance(value, dict):
        return {k: _replace_apps(v, visit, app_name) for k, v in value.items()}
    return value


_reducers_registered = False


def _register_reducers() -> None:
    """Starlette's ``State`` (held by every Starlette/FastAPI app) pickles, but its ``__getattr__``
    recurses forever when unpickled; an ``@serve.ingress`` app travels pickled, so give it a reducer."""
    global _reducers_registered
    if _reducers_registered:
        return
    _reducers_registered = True
    try:
        from starlette.datastructures import State
    except ImportError:
        return
    copyreg.pickle(State, _reduce_state)


def _reduce_state(state: Any) -> tuple:
    return (type(state), (dict(state._state),))
