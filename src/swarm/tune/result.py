"""``Result``: what one trial produced — last metrics, config, latest checkpoint, directory, error."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from swarm.tune import storage
from swarm.tune.checkpoint import Checkpoint


@dataclass
class Result:
    metrics: dict | None
    checkpoint: Checkpoint | None
    error: BaseException | None
    path: str
    best_checkpoints: list[tuple[Checkpoint, dict]] = field(default_factory=list)
    _metrics_dataframe: Any = field(default=None, repr=False)

    @property
    def config(self) -> dict | None:
        return (self.metrics or {}).get("config")

    @property
    def metrics_dataframe(self) -> Any:
        """Every result of the trial as a pandas DataFrame (needs pandas)."""
        if self._metrics_dataframe is None:
            pd = import_pandas()
            self._metrics_dataframe = pd.json_normalize(storage.read_results(self.path), sep="/")
        return self._metrics_dataframe

    @property
    def filesystem(self) -> None:
        return None

    @classmethod
    def from_path(cls, path: str | os.PathLike) -> Result:
        """The Result of a trial directory on disk (e.g. ``storage_path/name/<trial_id>``)."""
        path = os.fspath(path)
        if not os.path.isdir(path):
            raise FileNotFoundError(f"no trial directory at {path!r}")
        results = storage.read_results(path)
        checkpoints = sorted(d for d in os.listdir(path) if d.startswith("checkpoint_") and
                             not d.endswith(".tmp") and os.path.isdir(os.path.join(path, d)))
        return cls(metrics=results[-1] if results else {},
                   checkpoint=Checkpoint(os.path.join(path, checkpoints[-1])) if checkpoints else None,
                   error=storage.read_error(path), path=path,
                   best_checkpoints=[(Checkpoint(os.path.join(path, d)), {}) for d in checkpoints])

    def __repr__(self) -> str:
        shown = {k: v for k, v in (self.metrics or {}).items() if k != "config"}
        keys = list(shown)[:8]
        return (f"Result(metrics={{{', '.join(f'{k!r}: {shown[k]!r}' for k in keys)}"
                f"{', ...' if len(shown) > 8 else ''}}}, path={self.path!r}, checkpoint={self.checkpoint!r}"
                + (f", error={type(self.error).__name__}" if self.error else "") + ")")


def import_pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise ImportError("this needs pandas: pip install pandas (or use Result.metrics / "
                          "ResultGrid iteration, which do not)") from None
    return pandas
