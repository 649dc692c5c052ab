"""Jobs through the dashboard's REST API: a real head (`swarm start --head` with its dashboard), real
HTTP, real driver processes. The module has its own SWARM_TEMP_DIR, head port and dashboard port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from swarm._config import CONFIG
from swarm.exceptions import AuthenticationError
from swarm.job_submission import JobNotFoundError, JobStatus, JobSubmissionClient

SRC = str(Path(__file__).resolve().parents[2] / "src")
CLI = [sys.executable, "-m", "swarm.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


class Head:
    def __init__(self, temp_dir: Path) -> None:
        self.temp_dir = temp_dir
        self.port = free_port()
        self.dashboard_port = free_port()
        self.url = f"http://127.0.0.1:{self.dashboard_port}"
        self.token_file = str(temp_dir / "cluster_token")
        self.env = dict(os.environ, SWARM_TEMP_DIR=str(temp_dir),
                        PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
        for k in ("SWARM_ADDRESS", "SWARM_TOKEN", "SWARM_TOKEN_FILE", "SWARM_RUNTIME_ENV"):
            self.env.pop(k, None)

    def cli(self, *args: str, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(CLI + list(args), env=env or self.env, capture_output=True, text=True,
                              timeout=timeout)

    def client(self) -> JobSubmissionClient:
        return JobSubmissionClient(self.url, token_file=self.token_file)


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    h = Head(tmp_path_factory.mktemp("jobs"))
    out = h.cli("start", "--head", "--port", str(h.port), "--dashboard-port", str(h.dashboard_port),
                "--num-cpus", "2")
    assert out.returncode == 0, out.stderr
    assert h.url in out.stdout, out.stdout   # the dashboard (and its job API) is up
    node = json.loads(next((h.temp_dir / "nodes").glob("*.json")).read_text())
    try:
        yield h
    finally:
        h.cli("stop")
        for pid in (node["pid"], node.get("dashboard_pid")):
            if pid:
                wait_for(lambda p=pid: gone(p), 30, f"process {pid} to exit")


def run_job(client: JobSubmissionClient, **kwargs) -> tuple[str, str]:
    """Submit, follow the logs to the end; (submission id, everything the job printed)."""
    job_id = client.submit_job(**kwargs)
    output = "".join(client.tail_job_logs(job_id))
    return job_id, output


def gone(pid: int) -> bool:
    """Exited (a zombie waiting for whoever inherited it counts: it runs nothing)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def group_members(pgid: int) -> list[int]:
    out = []
    for p in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p.pid)
        except (ProcessLookupError, psutil.Error):
            pass
    return out


def test_job_followed_to_success_with_its_output(head):
    client = head.client()
    script = ("import os, swarm; swarm.init(); "
              "print('job', os.environ['SWARM_JOB_ID'], "
              "swarm.get(swarm.remote(lambda: 'task ran').remote()))")
    job_id, output = run_job(client, entrypoint=f'python -c "{script}"', metadata={"owner": "test"})
    assert f"job {job_id} task ran" in output
    info = client.get_job_info(job_id)
    assert info.status == JobStatus.SUCCEEDED and info.driver_exit_code == 0
    assert info.metadata == {"owner": "test"}
    assert info.end_time >= info.start_time
    assert f"job {job_id} task ran" in client.get_job_logs(job_id)
    assert job_id in [j.submission_id for j in client.list_jobs()]
    assert group_members(info.driver_pid) == []


def test_failing_job_says_why(head):
    client = head.client()
    job_id, output = run_job(client, entrypoint="echo about to fail; exit 3")
    info = client.get_job_info(job_id)
    assert info.status == JobStatus.FAILED and info.driver_exit_code == 3
    assert "exit code 3" in info.message and "about to fail" in info.message


def test_long_job_stopped_leaves_no_process(head, tmp_path):
    client = head.client()
    script = tmp_path / "long.py"
    script.write_text(textwrap.dedent("""
        import os, subprocess, time, swarm
        swarm.init()

        @swarm.remote
        class Holder:
            def pid(self):
                return os.getpid()

        h = Holder.remote()
        child = subprocess.Popen(["sleep", "1000"])       # in the job's process group
        print("ready", os.getpid(), child.pid, swarm.get(h.pid.remote()), flush=True)
        time.sleep(1000)
    """))
    job_id = client.submit_job(entrypoint=f"python {script}")
    line = wait_for(lambda: next((ln for ln in client.get_job_logs(job_id).splitlines()
                                  if ln.startswith("ready")), None), what="the job to start")
    driver, child, actor = (int(x) for x in line.split()[1:])
    info = client.get_job_info(job_id)
    assert info.status == JobStatus.RUNNING and info.driver_pid == driver
    assert client.stop_job(job_id) is True
    wait_for(lambda: client.get_job_status(job_id).is_terminal(), what="the job to stop")
    info = client.get_job_info(job_id)
    assert info.status == JobStatus.STOPPED, info.message
    assert group_members(driver) == [] and gone(driver) and gone(child)
    # the cluster frees the driver's actor once the driver is gone
    wait_for(lambda: gone(actor), what="the job's actor to exit")
    assert client.stop_job(job_id) is False    # already ended


def test_working_dir_and_env_vars_reach_driver_tasks_and_actors(head, tmp_path):
    wd = tmp_path / "project"
    wd.mkdir()
    (wd / "helper_lib.py").write_text(textwrap.dedent("""
        import swarm

        class Config:
            def __init__(self, n):
                self.n = n

        @swarm.remote
        def double(cfg):
            return cfg.n * 2
    """))
    (wd / "settings.txt").write_text("from the working dir")
    (wd / "main.py").write_text(textwrap.dedent("""
        import os, swarm, helper_lib
        swarm.init()
        print("driver", os.environ["GREETING"], open("settings.txt").read())

        @swarm.remote
        def in_task():
            import helper_lib   # only the working dir has it
            return os.environ["GREETING"], open("settings.txt").read(), helper_lib.Config(1).n

        @swarm.remote
        class InActor:
            def look(self):
                return os.environ["GREETING"], open("settings.txt").read()

        print("task", *swarm.get(in_task.remote()))
        actor = InActor.remote()
        print("actor", *swarm.get(actor.look.remote()))
        # a function of the working dir's module, with an argument of one of its classes
        print("module", swarm.get(helper_lib.double.remote(helper_lib.Config(21))))
        override = in_task.options(runtime_env={"env_vars": {"GREETING": "overridden"}})
        print("override", swarm.get(override.remote())[0])
    """))
    client = head.client()
    _, output = run_job(client, entrypoint="python main.py",
                        runtime_env={"working_dir": str(wd), "env_vars": {"GREETING": "hi"}})
    assert "driver hi from the working dir" in output
    assert "task hi from the working dir 1" in output
    assert "actor hi from the working dir" in output
    assert "module 42" in output
    assert "override overridden" in output


def test_py_modules_ship_a_local_package(head, tmp_path):
    lib = tmp_path / "shipped_pkg"
    lib.mkdir()
    (lib / "__init__.py").write_text("VALUE = 'from shipped_pkg'\n")
    script = "import swarm; swarm.init(); import shipped_pkg; print(swarm.get(swarm.remote(" \
             "lambda: __import__('shipped_pkg').VALUE).remote()))"
    _, output = run_job(head.client(), entrypoint=f'python -c "{script}"',
                        runtime_env={"py_modules": [str(lib)]})
    assert "from shipped_pkg" in output


def test_jobs_are_in_the_state_api(head):
    script = ("import json, os, swarm; swarm.init(); from swarm.util.state import list_jobs; "
              "print(json.dumps({j['submission_id']: j['status'] for j in list_jobs()}))")
    job_id, output = run_job(head.client(), entrypoint=f"python -c \"{script}\"")
    assert json.loads(output.strip().splitlines()[-1])[job_id] == "RUNNING"


def test_too_big_working_dir_is_refused_before_upload(head, tmp_path, monkeypatch):
    monkeypatch.setattr(CONFIG, "working_dir_max_bytes", 1024 * 1024)
    wd = tmp_path / "big"
    wd.mkdir()
    (wd / "main.py").write_text("print('never runs')")
    (wd / "dataset.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    client = head.client()
    before = len(client.list_jobs())
    with pytest.raises(ValueError) as e:
        client.submit_job(entrypoint="python main.py", runtime_env={"working_dir": str(wd)})
    msg = str(e.value)
    assert "2.0 MiB" in msg and "1.0 MiB limit" in msg and "dataset.bin" in msg and "excludes" in msg
    assert len(client.list_jobs()) == before
    # excluding the data makes it fit
    _, output = run_job(client, entrypoint="python main.py",
                        runtime_env={"working_dir": str(wd), "excludes": ["*.bin"]})
    assert "never runs" in output


def test_clear_errors_for_address_token_and_job_id(head, tmp_path):
    port = free_port()
    with pytest.raises(ConnectionError, match=f"127.0.0.1:{port}.*swarm start --head"):
        JobSubmissionClient(f"127.0.0.1:{port}")
    bad = tmp_path / "bad_token"
    bad.write_text("not-the-token")
    client = JobSubmissionClient(head.url, token_file=str(bad))   # reads are open on loopback
    with pytest.raises(AuthenticationError, match="cluster token"):
        client.submit_job(entrypoint="true")
    with pytest.raises(JobNotFoundError, match="no-such-job"):
        head.client().get_job_info("no-such-job")
    with pytest.raises(ValueError, match="already exists"):
        head.client().submit_job(entrypoint="true", submission_id="dup")
        head.client().submit_job(entrypoint="true", submission_id="dup")


def test_delete_forgets_a_finished_job(head):
    client = head.client()
    job_id, _ = run_job(client, entrypoint="echo done")
    assert client.delete_job(job_id) is True
    with pytest.raises(JobNotFoundError):
        client.get_job_info(job_id)


def test_cli_submit_follow_end_to_end(head, tmp_path):
    wd = tmp_path / "cli_project"
    wd.mkdir()
    (wd / "main.py").write_text("import os, swarm\nswarm.init()\n"
                                "print('cli says', os.environ['FROM_CLI'], "
                                "swarm.get(swarm.remote(lambda: os.environ['FROM_CLI']).remote()))\n")
    common = ["--address", head.url, "--token-file", head.token_file]
    out = head.cli("job", "submit", *common, "--working-dir", str(wd), "--runtime-env-json",
                   '{"env_vars": {"FROM_CLI": "yes"}}', "--follow", "--", "python", "main.py")
    assert out.returncode == 0, out.stderr
    assert "cli says yes yes" in out.stdout
    assert "SUCCEEDED" in out.stderr
    job_id = out.stderr.split("'")[1]
    status = head.cli("job", "status", *common, job_id)
    assert status.returncode == 0 and "SUCCEEDED" in status.stdout
    listing = head.cli("job", "list", *common)
    assert job_id in listing.stdout
    failing = head.cli("job", "submit", *common, "--follow", "--", "python", "-c", "import sys; sys.exit(7)")
    assert failing.returncode == 7, failing.stderr
    small = dict(head.env, SWARM_WORKING_DIR_MAX_BYTES="10")
    too_big = head.cli("job", "submit", *common, "--working-dir", str(wd), "--", "python", "main.py",
                       env=small)
    assert too_big.returncode == 1 and "SWARM_WORKING_DIR_MAX_BYTES" in too_big.stderr


def test_cli_finds_the_local_cluster_without_address(head):
    job = head.cli("job", "submit", "--follow", "--", "echo", "found it")   # node file + token file
    assert job.returncode == 0, job.stderr
    assert "found it" in job.stdout


def test_init_runtime_env_in_a_plain_driver(head, tmp_path):
    wd = tmp_path / "driver_code"
    wd.mkdir()
    (wd / "only_here.py").write_text("WHERE = 'shipped by init'\n")
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(f"""
        import os, swarm
        swarm.init(address="127.0.0.1:{head.port}",
                   runtime_env={{"working_dir": {str(wd)!r}, "env_vars": {{"FROM_INIT": "1"}}}})

        @swarm.remote
        def probe():
            import only_here
            return only_here.WHERE, os.environ["FROM_INIT"]

        print(*swarm.get(probe.remote()))
    """))
    out = subprocess.run([sys.executable, str(script)], env=head.env, capture_output=True, text=True,
                         timeout=120, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "shipped by init 1" in out.stdout


def test_job_table_survives_a_head_restart(tmp_path, start_redis):
    h = Head(tmp_path)
    redis_port = free_port()
    redis = start_redis(redis_port)
    start = ("start", "--head", "--port", str(h.port), "--dashboard-port", str(h.dashboard_port),
             "--num-cpus", "1", "--storage", f"redis://127.0.0.1:{redis_port}/0")
    try:
        assert h.cli(*start).returncode == 0
        client = h.client()
        done, _ = run_job(client, entrypoint="echo finished before the restart")
        running = client.submit_job(entrypoint="sleep 1000")
        wait_for(lambda: client.get_job_status(running) == JobStatus.RUNNING, what="the job to run")
        driver = client.get_job_info(running).driver_pid
        assert h.cli("stop").returncode == 0      # the dashboard stops its jobs on the way out
        assert gone(driver)
        assert h.cli(*start).returncode == 0
        client = h.client()
        jobs = {j.submission_id: j for j in client.list_jobs()}
        assert jobs[done].status == JobStatus.SUCCEEDED and jobs[done].entrypoint.startswith("echo")
        assert jobs[running].status == JobStatus.STOPPED and "shut down" in jobs[running].message
    finally:
        h.cli("stop")
        redis.terminate()
        redis.wait(10)
