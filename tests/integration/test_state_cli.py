"""``swarm list / summary / get / logs`` and ``swarm.util.state.get_log`` against a running cluster.

A known workload runs on the shared local cluster (tasks that print known lines, one that fails, an
actor that prints); every ``swarm`` command is a real subprocess that finds that cluster (by its
address here, by discovery in the last tests) and attaches to it.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
import types
import uuid
from pathlib import Path

import pytest

import swarm
from swarm._config import CONFIG
from swarm.util import state

SRC = str(Path(__file__).resolve().parents[2] / "src")
TIMEOUT = 60


def cli_env(**extra: str) -> dict:
    drop = ("SWARM_ADDRESS", "SWARM_TOKEN", "SWARM_TOKEN_FILE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


def swarm_cli(*args: str, address: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "swarm.cli", *args] + (["--address", address] if address else [])
    return subprocess.run(cmd, env=env or cli_env(), capture_output=True, text=True, timeout=TIMEOUT)


@swarm.remote
def state_cli_says(tag, i):
    print(f"state-cli {tag} line {i}")
    return i


@swarm.remote
def state_cli_fails(tag):
    print(f"state-cli {tag} about to fail")
    raise ValueError(f"failed {tag}")


@swarm.remote
class StateCliSpeaker:
    def say(self, text):
        print(text, flush=True)
        return text


_workload: dict = {}


@pytest.fixture
def work(cluster):
    """The workload, run once per cluster: its ids, the tag in every line it printed, the address."""
    address = swarm.api._worker.node_info["unix_address"]
    if _workload.get("address") != address:
        tag = uuid.uuid4().hex[:8]
        # one at a time, so that consecutive tasks share a worker (its log holds both)
        say_ids = []
        for i in range(4):
            ref = state_cli_says.remote(tag, i)
            assert swarm.get(ref, timeout=TIMEOUT) == i
            say_ids.append(ref.task_id())
        fail_ref = state_cli_fails.remote(tag)
        with pytest.raises(ValueError):
            swarm.get(fail_ref, timeout=TIMEOUT)
        speaker = StateCliSpeaker.remote()
        assert swarm.get(speaker.say.remote(f"speaker {tag} ready"), timeout=TIMEOUT)
        rows = {r["task_id"]: r for r in state.list_tasks(filters=[("name", "=", "state_cli_says")])}
        assert set(say_ids) <= set(rows), "the head should list every task this driver ran"
        _workload.clear()
        _workload.update(address=address, tag=tag, say_ids=say_ids, fail_id=fail_ref.task_id(),
                         speaker=speaker, actor_id=speaker._actor_id.hex(), rows=rows)
    return types.SimpleNamespace(**_workload)


def test_list_failed_tasks_shows_the_failed_one_with_its_error(work):
    r = swarm_cli("list", "tasks", "--filter", "state=FAILED", "--filter", "name=state_cli_fails",
                  address=work.address)
    assert r.returncode == 0, r.stderr
    rows = [ln for ln in r.stdout.splitlines()[1:] if ln.strip()]
    assert len(rows) == 1 and rows[0].startswith(work.fail_id), r.stdout
    assert f"ValueError: failed {work.tag}" in rows[0]
    everything_failed = swarm_cli("list", "tasks", "--filter", "state=failed", "--limit", "10000",
                                  address=work.address)
    assert work.fail_id in everything_failed.stdout
    assert not any(t in everything_failed.stdout for t in work.say_ids)


def test_list_with_json_and_yaml_formats_and_a_negated_filter(work):
    r = swarm_cli("list", "tasks", "--filter", "name=state_cli_says", "--filter", "state!=FAILED",
                  "--format", "json", "--limit", "10000", address=work.address)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert set(work.say_ids) <= {row["task_id"] for row in rows}
    assert all(row["state"] == "FINISHED" and row["name"] == "state_cli_says" for row in rows)
    yaml = pytest.importorskip("yaml")
    r = swarm_cli("list", "actors", "--filter", f"actor_id={work.actor_id}", "--format", "yaml",
                  address=work.address)
    assert r.returncode == 0, r.stderr
    [actor] = yaml.safe_load(r.stdout)
    assert actor["class_name"] == "StateCliSpeaker" and actor["state"] == "ALIVE"


def test_summary_tasks_counts_by_function_and_state(work):
    r = swarm_cli("summary", "tasks", "--format", "json", address=work.address)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)["summary"]
    assert summary["state_cli_says"]["FINISHED"] >= 4
    assert summary["state_cli_fails"]["FAILED"] >= 1
    table = swarm_cli("summary", "tasks", address=work.address).stdout
    line = next(ln for ln in table.splitlines() if ln.startswith("state_cli_fails"))
    assert "FAILED" in table.splitlines()[0] and line.split()[1] == str(summary["state_cli_fails"]["FAILED"])


def test_get_actor_by_id_prefix(work):
    # ids of one creator share their first half: a prefix through the counter is unique
    r = swarm_cli("get", "actor", work.actor_id[:32], address=work.address)
    assert r.returncode == 0, r.stderr
    fields = dict(ln.split(": ", 1) for ln in r.stdout.splitlines() if ": " in ln)
    assert fields["actor_id"] == work.actor_id and fields["class_name"] == "StateCliSpeaker"
    assert fields["state"] == "ALIVE"


def test_get_task_shows_the_error_with_its_traceback(work):
    r = swarm_cli("get", "task", work.fail_id, address=work.address)
    assert r.returncode == 0, r.stderr
    assert "state: FAILED" in r.stdout and "Traceback" in r.stdout
    assert f"ValueError: failed {work.tag}" in r.stdout


def test_unknown_and_ambiguous_ids_are_clear_errors(work):
    other = StateCliSpeaker.remote()   # actor ids begin with their creator's id: a short prefix is shared
    swarm.get(other.say.remote("second speaker"), timeout=TIMEOUT)
    r = swarm_cli("get", "actor", "f" * 40, address=work.address)
    assert r.returncode == 1 and "no actor whose id starts with" in r.stderr
    assert "swarm list actors" in r.stderr
    r = swarm_cli("get", "actor", work.actor_id[:16], address=work.address)
    assert r.returncode == 1 and "matches" in r.stderr and "give more of the id" in r.stderr
    r = swarm_cli("logs", "--task", "0" * 32, address=work.address)
    assert r.returncode == 1 and "no task whose id starts with" in r.stderr
    r = swarm_cli("list", "tasks", "--filter", "state", address=work.address)
    assert r.returncode == 1 and "KEY=VALUE" in r.stderr
    swarm.kill(other)


def test_logs_of_a_task_show_only_its_lines(work):
    # consecutive tasks that ran in the same worker: its log holds both, only the asked one is shown
    by_worker: dict = {}
    for i, task_id in enumerate(work.say_ids):
        by_worker.setdefault(work.rows[task_id]["worker_id"], []).append(i)
    shared = next((ix for ix in by_worker.values() if len(ix) > 1), None)
    assert shared, f"tasks run one at a time should have shared a worker: {by_worker}"
    first, second = shared[:2]
    r = swarm_cli("logs", "--task", work.say_ids[second], address=work.address)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"state-cli {work.tag} line {second}"]
    r = swarm_cli("logs", work.say_ids[first], address=work.address)   # the kind is guessed
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"state-cli {work.tag} line {first}"]


def test_logs_of_a_failed_task_and_of_an_actor(work):
    r = swarm_cli("logs", "--task", work.fail_id, address=work.address)
    assert r.stdout.splitlines() == [f"state-cli {work.tag} about to fail"], r.stderr
    r = swarm_cli("logs", "--actor", work.actor_id, address=work.address)
    assert r.returncode == 0, r.stderr
    assert f"speaker {work.tag} ready" in r.stdout.splitlines()


def read_line(proc: subprocess.Popen, timeout: float) -> str:
    """The next line the process prints, without waiting past the timeout."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"no line from {proc.args} within {timeout} s"
    return proc.stdout.readline().rstrip("\n")


def test_logs_follow_streams_what_an_actor_prints_later(cluster):
    speaker = StateCliSpeaker.remote()
    swarm.get(speaker.say.remote("follow: first"), timeout=TIMEOUT)
    address = swarm.api._worker.node_info["unix_address"]
    proc = subprocess.Popen([sys.executable, "-m", "swarm.cli", "logs", "--actor", speaker._actor_id.hex(),
                             "--follow", "--address", address], env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert read_line(proc, TIMEOUT) == "follow: first"
        swarm.get(speaker.say.remote("follow: printed later"), timeout=TIMEOUT)
        assert read_line(proc, TIMEOUT) == "follow: printed later"
        swarm.kill(speaker)   # its worker exits: following ends by itself
        assert proc.wait(TIMEOUT) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_get_log_from_python(work):
    assert list(state.get_log(task_id=work.say_ids[0])) == [f"state-cli {work.tag} line 0"]
    worker = state.get_worker(work.rows[work.say_ids[0]]["worker_id"][:10])   # alive or not: its log stays
    assert worker is not None and worker["worker_id"] == work.rows[work.say_ids[0]]["worker_id"]
    lines = list(state.get_log(worker_id=worker["worker_id"], tail=-1))
    mine = [ln for ln in lines if ln.startswith(f"state-cli {work.tag} line")]
    assert f"state-cli {work.tag} line 0" in mine and all("\x1e" not in ln for ln in lines)
    assert list(state.get_log(worker_id=worker["worker_id"], tail=1)) == lines[-1:]
    assert list(state.get_log(actor_id=work.actor_id)) == [f"speaker {work.tag} ready"]
    assert any(n.startswith("worker-") for names in state.list_logs().values() for n in names)
    with pytest.raises(ValueError, match="exactly one"):
        state.get_log(task_id=work.fail_id, actor_id=work.actor_id)
    with pytest.raises(swarm.exceptions.SwarmError, match="not a log file name"):   # the node refuses it
        list(state.get_log(filename="../cluster.json"))


def test_list_workers_shows_the_actors_worker(work):
    r = swarm_cli("list", "workers", "--filter", "state=ACTOR", "--format", "json", address=work.address)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    row = next(w for w in rows if w["actor_id"] == work.actor_id)
    assert row["name"] == "StateCliSpeaker" and row["stdout_file"].startswith(f"worker-{row['worker_id']}-")
    r = swarm_cli("get", "worker", row["worker_id"][:8], "--format", "json", address=work.address)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["actor_id"] == work.actor_id


def test_summary_objects_adds_up_by_place_and_owner(cluster):
    import numpy as np
    big = swarm.put(np.zeros(1_000_000))
    small = swarm.put(7)
    me = swarm.get_runtime_context().get_worker_id()
    summary = state.summarize_objects()
    assert summary["by_where"]["shared memory"]["size_bytes"] >= 8_000_000
    assert summary["by_where"]["inline"]["objects"] >= 1
    assert summary["by_owner"][me]["size_bytes"] >= 8_000_000 and summary["by_owner"][me]["objects"] >= 2
    # another process (the swarm command) sees what is in the node's shared memory, and whose it is
    r = swarm_cli("summary", "objects", "--format", "json",
                  address=swarm.api._worker.node_info["unix_address"])
    assert r.returncode == 0, r.stderr
    mine = json.loads(r.stdout)["by_owner"][me]
    assert mine["size_bytes"] >= 8_000_000 and mine["pid"] == os.getpid()
    del big, small


def test_the_cli_finds_a_cluster_that_init_started_or_says_how_to_start_one(isolated, tmp_path, monkeypatch):
    temp_dir = tmp_path / "swarm-temp"
    env = cli_env(SWARM_TEMP_DIR=str(temp_dir))
    r = swarm_cli("list", "nodes", env=env)
    assert r.returncode == 1 and "no swarm cluster is running" in r.stderr
    assert "swarm start --head" in r.stderr
    monkeypatch.setattr(CONFIG, "temp_dir", str(temp_dir))
    swarm.init(num_cpus=1)
    node_id = swarm.get_runtime_context().get_node_id()
    r = swarm_cli("list", "nodes", env=env)
    assert r.returncode == 0, r.stderr
    assert node_id in r.stdout
    swarm.shutdown()
    deadline = time.monotonic() + 10
    while list(temp_dir.glob("session_*/cluster.json")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not list(temp_dir.glob("session_*/cluster.json")), "the cluster's record outlived it"
    r = swarm_cli("summary", "tasks", env=env)
    assert r.returncode == 1 and "no swarm cluster is running" in r.stderr


def test_an_actors_log_leaves_out_what_its_worker_printed_before(isolated):
    swarm.init(num_cpus=1)   # one worker: the actor is placed on the one that ran the task

    @swarm.remote
    def chatty() -> int:
        print("printed by a plain task", flush=True)
        return os.getpid()

    @swarm.remote
    class Quiet:
        def say(self) -> int:
            print("printed by the actor", flush=True)
            return os.getpid()
    task_pid = swarm.get(chatty.remote(), timeout=TIMEOUT)
    deadline = time.monotonic() + TIMEOUT      # the driver hands the worker back after a short linger
    while not any(w["pid"] == task_pid and w["state"] == "IDLE" for w in state.list_workers()):
        assert time.monotonic() < deadline, state.list_workers()
        time.sleep(0.1)
    actor = Quiet.remote()
    assert swarm.get(actor.say.remote(), timeout=TIMEOUT) == task_pid   # the same worker process
    deadline = time.monotonic() + TIMEOUT
    while True:
        lines = list(state.get_log(actor_id=actor._actor_id.hex()))
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert lines == ["printed by the actor"]
