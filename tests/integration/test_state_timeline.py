"""The state API (list_tasks, list_actors, list_objects, summaries) and swarm.timeline()."""

from __future__ import annotations

import json

import pytest

import swarm
from swarm.util import state

TIMEOUT = 60


@swarm.remote
def maybe_fail(x):
    if x == 3:
        raise ValueError("three is not allowed")
    return x


@swarm.remote
class Greeter:
    def hello(self):
        return "hi"


def test_list_tasks_has_finished_and_failed_with_traceback(cluster):
    refs = [maybe_fail.remote(i) for i in range(5)]
    swarm.wait(refs, num_returns=5, timeout=TIMEOUT)
    rows = [r for r in state.list_tasks() if r["name"] == "maybe_fail"]
    assert len(rows) >= 5
    failed = state.list_tasks(filters=[("state", "=", "FAILED")])
    assert any("three is not allowed" in r["error"] and "Traceback" in r["error"] for r in failed)
    assert all(r["duration_s"] is not None and r["pid"] for r in rows if r["state"] == "FINISHED")
    summary = state.summarize_tasks()["summary"]["maybe_fail"]
    assert summary.get("FAILED", 0) >= 1 and summary.get("FINISHED", 0) >= 4
    assert len(state.list_tasks(limit=2)) == 2


def test_list_actors_shows_state_and_death_cause(cluster):
    g = Greeter.remote()
    assert swarm.get(g.hello.remote(), timeout=TIMEOUT) == "hi"
    actor_id = g._actor_id.hex()
    row = state.get_actor(actor_id)
    assert row is not None and row["state"] == "ALIVE" and row["class_name"] == "Greeter"
    swarm.kill(g)
    with pytest.raises(swarm.exceptions.ActorDiedError):
        swarm.get(g.hello.remote(), timeout=TIMEOUT)
    import time
    deadline = time.monotonic() + 10
    while state.get_actor(actor_id)["state"] != "DEAD" and time.monotonic() < deadline:
        time.sleep(0.1)
    row = state.get_actor(actor_id)
    assert row["state"] == "DEAD" and "swarm.kill" in row["death_cause"]


def test_list_objects_reports_size_owner_and_refs(cluster):
    import numpy as np
    big = swarm.put(np.zeros(1_000_000))
    small = swarm.put(7)
    rows = {r["object_id"]: r for r in state.list_objects()}
    assert rows[big.hex()]["where"] == "shared memory" and rows[big.hex()]["size"] >= 8_000_000
    assert rows[small.hex()]["where"].startswith("inline") and rows[small.hex()]["local_refs"] == 1


def test_timeline_writes_a_chrome_trace(cluster, tmp_path):
    swarm.get([maybe_fail.remote(i) for i in (1, 2)], timeout=TIMEOUT)
    path = tmp_path / "trace.json"
    swarm.timeline(str(path))
    events = json.loads(path.read_text())
    mine = [e for e in events if e["name"] == "maybe_fail"]
    assert mine and all(e["ph"] == "X" and e["dur"] >= 0 and e["tid"].startswith("worker ") for e in mine)


@swarm.remote
def nested_parent(n):
    @swarm.remote
    def nested_child(i):
        return i
    return sum(swarm.get([nested_child.remote(i) for i in range(n)]))


@swarm.remote
def sleeper(seconds):
    import time
    time.sleep(seconds)
    return seconds


def test_list_tasks_is_cluster_wide_including_tasks_submitted_by_tasks(cluster):
    assert swarm.get(nested_parent.remote(3), timeout=TIMEOUT) == 3
    # the children were submitted by a worker, not by this driver: the head still lists them
    import time
    deadline = time.monotonic() + TIMEOUT
    while True:
        children = state.list_tasks(filters=[("name", "=", "nested_child")])
        if len(children) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(children) >= 3
    parent = state.list_tasks(filters=[("name", "=", "nested_parent")], limit=1)[0]
    assert {c["owner_id"] for c in children} != {parent["owner_id"]}
    assert state.get_task(children[0]["task_id"])["task_id"] == children[0]["task_id"]
    assert state.get_task("00" * 16) is None


def test_running_and_pending_tasks_are_listed_with_why(cluster):
    refs = [sleeper.remote(2.0) for _ in range(4)]     # 2 CPUs: two run, two wait
    import time
    time.sleep(0.5)
    live = [r for r in state.list_tasks() if r["name"] == "sleeper" and r["state"] in ("RUNNING", "PENDING")]
    assert len(live) == 4
    assert state.summarize_tasks()["summary"]["sleeper"].get("RUNNING", 0) + \
        state.summarize_tasks()["summary"]["sleeper"].get("PENDING", 0) == 4
    swarm.get(refs, timeout=TIMEOUT)


def test_bad_filter_is_refused_clearly(cluster):
    with pytest.raises(ValueError, match="bad filter"):
        state.list_tasks(filters=[("state", "~", "FAILED")])


def test_list_nodes_reports_load(cluster):
    import time
    deadline = time.monotonic() + TIMEOUT
    while not state.list_nodes()[0]["stats"] and time.monotonic() < deadline:
        time.sleep(0.2)
    node = state.list_nodes()[0]
    assert node["state"] == "ALIVE" and node["resources_total"]["CPU"] == 2
    stats = node["stats"]
    assert stats["store_capacity"] > 0 and stats["workers"] >= 2
    assert stats["mem_total"] > stats["mem_used"] > 0
