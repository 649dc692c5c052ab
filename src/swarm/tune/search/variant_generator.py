"""Turning a param space into concrete configs: expand every ``grid_search`` combination, then sample
each ``Domain``, then evaluate ``sample_from`` functions (which may read the values sampled before).

A param space is nested dicts and lists; a *path* is the tuple of keys/indices to one entry. Searchers
see the flat view (``flatten``: ``{"model/lr": ...}``) and hand configs back the same way.
"""

from __future__ import annotations

import copy
import itertools
import random
from typing import Any, Iterator

from swarm.tune.search.sample import Domain, Function, is_grid

Path = tuple


class _AttrDict(dict):
    """The config as ``sample_from`` functions see it: ``spec.config.lr`` or ``spec.config["lr"]``."""

    def __getattr__(self, name: str) -> Any:
        try:
            value = self[name]
        except KeyError:
            raise AttributeError(name) from None
        return _AttrDict(value) if isinstance(value, dict) else value


class _Spec:
    def __init__(self, config: dict) -> None:
        self.config = _AttrDict(config)


def leaves(space: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    """(path, value) for every entry that is not a container (grid dicts and Domains are leaves)."""
    if isinstance(space, dict) and not is_grid(space):
        for key, value in space.items():
            yield from leaves(value, path + (key,))
    elif isinstance(space, list):
        for i, value in enumerate(space):
            yield from leaves(value, path + (i,))
    else:
        yield path, space


def set_path(config: Any, path: Path, value: Any) -> None:
    for key in path[:-1]:
        config = config[key]
    config[path[-1]] = value


def grid_paths(space: Any) -> list[tuple[Path, list]]:
    return [(p, v["grid_search"]) for p, v in leaves(space) if is_grid(v)]


def domain_paths(space: Any) -> list[tuple[Path, Domain]]:
    return [(p, v) for p, v in leaves(space) if isinstance(v, Domain)]


def is_unresolved(space: Any) -> bool:
    return any(is_grid(v) or isinstance(v, Domain) for _, v in leaves(space))


def count_grid_variants(space: Any) -> int:
    n = 1
    for _, values in grid_paths(space):
        n *= len(values)
    return n


def grid_variants(space: Any) -> list[dict[Path, Any]]:
    """Every combination of grid values, as {path: value}; the first grid key varies fastest (as Ray)."""
    paths = grid_paths(space)
    if not paths:
        return [{}]
    ordered = list(reversed(paths))
    combos = itertools.product(*[values for _, values in ordered])
    return [{path: value for (path, _), value in zip(ordered, combo, strict=True)} for combo in combos]


def resolve(space: Any, rng: random.Random, assigned: dict[Path, Any] | None = None) -> Any:
    """One concrete config: ``assigned`` values first (grid choices, searcher suggestions), then every
    remaining Domain sampled, then ``sample_from`` functions until none is left."""
    config = copy.deepcopy(space)
    if not isinstance(config, (dict, list)):
        return config
    for path, value in (assigned or {}).items():
        set_path(config, path, value)
    functions = []
    for path, value in leaves(config):
        if is_grid(value):
            raise ValueError(f"the grid_search at {'/'.join(map(str, path))} was not expanded: "
                             f"this search algorithm does not support grid_search, use tune.choice")
        if isinstance(value, Function):
            functions.append((path, value))
        elif isinstance(value, Domain):
            set_path(config, path, value.sample(rng))
    # A function may read another function's result: retry the ones that fail until none makes progress.
    while functions:
        pending, last_error = [], None
        for path, fn in functions:
            try:
                set_path(config, path, fn.sample(rng, _Spec(config)))  # type: ignore[arg-type]
            except (AttributeError, KeyError, TypeError) as e:
                pending.append((path, fn))
                last_error = e
        if len(pending) == len(functions):
            raise ValueError(f"sample_from at {'/'.join(map(str, pending[0][0]))} could not be evaluated: "
                             f"{last_error!r}; it may only read entries that are not sample_from themselves, "
                             f"or that are resolvable in some order") from last_error
        functions = pending
    return config


def flatten(config: dict, sep: str = "/") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a/b": 1}`` (dicts only; lists stay values)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value and not is_grid(value):
            for sub, v in flatten(value, sep).items():
                out[f"{key}{sep}{sub}"] = v
        else:
            out[str(key)] = value
    return out


def unflatten(flat: dict[str, Any], sep: str = "/") -> dict:
    out: dict = {}
    for key, value in flat.items():
        parts = key.split(sep)
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def merge(base: dict, override: dict) -> dict:
    """A deep copy of ``base`` with ``override`` merged in, nested dicts merged key by key."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and not is_grid(out[key]):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
