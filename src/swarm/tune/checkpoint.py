"""``Checkpoint``: a directory of files that captures a trial's state (``ray.tune.Checkpoint``).

A checkpoint is only a path. ``tune.report(..., checkpoint=Checkpoint.from_directory(tmp))`` makes the
trial's actor copy ``tmp`` into ``<trial dir>/checkpoint_000007`` before ``report`` returns, so the user
may delete ``tmp`` right after; Tune hands that persisted checkpoint back through ``get_checkpoint()``
after a failure and in ``Result.checkpoint``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from typing import Any, Iterator

_METADATA_FILE = ".metadata.json"


class Checkpoint:
    def __init__(self, path: str | os.PathLike, filesystem: Any = None) -> None:
        if filesystem is not None:
            raise NotImplementedError("Checkpoint(filesystem=...) is not supported: use a local or "
                                      "mounted path")
        self.path = os.fspath(path)
        self.filesystem = None

    @classmethod
    def from_directory(cls, path: str | os.PathLike) -> Checkpoint:
        path = os.fspath(path)
        if not os.path.isdir(path):
            raise FileNotFoundError(f"Checkpoint.from_directory: {path!r} is not a directory; write the "
                                    f"checkpoint files into a directory and pass that")
        return cls(path)

    def to_directory(self, path: str | os.PathLike | None = None) -> str:
        """Copy the checkpoint into ``path`` (a new temporary directory when None); returns the path."""
        dest = os.fspath(path) if path is not None else tempfile.mkdtemp(prefix="checkpoint_")
        shutil.copytree(self.path, dest, dirs_exist_ok=True)
        return dest

    @contextlib.contextmanager
    def as_directory(self) -> Iterator[str]:
        """The checkpoint as a local directory, read-only by convention (no copy: it is local already)."""
        yield self.path

    def get_metadata(self) -> dict:
        try:
            with open(os.path.join(self.path, _METADATA_FILE)) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}

    def set_metadata(self, metadata: dict) -> None:
        with open(os.path.join(self.path, _METADATA_FILE), "w") as f:
            json.dump(metadata, f)

    def update_metadata(self, metadata: dict) -> None:
        self.set_metadata({**self.get_metadata(), **metadata})

    def __repr__(self) -> str:
        return f"Checkpoint(path={self.path!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Checkpoint) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    def __fspath__(self) -> str:
        return self.path


def persist(checkpoint: Checkpoint, trial_dir: str, index: int, move: bool = False) -> str:
    """Copy (or ``move``) ``checkpoint`` to ``trial_dir/checkpoint_<index>`` atomically: a crash
    mid-copy leaves a ``.tmp`` directory, never a half-written checkpoint. Returns the new path."""
    dest = os.path.join(trial_dir, f"checkpoint_{index:06d}")
    if os.path.abspath(checkpoint.path) == os.path.abspath(dest):
        return dest
    tmp = dest + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    if move:
        shutil.move(checkpoint.path, tmp)
    else:
        shutil.copytree(checkpoint.path, tmp)
    shutil.rmtree(dest, ignore_errors=True)  # left by a run that crashed after reporting it
    os.rename(tmp, dest)
    return dest
