"""Code packages for ``runtime_env``: a local directory zipped, named by its content hash, unpacked once
per node.

    client / driver                          cluster KV (namespace "runtime_env")       a node
    package(dir) ──▶ pkg_<sha>.zip bytes ──▶  key pkg_<sha>.zip  ──▶ ensure_local(uri) ──▶
                                                                  <base>/pkg_<sha>/ (unpacked once)

The zip is deterministic (sorted entries, fixed timestamps), so the same tree always gives the same
name: a package is uploaded once however many jobs or tasks use it, and a name identifies its content
(``ensure_local`` checks the hash before unpacking). Unpacking goes to a temporary directory that is
renamed into place, so concurrent workers on one node never see a half-written tree.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
from typing import Callable, Iterable

from swarm._config import CONFIG

URI_PREFIX = "kv://"
KV_NAMESPACE = "runtime_env"
ALWAYS_EXCLUDED = (".git", "__pycache__")
_NAME = re.compile(r"^pkg_[0-9a-f]{32}\.zip$")
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)


class PackageTooLargeError(ValueError):
    """A directory meant for runtime_env is over ``SWARM_WORKING_DIR_MAX_BYTES``."""


def is_uri(value: object) -> bool:
    return isinstance(value, str) and value.startswith(URI_PREFIX)


def package_name(uri: str) -> str:
    """``kv://pkg_<sha>.zip`` -> ``pkg_<sha>.zip`` (checked: names reach file paths on every node)."""
    name = uri[len(URI_PREFIX):] if uri.startswith(URI_PREFIX) else uri
    if not _NAME.match(name):
        raise ValueError(f"not a swarm runtime_env package: {uri!r} (expected {URI_PREFIX}pkg_<hash>.zip, as "
                         f"made by swarm from a local directory)")
    return name


def name_for(data: bytes) -> str:
    return f"pkg_{hashlib.sha256(data).hexdigest()[:32]}.zip"


def _excluded(rel: str, patterns: Iterable[str]) -> bool:
    base = rel.rsplit("/", 1)[-1]
    for p in patterns:
        p = p.rstrip("/")
        if fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(base, p) or rel.startswith(p + "/"):
            return True
    return False


def _files(root: str, excludes: Iterable[str]) -> list[tuple[str, str, int]]:
    """(absolute path, archive path, size) of every file to ship, in a stable order."""
    patterns = list(excludes)
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = sorted(d for d in dirnames
                             if d not in ALWAYS_EXCLUDED and not _excluded(rel_dir + d, patterns))
        for f in sorted(filenames):
            rel = rel_dir + f
            if _excluded(rel, patterns) or f.endswith(".pyc"):
                continue
            path = os.path.join(dirpath, f)
            try:
                out.append((path, rel, os.stat(path).st_size))
            except OSError:
                continue   # a dangling symlink or a file removed meanwhile: nothing to ship
    return out


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def package(path: str, *, excludes: Iterable[str] = (), top_level: str | None = None,
            what: str = "working_dir") -> tuple[str, bytes]:
    """Zip ``path`` (a directory, or a single file for py_modules): (package name, zip bytes).

    ``top_level`` puts everything under that directory name inside the zip (py_modules: the package
    directory itself must be importable from the unpacked root)."""
    limit = CONFIG.working_dir_max_bytes
    if os.path.isdir(path):
        files = _files(path, excludes)
    elif os.path.isfile(path):
        files = [(path, os.path.basename(path), os.path.getsize(path))]
        top_level = None
    else:
        raise ValueError(f"runtime_env {what} {path!r} does not exist: pass an existing local directory")
    total = sum(size for _, _, size in files)
    if total > limit:
        biggest = sorted(files, key=lambda f: -f[2])[:3]
        raise PackageTooLargeError(
            f"runtime_env {what} {path!r} is {_mib(total)} (without .git and __pycache__), over the "
            f"{_mib(limit)} limit for code shipped with a job (largest: "
            + ", ".join(f"{rel} {_mib(size)}" for _, rel, size in biggest)
            + "). Leave data out with runtime_env={'excludes': [...]} (or --runtime-env-json), keep large "
              "files in shared storage or the object store, or raise the limit with "
              "SWARM_WORKING_DIR_MAX_BYTES.")
    import io
    import zipfile  # (here, not at the top: `import swarm` stays quick for programs that never package)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for abs_path, rel, _ in files:
            arc = f"{top_level}/{rel}" if top_level else rel
            info = zipfile.ZipInfo(arc, date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (os.stat(abs_path).st_mode & 0o777) << 16
            with open(abs_path, "rb") as f:
                zf.writestr(info, f.read())
    data = buf.getvalue()
    return name_for(data), data


def ensure_local(uri: str, base_dir: str, fetch: Callable[[str], bytes | None]) -> str:
    """The directory holding package ``uri`` on this node, fetched and unpacked on first use."""
    name = package_name(uri)
    target = os.path.join(base_dir, name[:-len(".zip")])
    if os.path.isdir(target):
        return target
    data = fetch(name)
    if data is None:
        raise FileNotFoundError(f"runtime_env package {name} is not in the cluster's KV (namespace "
                                f"{KV_NAMESPACE!r}): it was deleted, or the head restarted without "
                                f"persistence; submit the job again so its code is uploaded again")
    if name_for(data) != name:
        raise ValueError(f"runtime_env package {name} is corrupt (its content does not match its hash); "
                         f"submit the job again")
    os.makedirs(base_dir, mode=0o700, exist_ok=True)
    import io
    import shutil
    import tempfile
    import zipfile
    tmp = tempfile.mkdtemp(prefix=".unpack-", dir=base_dir)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for info in zf.infolist():
                dest = zf.extract(info, tmp)   # extract() refuses absolute and ".." member paths
                mode = (info.external_attr >> 16) & 0o777
                if mode and not info.is_dir():
                    os.chmod(dest, mode | 0o400)
        try:
            os.rename(tmp, target)
        except OSError:
            if not os.path.isdir(target):   # not a lost race with another worker: a real failure
                raise
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return target
