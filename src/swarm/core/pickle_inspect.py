"""Locate the unpicklable part of a value so serialization errors can name it.

cloudpickle only says "cannot pickle '_thread.lock' object". This walks a failing value (items,
dict values/keys, ``__dict__``/``__slots__``, closures, defaults, by-value globals, partials, bound
methods) into the first child that also fails -- skipping children that fail only via a cycle back
to an ancestor -- and reports e.g. ``args[0].writer._lock`` with its type. It never raises
(``KeyboardInterrupt`` aside) and is bounded by depth, node count and a cycle guard.
"""

from __future__ import annotations

import functools
import types

import cloudpickle

__all__ = ["find_unpicklable", "describe_unpicklable"]

_Child = tuple[str, object]


def _fails(obj: object) -> bool:
    """True if ``obj`` cannot be serialized with cloudpickle (any exception counts)."""
    try:
        cloudpickle.dumps(obj, protocol=5)
    except KeyboardInterrupt:
        raise
    except BaseException:  # noqa: BLE001 - odd __reduce__ implementations raise anything
        return True
    return False


def _type_name(obj: object) -> str:
    """``module.qualname`` of ``type(obj)``, without a ``builtins.`` prefix."""
    try:  # a hostile metaclass could make even these lookups raise
        mod, qual = type(obj).__module__, type(obj).__qualname__
    except Exception:  # noqa: BLE001
        return "<unknown type>"
    return qual if mod in (None, "builtins") else f"{mod}.{qual}"


def _children(obj: object, path: str) -> list[_Child]:
    """Labelled sub-objects of ``obj`` that cloudpickle would serialize along with it."""
    out: list[_Child] = []
    for section in (_items, _callable_parts, _attributes):
        try:
            section(obj, path, out)
        except KeyboardInterrupt:
            raise
        except BaseException:  # noqa: BLE001 - keep whatever was collected so far
            pass
    return out


def _items(obj: object, path: str, out: list[_Child]) -> None:
    if isinstance(obj, (list, tuple, set, frozenset)):
        out.extend((f"{path}[{i}]", item) for i, item in enumerate(list(obj)))
    elif isinstance(obj, dict):
        pairs = list(obj.items())
        out.extend((f"{path}[{k!r}]", v) for k, v in pairs)
        out.extend((f"{path}.keys()[{i}]", k) for i, (k, _) in enumerate(pairs))


def _callable_parts(obj: object, path: str, out: list[_Child]) -> None:
    if isinstance(obj, functools.partial):
        out.append((f"{path}.func", obj.func))
        out.extend((f"{path}.args[{i}]", a) for i, a in enumerate(obj.args))
        out.extend((f"{path}.keywords[{k!r}]", v) for k, v in obj.keywords.items())
    elif isinstance(obj, (types.MethodType, types.BuiltinMethodType, types.MethodWrapperType)):
        out.append((f"{path}.__self__", obj.__self__))  # bound methods, incl. C-level ones
        if isinstance(obj, types.MethodType):
            out.append((f"{path}.__func__", obj.__func__))
    elif isinstance(obj, types.FunctionType):
        for name, cell in zip(obj.__code__.co_freevars, obj.__closure__ or (), strict=False):
            try:
                out.append((f"{path}.{name}", cell.cell_contents))
            except ValueError:  # empty cell
                continue
        out.extend((f"{path}.__defaults__[{i}]", d) for i, d in enumerate(obj.__defaults__ or ()))
        kwdefaults = obj.__kwdefaults__ or {}
        out.extend((f"{path}.__kwdefaults__[{k!r}]", v) for k, v in kwdefaults.items())
        # Only reached when the function failed, i.e. cloudpickle pickles it (and its globals) by value.
        try:  # cloudpickle's (private) list of referenced globals, including nested code
            names = list(cloudpickle.cloudpickle._extract_code_globals(obj.__code__))
        except Exception:  # noqa: BLE001
            names = list(obj.__code__.co_names)
        g = obj.__globals__
        out.extend((f"{path}.__globals__[{n!r}]", g[n]) for n in names if n in g)


def _attributes(obj: object, path: str, out: list[_Child]) -> None:
    if isinstance(obj, types.ModuleType):
        return  # modules are pickled by reference
    is_class = isinstance(obj, type)
    try:
        attrs = list(vars(obj).items())
    except Exception:  # noqa: BLE001 - no __dict__, or a hostile __getattribute__
        attrs = []
    dunder = lambda n: is_class and n.startswith("__") and n.endswith("__")  # noqa: E731
    out.extend((f"{path}.{name}", val) for name, val in attrs if not dunder(name))
    for cls in () if is_class else type(obj).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name in ("__dict__", "__weakref__"):
                continue
            attr = f"_{cls.__name__.lstrip('_')}{name}" if name.startswith("__") else name
            try:
                out.append((f"{path}.{name}", cls.__dict__[attr].__get__(obj, cls)))
            except (AttributeError, KeyError):  # unset slot
                continue


def find_unpicklable(
    value: object, root: str = "value", *, max_depth: int = 8, max_nodes: int = 10_000
) -> tuple[str, str] | None:
    """Return (path, type_name) of the deepest unpicklable member of `value`, or None if it pickles
    (or if the culprit cannot be narrowed down, return the root itself)."""
    if not _fails(value):
        return None
    seen, bad, budget = {id(value)}, {id(value)}, [max_nodes]

    def walk(obj: object, path: str, depth: int) -> _Child | None:
        """Deepest failing member under the failing ``obj``; None if only a cycle explains it."""
        via_cycle = False
        for child_path, child in _children(obj, path) if depth < max_depth else ():
            if id(child) in seen:
                via_cycle = via_cycle or id(child) in bad  # back-reference to a failing object
                continue
            if budget[0] <= 0:
                break
            budget[0] -= 1
            seen.add(id(child))
            if _fails(child):
                bad.add(id(child))
                if (found := walk(child, child_path, depth + 1)) is not None:
                    return found
        return None if via_cycle else (path, obj)

    try:
        path, obj = walk(value, root, 0) or (root, value)
        return path, _type_name(obj)
    except KeyboardInterrupt:
        raise
    except BaseException:  # noqa: BLE001 - never let the inspector raise
        return root, _type_name(value)


def describe_unpicklable(value: object, root: str, exc: BaseException) -> str:
    """A full user-facing message: what failed, the path and type found by find_unpicklable, the
    original error text, and the fix."""
    found = find_unpicklable(value, root)
    if found is None:
        where = f"the culprit inside {root} could not be narrowed down (it pickles on retry)"
    else:
        where = f"the offending member is {found[0]}: {found[1]}"
    return (
        f"Could not serialize {root}: {where}.\n"
        f"  Original error: {type(exc).__name__}: {exc}\n"
        "  Fix: create it inside the task or actor (e.g. in __init__ of an actor), or pass only "
        "the data it needs. Alternatively, make it a module-level object (imported, not "
        "captured), or give its class a __reduce__/__getstate__ that drops or recreates it."
    )
