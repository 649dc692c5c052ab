"""runtime_env without a cluster: validation, packaging, unpacking, activation in a worker process, and
the job table rules of the JobManager (with an in-memory KV)."""

from __future__ import annotations

import json
import os
import sys

import pytest

from swarm import _packaging, _runtime_env
from swarm._config import CONFIG
from swarm.dashboard.jobs import JOBS_NAMESPACE, JobConflictError, JobManager, JobNotFoundError


def write(root, files: dict) -> str:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(root)


# -- validation --------------------------------------------------------------------------------------
def test_unsupported_field_names_it_and_the_alternative():
    with pytest.raises(ValueError, match="'pip'.*not supported.*working_dir or py_modules"):
        _runtime_env.validate({"pip": ["requests"]})


def test_env_vars_must_be_strings():
    with pytest.raises(TypeError, match=r"'N' maps to 3 \(int\): pass str\(value\)"):
        _runtime_env.validate({"env_vars": {"N": 3}})


def test_remote_option_is_checked_when_declared():
    import swarm
    with pytest.raises(ValueError, match="conda"):
        swarm.remote(runtime_env={"conda": "env"})(lambda: None)


# -- packaging ---------------------------------------------------------------------------------------
def test_package_is_named_by_content_and_skips_caches(tmp_path):
    a = write(tmp_path / "a", {"main.py": "x = 1", "pkg/m.py": "y = 2", ".git/HEAD": "ref",
                               "__pycache__/main.cpython-311.pyc": b"\0"})
    b = write(tmp_path / "b", {"main.py": "x = 1", "pkg/m.py": "y = 2"})
    name_a, data_a = _packaging.package(a)
    name_b, data_b = _packaging.package(b)
    assert name_a == name_b and data_a == data_b      # same files, same package: uploaded once
    (tmp_path / "b" / "main.py").write_text("x = 3")
    assert _packaging.package(b)[0] != name_a


def test_excludes_leave_files_out(tmp_path):
    root = write(tmp_path / "w", {"main.py": "", "data/big.bin": b"0" * 1000, "model.ckpt": b"1" * 10})
    _, data = _packaging.package(root, excludes=["data/", "*.ckpt"])
    out = _packaging.ensure_local(_packaging.URI_PREFIX + _packaging.name_for(data), str(tmp_path / "cache"),
                                  lambda name: data)
    assert sorted(os.listdir(out)) == ["main.py"]


def test_too_large_directory_says_size_limit_and_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(CONFIG, "working_dir_max_bytes", 2 * 2**20)
    root = write(tmp_path / "w", {"main.py": "", "weights.bin": b"0" * (3 * 2**20)})
    with pytest.raises(_packaging.PackageTooLargeError) as e:
        _packaging.package(root)
    msg = str(e.value)
    assert "3.0 MiB" in msg and "2.0 MiB limit" in msg and "weights.bin" in msg
    assert "excludes" in msg and "SWARM_WORKING_DIR_MAX_BYTES" in msg


def test_unpack_keeps_modes_and_reuses_the_directory(tmp_path):
    root = write(tmp_path / "w", {"run.sh": "#!/bin/sh\necho hi\n", "sub/m.py": "v = 1"})
    os.chmod(root + "/run.sh", 0o755)
    name, data = _packaging.package(root)
    fetched = []

    def fetch(n):
        fetched.append(n)
        return data
    uri = _packaging.URI_PREFIX + name
    out = _packaging.ensure_local(uri, str(tmp_path / "cache"), fetch)
    assert os.access(os.path.join(out, "run.sh"), os.X_OK)
    assert open(os.path.join(out, "sub", "m.py")).read() == "v = 1"
    assert _packaging.ensure_local(uri, str(tmp_path / "cache"), fetch) == out
    assert fetched == [name]
    assert [n for n in os.listdir(tmp_path / "cache") if n.startswith(".unpack")] == []


def test_missing_or_corrupt_package_is_a_clear_error(tmp_path):
    name, data = _packaging.package(write(tmp_path / "w", {"m.py": "v = 1"}))
    uri = _packaging.URI_PREFIX + name
    with pytest.raises(FileNotFoundError, match="not in the cluster's KV.*submit the job again"):
        _packaging.ensure_local(uri, str(tmp_path / "c1"), lambda n: None)
    with pytest.raises(ValueError, match="corrupt"):
        _packaging.ensure_local(uri, str(tmp_path / "c2"), lambda n: data + b"x")
    with pytest.raises(ValueError, match="not a swarm runtime_env package"):
        _packaging.package_name("kv://../../etc/passwd")


# -- preparation and merging -------------------------------------------------------------------------
def test_prepare_uploads_directories_and_keeps_env_vars(tmp_path):
    wd = write(tmp_path / "wd", {"main.py": ""})
    mod = write(tmp_path / "mylib", {"__init__.py": "NAME = 'mylib'"})
    uploads: dict = {}
    spec = _runtime_env.prepare({"working_dir": wd, "py_modules": [mod], "env_vars": {"A": "1"}},
                                uploads.__setitem__)
    assert spec["env_vars"] == {"A": "1"}
    assert spec["working_dir"] == _packaging.URI_PREFIX + _packaging.package(wd)[0]
    assert set(uploads) == {_packaging.package_name(spec["working_dir"]),
                            _packaging.package_name(spec["py_modules"][0])}
    out = _packaging.ensure_local(spec["py_modules"][0], str(tmp_path / "c"), uploads.get)
    assert os.listdir(out) == ["mylib"]     # the package directory itself, importable from the root
    assert json.loads(json.dumps(spec)) == spec


def test_task_options_override_job_fields_and_merge_env_vars():
    job = {"env_vars": {"A": "job", "B": "job"}, "working_dir": "kv://x"}
    assert _runtime_env.merge(job, {"env_vars": {"B": "task"}}) == {
        "env_vars": {"A": "job", "B": "task"}, "working_dir": "kv://x"}
    assert _runtime_env.merge(job, {"working_dir": "kv://y"})["working_dir"] == "kv://y"


def test_missing_working_dir_is_reported(tmp_path):
    with pytest.raises(ValueError, match="is not a directory"):
        _runtime_env.prepare({"working_dir": str(tmp_path / "nope")}, lambda n, d: None)


# -- activation in a worker ------------------------------------------------------------------------
@pytest.fixture
def packages(tmp_path, monkeypatch):
    """Packages 'uploaded' to a dict that stands for the cluster KV; unpacked under tmp_path."""
    store: dict = {}
    monkeypatch.setattr(_runtime_env, "resources_dir", lambda: str(tmp_path / "resources"))
    monkeypatch.setattr(_runtime_env, "_fetch_kv", store.get)
    monkeypatch.setattr(_runtime_env, "_local_dirs", {})
    monkeypatch.setattr(_runtime_env, "_known_dirs", set())
    monkeypatch.setattr(_runtime_env, "_active_dirs", frozenset())
    monkeypatch.setattr(_runtime_env, "current", None)
    yield lambda env: _runtime_env.PreparedEnv(_runtime_env.prepare(env, store.__setitem__))
    for name in [n for n, m in sys.modules.items() if n.startswith("rtenv_probe")]:
        del sys.modules[name]


def test_activation_sets_everything_up_and_restores_it(tmp_path, packages, monkeypatch):
    monkeypatch.delenv("RTENV_X", raising=False)
    monkeypatch.setenv("RTENV_Y", "before")
    env = packages({"working_dir": write(tmp_path / "wd", {"rtenv_probe.py": "V = 'a'", "data.txt": "d"}),
                    "env_vars": {"RTENV_X": "1", "RTENV_Y": "during"}})
    cwd, path = os.getcwd(), list(sys.path)
    saved = _runtime_env.activate(env)
    try:
        import rtenv_probe
        assert rtenv_probe.V == "a"
        assert open("data.txt").read() == "d"
        assert (os.environ["RTENV_X"], os.environ["RTENV_Y"]) == ("1", "during")
        assert _runtime_env.current is env      # tasks submitted from here inherit it
    finally:
        _runtime_env.deactivate(saved)
    assert os.getcwd() == cwd and sys.path == path
    assert "RTENV_X" not in os.environ and os.environ["RTENV_Y"] == "before"
    assert _runtime_env.current is None


def test_switching_jobs_drops_modules_of_the_other_working_dir(tmp_path, packages):
    job_a = packages({"working_dir": write(tmp_path / "a", {"rtenv_probe.py": "V = 'a'"})})
    job_b = packages({"working_dir": write(tmp_path / "b", {"rtenv_probe.py": "V = 'b'"})})
    for env, expected in ((job_a, "a"), (job_a, "a"), (job_b, "b"), (job_a, "a")):
        saved = _runtime_env.activate(env)
        try:
            import rtenv_probe
            assert rtenv_probe.V == expected
        finally:
            _runtime_env.deactivate(saved)


def test_a_missing_package_fails_setup_clearly(packages):
    env = _runtime_env.PreparedEnv({"working_dir": "kv://pkg_" + "0" * 32 + ".zip"})
    with pytest.raises(_runtime_env.RuntimeEnvSetupError, match="not in the cluster's KV"):
        _runtime_env.activate(env)


# -- the job table ---------------------------------------------------------------------------------
class DictKV:
    def __init__(self) -> None:
        self.data: dict = {}

    def get(self, ns, key):
        return self.data.get((ns, key))

    def put(self, ns, key, value):
        self.data[(ns, key)] = value

    def delete(self, ns, key):
        self.data.pop((ns, key), None)

    def keys(self, ns):
        return [k for n, k in self.data if n == ns]

    def multi_get(self, ns, keys):
        return {k: self.data[(ns, k)] for k in keys if (ns, k) in self.data}


def test_jobs_left_running_by_a_previous_manager_are_marked_failed(tmp_path):
    kv = DictKV()
    kv.put(JOBS_NAMESPACE, "old", json.dumps({"submission_id": "old", "status": "RUNNING",
                                               "entrypoint": "x", "start_time": 1}).encode())
    m = JobManager(kv, session_dir=str(tmp_path), driver_env={})
    info = m.get_info("old")
    assert info["status"] == "FAILED" and "restarted" in info["message"]
    with pytest.raises(JobConflictError):
        m.submit("echo again", submission_id="old")
    with pytest.raises(JobNotFoundError, match="swarm job list"):
        m.get_info("nope")
    with pytest.raises(JobNotFoundError):
        m.stop("nope")


def test_submit_refuses_local_paths_and_missing_packages(tmp_path):
    m = JobManager(DictKV(), session_dir=str(tmp_path), driver_env={})
    with pytest.raises(ValueError, match="path on the submitting machine"):
        m.submit("python main.py", runtime_env={"working_dir": str(tmp_path)})
    with pytest.raises(ValueError, match="was not uploaded"):
        m.submit("python main.py", runtime_env={"working_dir": "kv://pkg_" + "1" * 32 + ".zip"})
    with pytest.raises(ValueError, match="may only use letters"):
        m.submit("true", submission_id="../evil")
    with pytest.raises(ValueError, match="do not match the package name"):
        m.put_package("pkg_" + "2" * 32 + ".zip", b"not it")
    assert m.list_jobs() == []
