"""Logs and workers of other nodes: a task pinned to node B prints, and the driver on the head (from
Python) and the ``swarm`` command (found through the head's address) read its line from B's log."""

from __future__ import annotations

import json

from cluster_util import Cluster, wait_for

import swarm
from swarm.util import state

TIMEOUT = 60


@swarm.remote(resources={"b": 0.01})
def print_on_b(text):
    print(text)
    return swarm.get_runtime_context().get_node_id()


@swarm.remote(resources={"c": 0.01})
class PrinterOnC:
    def say(self, text):
        print(text, flush=True)
        return swarm.get_runtime_context().get_node_id()


def test_a_tasks_output_on_another_node_from_python_and_the_cli(driver: Cluster):
    ref = print_on_b.remote("printed on node b")
    assert swarm.get(ref, timeout=TIMEOUT) == driver.node_id("b")
    task_id = ref.task_id()
    row = wait_for(lambda: state.get_task(task_id), TIMEOUT, what="the task's row at the head")
    assert row["node_id"] == driver.node_id("b")
    assert list(state.get_log(task_id=task_id)) == ["printed on node b"]
    r = driver.cli("logs", "--task", task_id, "--address", driver.head_address)
    assert r.stdout.splitlines() == ["printed on node b"], r.stderr


def test_an_actors_log_and_workers_of_every_node(driver: Cluster):
    printer = PrinterOnC.remote()
    assert swarm.get(printer.say.remote("hello from c"), timeout=TIMEOUT) == driver.node_id("c")
    actor_id = printer._actor_id.hex()
    assert list(state.get_log(actor_id=actor_id)) == ["hello from c"]
    r = driver.cli("list", "workers", "--format", "json", "--address", driver.head_address)
    workers = json.loads(r.stdout)
    assert {driver.node_id(n) for n in ("head", "b", "c")} <= {w["node_id"] for w in workers}
    row = next(w for w in workers if w["actor_id"] == actor_id)
    assert row["node_id"] == driver.node_id("c") and row["state"] == "ACTOR"
    r = driver.cli("logs", "--worker", row["worker_id"], "--address", driver.head_address)
    assert "hello from c" in r.stdout.splitlines()
    files = state.list_logs(driver.node_id("b")[:6])
    assert list(files) == [driver.node_id("b")] and "node_manager.log" in files[driver.node_id("b")]
    swarm.kill(printer)
