"""The files of an experiment, all under ``storage_path/name/``:

    storage_path/name/
      experiment_state.pkl        trials, search algorithm, scheduler (what Tuner.restore reads)
      experiment_state.json       the same trial table, readable
      <trial_id>/params.json      the trial's config
      <trial_id>/result.json      one JSON line per result
      <trial_id>/checkpoint_000003/   written by the trial's actor (see checkpoint.persist)
      <trial_id>/error.txt, error.pkl  when the trial failed
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import pickle
from typing import Any

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"
PARAMS_FILE = "params.json"
ERROR_TXT = "error.txt"
ERROR_PKL = "error.pkl"


def _json_default(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        try:
            return value.item()
        except (TypeError, ValueError):
            pass
    if hasattr(value, "tolist"):
        return value.tolist()
    return repr(value)


def to_json(value: Any) -> str:
    return json.dumps(value, default=_json_default)


def write_params(trial_dir: str, config: dict) -> None:
    os.makedirs(trial_dir, exist_ok=True)
    with open(os.path.join(trial_dir, PARAMS_FILE), "w") as f:
        f.write(to_json(config))


def append_result(trial_dir: str, result: dict) -> None:
    with open(os.path.join(trial_dir, RESULT_FILE), "a") as f:
        f.write(to_json(result) + "\n")


def read_results(trial_dir: str) -> list[dict]:
    """Every result of a trial in order (a line cut short by a crash is skipped)."""
    out = []
    try:
        with open(os.path.join(trial_dir, RESULT_FILE)) as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
    except FileNotFoundError:
        pass
    return out


def write_error(trial_dir: str, error: BaseException) -> None:
    os.makedirs(trial_dir, exist_ok=True)
    with open(os.path.join(trial_dir, ERROR_TXT), "a") as f:
        f.write(f"{error}\n")
    try:
        blob = pickle.dumps(error)
    except Exception:  # an exception that does not pickle: error.txt still has its text
        return
    with open(os.path.join(trial_dir, ERROR_PKL), "wb") as f:
        f.write(blob)


def read_error(trial_dir: str) -> BaseException | None:
    try:
        with open(os.path.join(trial_dir, ERROR_PKL), "rb") as f:
            return pickle.load(f)
    except Exception:
        pass
    try:
        with open(os.path.join(trial_dir, ERROR_TXT)) as f:
            from swarm.tune.error import TuneError
            return TuneError(f.read().strip())
    except FileNotFoundError:
        return None


def is_finite_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
