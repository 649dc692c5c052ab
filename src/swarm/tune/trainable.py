"""What Tune runs: a function ``fn(config)`` that calls ``tune.report``, or a ``Trainable`` subclass with
``setup/step/save_checkpoint/load_checkpoint``; and the wrappers that attach a resource request
(``with_resources``) or large shared arguments (``with_parameters``) to either."""

from __future__ import annotations

import copy
import functools
import inspect
import numbers
import os
import pickle
import tempfile
from typing import Any

from swarm.tune._clock import ResultClock
from swarm.tune.checkpoint import Checkpoint

_DICT_CHECKPOINT = "_dict_checkpoint.pkl"
_TRAINABLE_STATE = ".tune_trainable_state.pkl"
RESOURCES_ATTR = "_swarm_tune_resources"


class Trainable:
    """Base class of class trainables: Tune calls ``step()`` once per result, ``save_checkpoint(dir)``
    every ``CheckpointConfig.checkpoint_frequency`` results, and ``load_checkpoint`` when restoring."""

    def __init__(self, config: dict | None = None, logger_creator: Any = None, storage: Any = None,
                 _trial_info: dict | None = None) -> None:
        self.config = config if config is not None else {}
        info = _trial_info or {}
        self._trial_info = info
        self._clock = ResultClock(info.get("trial_id"))
        self._trial_dir = info.get("trial_dir") or os.getcwd()
        self.setup(copy.deepcopy(self.config))

    # -- to override -----------------------------------------------------------------------------------
    def setup(self, config: dict) -> None:
        """Called once with the trial's config (build the model, load data)."""

    def step(self) -> dict:
        """One unit of training; returns the result's metrics (``{"done": True}`` ends the trial)."""
        raise NotImplementedError(f"{type(self).__name__} must implement step() returning a dict of metrics")

    def save_checkpoint(self, checkpoint_dir: str) -> dict | None:
        """Write state into ``checkpoint_dir`` (or return a dict, which Tune pickles there)."""
        raise NotImplementedError(f"{type(self).__name__} must implement save_checkpoint(checkpoint_dir) to "
                                  f"be checkpointed (CheckpointConfig, failure recovery)")

    def load_checkpoint(self, checkpoint: dict | str) -> None:
        """Restore state: receives the dict ``save_checkpoint`` returned, or the directory it wrote."""
        raise NotImplementedError(f"{type(self).__name__} must implement load_checkpoint(checkpoint) to be "
                                  f"restored")

    def cleanup(self) -> None:
        """Called once when the trial ends."""

    def reset_config(self, new_config: dict) -> bool:
        return False

    @classmethod
    def default_resource_request(cls, config: dict) -> dict | None:
        return None

    # -- driven by Tune ----------------------------------------------------------------------------------
    @property
    def iteration(self) -> int:
        return self._clock.iteration

    @property
    def training_iteration(self) -> int:
        return self._clock.iteration

    @property
    def trial_id(self) -> str:
        return self._trial_info.get("trial_id", "default")

    @property
    def trial_name(self) -> str:
        return self._trial_info.get("trial_name", "default")

    @property
    def trial_resources(self) -> dict:
        return dict(self._trial_info.get("resources", {}))

    @property
    def logdir(self) -> str:
        return self._trial_dir

    def train(self) -> dict:
        """Run ``step()`` once and return its metrics with Tune's automatic fields."""
        metrics = self.step()
        if not isinstance(metrics, dict):
            raise TypeError(f"{type(self).__name__}.step() must return a dict of metrics, got "
                            f"{type(metrics).__name__}")
        return self._clock.stamp(metrics)

    def save(self, checkpoint_dir: str | None = None) -> Checkpoint:
        """Save into ``checkpoint_dir`` (a new temporary directory when None)."""
        path = checkpoint_dir or tempfile.mkdtemp(prefix="checkpoint_")
        os.makedirs(path, exist_ok=True)
        state = self.save_checkpoint(path)
        if isinstance(state, dict):
            with open(os.path.join(path, _DICT_CHECKPOINT), "wb") as f:
                pickle.dump(state, f)
        elif state is not None and os.path.abspath(str(state)) != os.path.abspath(path):
            raise ValueError(f"{type(self).__name__}.save_checkpoint must return None, a dict, or the "
                             f"directory it was given, not {state!r}")
        with open(os.path.join(path, _TRAINABLE_STATE), "wb") as f:
            pickle.dump({"iteration": self._clock.iteration, "time_total": self._clock.time_total}, f)
        return Checkpoint(path)

    def restore(self, checkpoint: Checkpoint | str) -> None:
        path = checkpoint.path if isinstance(checkpoint, Checkpoint) else os.fspath(checkpoint)
        state_file = os.path.join(path, _TRAINABLE_STATE)
        if os.path.exists(state_file):
            with open(state_file, "rb") as f:
                state = pickle.load(f)
            self._clock.restore(state["iteration"], state["time_total"])
        dict_file = os.path.join(path, _DICT_CHECKPOINT)
        if os.path.exists(dict_file):
            with open(dict_file, "rb") as f:
                self.load_checkpoint(pickle.load(f))
        else:
            self.load_checkpoint(path)

    def stop(self) -> None:
        self.cleanup()


def is_class_trainable(trainable: Any) -> bool:
    return inspect.isclass(trainable) and issubclass(trainable, Trainable)


def validate_trainable(trainable: Any) -> None:
    if isinstance(trainable, str):
        raise NotImplementedError(f"trainables registered by name ({trainable!r}) are not supported: pass "
                                  f"the function or Trainable class itself")
    if is_class_trainable(trainable):
        return
    if inspect.isclass(trainable):
        raise TypeError(f"class trainable {trainable.__name__} must subclass swarm.tune.Trainable")
    if not callable(trainable):
        raise TypeError(f"a trainable is a function fn(config) or a Trainable subclass, got "
                        f"{type(trainable).__name__}")
    try:
        params = inspect.signature(trainable).parameters
    except (TypeError, ValueError):
        return
    if not params:
        raise TypeError(f"function trainable {getattr(trainable, '__name__', trainable)}() must take the "
                        f"config as its first argument: def train_fn(config): ...")


def trainable_name(trainable: Any) -> str:
    return getattr(trainable, "__name__", type(trainable).__name__)


# -- resources ----------------------------------------------------------------------------------------------
class PlacementGroupFactory:
    """Ray's bundle list for a trial; swarm places a trial in one actor, so the bundles are summed."""

    def __init__(self, bundles: list[dict], strategy: str = "PACK") -> None:
        if not bundles:
            raise ValueError("PlacementGroupFactory needs at least one bundle")
        self.bundles = [dict(b) for b in bundles]
        self.strategy = strategy

    @property
    def required_resources(self) -> dict:
        total: dict = {}
        for bundle in self.bundles:
            for key, value in bundle.items():
                total[key] = total.get(key, 0) + value
        return total


def normalize_resources(resources: Any) -> dict[str, float]:
    """``{"cpu": 1, "gpu": 0.5, "memory": ..., "custom": 1}`` in the cluster's spelling (``CPU``, ``GPU``)."""
    if isinstance(resources, PlacementGroupFactory):
        resources = resources.required_resources
    if not isinstance(resources, dict):
        raise TypeError(f"trial resources must be a dict like {{'cpu': 1}}, got {type(resources).__name__}")
    out: dict[str, float] = {}
    for key, value in resources.items():
        if value is None:
            continue
        if not isinstance(value, numbers.Real) or value < 0:
            raise ValueError(f"trial resource {key!r} must be a non-negative number, got {value!r}")
        name = {"cpu": "CPU", "gpu": "GPU"}.get(key.lower(), key) if isinstance(key, str) else key
        out[name] = out.get(name, 0) + float(value)
    return out


def trial_resources(trainable: Any, config: dict) -> dict[str, float]:
    """The resources one trial of ``trainable`` with ``config`` asks for (1 CPU by default)."""
    spec = getattr(trainable, RESOURCES_ATTR, None)
    if callable(spec) and not isinstance(spec, PlacementGroupFactory):
        spec = spec(config)
    if spec is None and is_class_trainable(trainable):
        spec = trainable.default_resource_request(config)
    return normalize_resources(spec) if spec is not None else {"CPU": 1.0}


def actor_options(resources: dict[str, float]) -> dict:
    """Actor options asking for exactly ``resources``."""
    opts: dict[str, Any] = {"num_cpus": resources.get("CPU", 0.0)}
    if resources.get("GPU"):
        opts["num_gpus"] = resources["GPU"]
    if resources.get("memory"):
        opts["memory"] = resources["memory"]
    custom = {k: v for k, v in resources.items() if k not in ("CPU", "GPU", "memory") and v}
    if custom:
        opts["resources"] = custom
    return opts


def with_resources(trainable: Any, resources: Any) -> Any:
    """``trainable`` whose trials each ask for ``resources`` (a dict, ``PlacementGroupFactory`` or a
    function of the config returning one)."""
    validate_trainable(trainable)
    if not callable(resources) or isinstance(resources, PlacementGroupFactory):
        normalize_resources(resources)  # fail now, not when the first trial starts
    return _wrap(trainable, {RESOURCES_ATTR: resources})


def with_parameters(trainable: Any, **kwargs: Any) -> Any:
    """``trainable`` called with extra arguments (e.g. a data set), stored once in the object store and
    fetched by each trial: ``fn(config, **kwargs)`` or ``Trainable.setup(config, **kwargs)``."""
    validate_trainable(trainable)
    import swarm
    refs = {key: swarm.put(value) for key, value in kwargs.items()}
    if is_class_trainable(trainable):
        base = trainable

        class _WithParameters(base):  # type: ignore[valid-type, misc]
            def setup(self, config: dict, **setup_kwargs: Any) -> None:
                fetched = {k: swarm.get(r) for k, r in refs.items()}
                base.setup(self, config, **{**fetched, **setup_kwargs})

        _WithParameters.__name__ = _WithParameters.__qualname__ = base.__name__
        return _WithParameters

    fn = trainable

    @functools.wraps(fn)
    def with_params(config: dict) -> Any:
        return fn(config, **{k: swarm.get(r) for k, r in refs.items()})

    spec = getattr(fn, RESOURCES_ATTR, None)
    if spec is not None:
        setattr(with_params, RESOURCES_ATTR, spec)
    return with_params


def _wrap(trainable: Any, attrs: dict) -> Any:
    if is_class_trainable(trainable):
        return type(trainable.__name__, (trainable,), dict(attrs))
    fn = trainable

    @functools.wraps(fn)
    def wrapped(config: dict) -> Any:
        return fn(config)

    for key, value in attrs.items():
        setattr(wrapped, key, value)
    return wrapped

