"""One program on a 3-node cluster: placement, spillback, strategies, objects moving between nodes,
actors anywhere, the CLI, authentication, and a node killed mid-workload.

The node-failure tests come last: they kill node C and start a new one in its place.
"""

from __future__ import annotations

import collections
import hashlib
import os
import stat
import time
from pathlib import Path

import numpy as np
import pytest
from cluster_util import alive, wait_for

import swarm
from swarm.exceptions import AuthenticationError

MB = 1 << 20


@swarm.remote
def where() -> str:
    return swarm.get_runtime_context().get_node_id()


@swarm.remote
def sleep_where(seconds: float) -> str:
    time.sleep(seconds)
    return swarm.get_runtime_context().get_node_id()


# -- the cluster as the API shows it ----------------------------------------------------------------

def test_nodes_lists_three_alive_nodes_with_ray_keys(driver):
    nodes = {n["NodeID"]: n for n in swarm.nodes()}
    assert len(nodes) == 3
    for label, ip, cpus, custom in (("head", "127.0.0.1", 1, {}), ("b", "127.0.0.2", 2, {"b": 1}),
                                    ("c", "127.0.0.3", 2, {"c": 1})):
        n = nodes[driver.node_id(label)]
        assert n["Alive"] is True
        assert n["NodeManagerAddress"] == ip
        assert n["IsHeadNode"] is (label == "head")
        assert n["Resources"]["CPU"] == cpus
        for k, v in custom.items():
            assert n["Resources"][k] == v
    total = swarm.cluster_resources()
    assert total["CPU"] == 5 and total["b"] == 1 and total["c"] == 1


def test_driver_runs_on_the_head(driver):
    assert swarm.get_runtime_context().get_node_id() == driver.node_id("head")


# -- placement --------------------------------------------------------------------------------------

@pytest.mark.parametrize("label", ["b", "c"])
def test_custom_resource_pins_task_to_its_node(driver, label):
    refs = [where.options(resources={label: 1}).remote() for _ in range(4)]
    assert set(swarm.get(refs, timeout=60)) == {driver.node_id(label)}


def test_fractional_custom_resources_share_a_node(driver):
    refs = [sleep_where.options(num_cpus=0.5, resources={"b": 0.25}).remote(0.2) for _ in range(4)]
    assert set(swarm.get(refs, timeout=60)) == {driver.node_id("b")}


def test_spillback_when_the_head_is_full(driver):
    # the head has 1 CPU: six 1-second tasks cannot all wait there
    refs = [sleep_where.options(num_cpus=1).remote(1.0) for _ in range(6)]
    ran_on = collections.Counter(swarm.get(refs, timeout=60))
    assert len(ran_on) > 1, ran_on
    assert set(ran_on) <= {driver.node_id(lb) for lb in ("head", "b", "c")}


def test_spread_strategy_uses_every_node(driver):
    refs = [sleep_where.options(scheduling_strategy="SPREAD").remote(0.3) for _ in range(6)]
    ran_on = collections.Counter(swarm.get(refs, timeout=60))
    assert set(ran_on) == {driver.node_id(lb) for lb in ("head", "b", "c")}, ran_on


def test_spread_strategy_for_actors(driver):
    @swarm.remote(num_cpus=0)
    class Where:
        def node(self) -> str:
            return swarm.get_runtime_context().get_node_id()

    actors = [Where.options(scheduling_strategy="SPREAD").remote() for _ in range(3)]
    try:
        ran_on = swarm.get([a.node.remote() for a in actors], timeout=60)
        assert set(ran_on) == {driver.node_id(lb) for lb in ("head", "b", "c")}, ran_on
    finally:
        for a in actors:
            swarm.kill(a)


@pytest.mark.parametrize("label", ["head", "b", "c"])
def test_node_affinity_hard(driver, label):
    from swarm.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    strategy = NodeAffinitySchedulingStrategy(driver.node_id(label), soft=False)
    refs = [where.options(scheduling_strategy=strategy).remote() for _ in range(3)]
    assert set(swarm.get(refs, timeout=60)) == {driver.node_id(label)}


def test_node_affinity_for_an_actor(driver):
    from swarm.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @swarm.remote(num_cpus=0)
    class Where:
        def node(self) -> str:
            return swarm.get_runtime_context().get_node_id()

    a = Where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(driver.node_id("b"),
                                                                         soft=False)).remote()
    try:
        assert swarm.get(a.node.remote(), timeout=60) == driver.node_id("b")
    finally:
        swarm.kill(a)


def test_node_affinity_soft_to_a_missing_node_runs_elsewhere(driver):
    from swarm.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    strategy = NodeAffinitySchedulingStrategy("00" * 8, soft=True)
    assert swarm.get(where.options(scheduling_strategy=strategy).remote(), timeout=60) in {
        driver.node_id(lb) for lb in ("head", "b", "c")}


def test_node_affinity_hard_to_a_missing_node_fails_clearly(driver):
    from swarm.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    missing = "ab" * 8
    ref = where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(missing, soft=False)).remote()
    with pytest.raises(swarm.exceptions.SwarmError) as info:
        swarm.get(ref, timeout=30)
    assert not isinstance(info.value, swarm.exceptions.GetTimeoutError)
    assert missing in str(info.value)


@swarm.remote
def sleep_pid(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def test_slow_tasks_after_fast_ones_of_the_same_shape_run_in_parallel(driver):
    swarm.get([where.remote() for _ in range(50)], timeout=60)       # fast: ~0.1 ms each
    time.sleep(0.3)                                                  # their idle leases are returned
    start = time.monotonic()
    pids = swarm.get([sleep_pid.remote(0.4) for _ in range(10)], timeout=60)
    elapsed = time.monotonic() - start
    # 5 CPUs in the cluster: ~1 s; one after another on one worker: 4 s
    assert len(set(pids)) >= 3 and elapsed < 3.0, (len(set(pids)), elapsed)


# -- objects between nodes --------------------------------------------------------------------------

@swarm.remote(resources={"b": 1})
def produce_on_b(nbytes: int, seed: int) -> np.ndarray:
    arr = np.frombuffer(np.random.default_rng(seed).bytes(nbytes), dtype=np.uint8)
    return arr


@swarm.remote(resources={"b": 1})
def checksum_on_b(arr: np.ndarray) -> str:
    return hashlib.sha256(arr).hexdigest()


@swarm.remote(resources={"c": 1})
def consume_on_c(arr: np.ndarray) -> dict:
    from swarm import api
    return {"sha": hashlib.sha256(arr).hexdigest(), "size": arr.nbytes,
            "node": swarm.get_runtime_context().get_node_id(),
            "transfers_in": api._worker.transfers_in,
            "store_used": api._cluster_info()["object_store"]["used"]}


def test_200mb_object_produced_on_b_consumed_on_c(driver):
    nbytes = 200 * MB
    ref = produce_on_b.remote(nbytes, 7)
    sha_b = swarm.get(checksum_on_b.remote(ref), timeout=120)
    out = swarm.get(consume_on_c.remote(ref), timeout=120)
    assert out["node"] == driver.node_id("c")
    assert out["size"] == nbytes
    assert out["sha"] == sha_b
    assert out["transfers_in"] >= 1, "the consumer on C did not pull the object"
    assert out["store_used"] >= nbytes, "the pulled copy is not in C's shared memory"

    # the driver (on the head) pulls it too: a counted transfer, and the same bytes
    before = swarm.api._worker.transfers_in
    arr = swarm.get(ref, timeout=120)
    assert swarm.api._worker.transfers_in == before + 1
    assert arr.nbytes == nbytes and not arr.flags.writeable
    assert hashlib.sha256(arr).hexdigest() == sha_b
    assert swarm.api._cluster_info()["object_store"]["used"] >= nbytes
    del arr, ref


def test_put_on_driver_read_on_other_nodes(driver):
    value = np.arange(2 * MB // 8, dtype=np.int64)      # large: lives in the head's store

    @swarm.remote
    def total(a: np.ndarray) -> tuple:
        return int(a.sum()), swarm.get_runtime_context().get_node_id()

    ref = swarm.put(value)
    for label in ("b", "c"):
        s, node = swarm.get(total.options(resources={label: 0.01}).remote(ref), timeout=60)
        assert (s, node) == (int(value.sum()), driver.node_id(label))


def test_refs_nested_in_containers_are_borrowed_across_nodes(driver):
    @swarm.remote(resources={"c": 0.01})
    def make() -> np.ndarray:
        return np.full(300_000, 3, dtype=np.int64)

    @swarm.remote(resources={"b": 0.01})
    def read(box: list) -> int:
        return int(swarm.get(box[0]).sum())

    assert swarm.get(read.remote([make.remote()]), timeout=60) == 900_000


# -- actors -----------------------------------------------------------------------------------------

@swarm.remote(resources={"c": 1})
class Counter:
    def __init__(self) -> None:
        self.n = 0

    def incr(self) -> int:
        self.n += 1
        return self.n

    def node(self) -> str:
        return swarm.get_runtime_context().get_node_id()


@swarm.remote(resources={"b": 0.5})
def call_by_name(name: str) -> tuple:
    h = swarm.get_actor(name)
    return swarm.get(h.incr.remote()), swarm.get_runtime_context().get_node_id()


@swarm.remote(resources={"b": 0.5})
def call_handle(handles: list) -> int:
    return swarm.get(handles[0].incr.remote())


def test_named_actor_on_c_called_from_driver_and_from_b(driver):
    a = Counter.options(name="counter-on-c").remote()
    try:
        assert swarm.get(a.node.remote(), timeout=60) == driver.node_id("c")
        assert swarm.get(a.incr.remote(), timeout=60) == 1
        n, node = swarm.get(call_by_name.remote("counter-on-c"), timeout=60)
        assert (n, node) == (2, driver.node_id("b"))
        assert swarm.get(call_handle.remote([a]), timeout=60) == 3
        again = swarm.get_actor("counter-on-c")
        assert swarm.get(again.incr.remote(), timeout=60) == 4
    finally:
        swarm.kill(a)
    with pytest.raises(swarm.exceptions.ActorDiedError):
        swarm.get(a.incr.remote(), timeout=30)
    wait_for(lambda: _no_actor("counter-on-c"), 10, what="the killed actor's name to be released")
    # its {"c": 1} is free again
    assert swarm.get(where.options(resources={"c": 1}).remote(), timeout=60) == driver.node_id("c")


def _no_actor(name: str) -> bool:
    try:
        swarm.get_actor(name)
    except ValueError:
        return True
    return False


# -- the CLI ----------------------------------------------------------------------------------------

def test_status_lists_the_head_resources(driver):
    out = driver.cli("status").stdout
    assert driver.node_id("head") in out
    assert "CPU" in out
    assert "object store" in out


def test_status_lists_every_node_and_custom_resources(driver):
    out = driver.cli("status").stdout
    for label in ("head", "b", "c"):
        assert driver.node_id(label) in out
    assert "b" in {line.split(":")[0].strip() for line in out.splitlines()}
    assert "c" in {line.split(":")[0].strip() for line in out.splitlines()}


def test_list_objects_covers_every_node(driver):
    from swarm.util import state
    ref = produce_on_b.remote(2 * MB, 3)
    swarm.wait([ref], timeout=120)
    rows = [r for r in state.list_objects() if r.get("object_id") == ref.hex()]
    assert rows and rows[0]["where"] == "shared memory" and rows[0]["node_id"] == driver.node_id("b")
    assert rows[0]["size"] >= 2 * MB
    del ref


def test_memory_lists_objects(driver):
    ref = swarm.put(np.zeros(1 * MB, dtype=np.uint8))
    out = driver.cli("memory").stdout
    assert ref.hex() in out
    del ref


def test_second_head_on_the_same_machine_is_refused(driver):
    proc = driver.cli("start", "--head", "--port", "0", "--num-cpus", "1", check=False)
    assert proc.returncode != 0
    assert "already running" in proc.stderr


def test_stop_with_nothing_running_exits_zero(driver, tmp_path):
    env = dict(driver.env, SWARM_TEMP_DIR=str(tmp_path))
    proc = driver.cli("stop", env=env)
    assert "no swarm node" in proc.stdout


def test_init_auto_and_swarm_address_find_the_cluster(driver, monkeypatch):
    swarm.shutdown()                       # a driver detaches; the cluster keeps running
    swarm.init(address="auto")
    assert swarm.get_runtime_context().get_node_id() == driver.node_id("head")
    assert len(driver.alive_node_ids()) == 3
    swarm.shutdown()
    monkeypatch.setenv("SWARM_ADDRESS", driver.head_address)
    swarm.init()                           # attaches to SWARM_ADDRESS instead of starting a cluster
    assert swarm.get_runtime_context().get_node_id() == driver.node_id("head")
    assert swarm.get(where.options(resources={"c": 1}).remote(), timeout=60) == driver.node_id("c")


# -- security ---------------------------------------------------------------------------------------

def test_token_file_is_private(driver):
    mode = stat.S_IMODE(os.stat(driver.token_file).st_mode)
    assert mode == 0o600, oct(mode)
    assert len(driver.token_file.read_text().strip()) >= 32
    assert driver.nodes["head"]["token_file"] == str(driver.token_file)


def test_wrong_token_gives_authentication_error(driver, monkeypatch):
    swarm.shutdown()
    monkeypatch.setenv("SWARM_TOKEN", "wrong")
    with pytest.raises(AuthenticationError) as info:
        swarm.init(address=driver.head_address)
    assert "token" in str(info.value)
    assert not swarm.is_initialized()
    monkeypatch.delenv("SWARM_TOKEN")
    driver.attach()
    assert swarm.get(where.remote(), timeout=30) == driver.node_id("head")


def test_connect_with_wrong_token_to_every_node(driver):
    from swarm.core import connection
    for label in ("head", "b", "c"):
        with pytest.raises(AuthenticationError):
            connection.connect(driver.nodes[label]["tcp_address"], b"wrong")
    right = driver.token_file.read_text().strip().encode()
    connection.connect(driver.nodes["b"]["tcp_address"], right).close()


def test_object_server_requires_the_token(driver):
    from swarm.core import connection
    transfer = swarm.api._cluster_info()["transfer_address"]
    assert transfer.startswith("tcp:127.0.0.1:")
    with pytest.raises(AuthenticationError):
        connection.connect(transfer, b"wrong")


def test_join_with_wrong_token_fails_cleanly(driver):
    env = dict(driver.env, SWARM_TOKEN="wrong")
    before = set(driver.node_files())
    proc = driver.cli("start", "--address", driver.head_address, "--node-ip-address", "127.0.0.4",
                      "--num-cpus", "1", env=env, check=False)
    assert proc.returncode != 0
    assert "token" in proc.stderr
    assert set(driver.node_files()) == before
    assert len(driver.alive_node_ids()) == 3


def test_cli_with_wrong_token_prints_a_message_not_a_traceback(driver):
    env = dict(driver.env, SWARM_TOKEN="wrong")
    status = driver.cli("status", env=env, check=False)
    assert status.returncode != 0 and "token" in status.stderr
    assert "Traceback" not in status.stderr
    join = driver.cli("start", "--address", driver.head_address, "--node-ip-address", "127.0.0.4",
                      "--num-cpus", "1", env=env, check=False)
    assert join.returncode != 0 and "token" in join.stderr
    assert "Traceback" not in join.stderr


# -- node failure (these replace node C: keep them last) --------------------------------------------

@swarm.remote(max_retries=3)
def square_slowly(i: int, marks: str, seconds: float = 0.5) -> int:
    node = swarm.get_runtime_context().get_node_id()
    Path(marks, f"{i}-{node}-{os.getpid()}").touch()
    time.sleep(seconds)
    return i * i


def test_kill_node_mid_workload(driver, tmp_path):
    from swarm.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    c = driver.node_id("c")
    marks = tmp_path / "marks"
    marks.mkdir()
    # every third task prefers C (soft affinity: after C dies it may run anywhere), so C is busy
    on_c = square_slowly.options(scheduling_strategy=NodeAffinitySchedulingStrategy(c, soft=True))
    refs = [(on_c if i % 3 == 0 else square_slowly).remote(i, str(marks)) for i in range(20)]
    wait_for(lambda: any(f"-{c}-" in m for m in os.listdir(marks)), 30, 0.02, "a task running on C")
    tree = driver.kill_node("c")
    killed_at = time.monotonic()

    wait_for(lambda: c not in driver.alive_node_ids(), 10, 0.1, "nodes() to show C dead")
    assert time.monotonic() - killed_at < 10
    node = next(n for n in swarm.nodes() if n["NodeID"] == c)
    assert node["Alive"] is False

    assert swarm.get(refs, timeout=90) == [i * i for i in range(20)]
    ran_on = {m.split("-")[1] for m in os.listdir(marks)}
    assert c in ran_on and ran_on - {c}, ran_on
    assert swarm.cluster_resources()["CPU"] == 3
    assert "c" not in swarm.cluster_resources()

    # nothing of node C stays behind: its workers and object server exit with it
    wait_for(lambda: not any(alive(p) for p in tree), 15, 0.2, f"C's processes {sorted(tree)} to exit")


def test_task_for_a_dead_nodes_resource_waits_for_a_new_node(driver):
    old = driver.node_id("c")
    if old in driver.alive_node_ids():
        pytest.skip("node C is alive (the kill test did not run)")
    ref = where.options(resources={"c": 1}).remote()
    ready, _ = swarm.wait([ref], timeout=1.0)
    assert not ready                              # waits: no alive node has "c"
    driver.start_node("c")                        # a node that comes back joins as a new node
    new = driver.node_id("c")
    assert new != old
    driver.wait_alive(["head", "b", "c"])
    assert swarm.get(ref, timeout=60) == new
    assert swarm.get(where.options(resources={"c": 1}).remote(), timeout=60) == new
    nodes = {n["NodeID"]: n["Alive"] for n in swarm.nodes()}
    assert nodes[old] is False and nodes[new] is True


def test_node_died_error_without_retries(driver, tmp_path):
    """A task that cannot be retried fails with NodeDiedError naming the node."""
    from swarm.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    c = driver.node_id("c")
    marks = tmp_path / "marks"
    marks.mkdir()
    strategy = NodeAffinitySchedulingStrategy(c, soft=False)
    ref = square_slowly.options(max_retries=0, scheduling_strategy=strategy).remote(3, str(marks))
    wait_for(lambda: os.listdir(marks), 30, 0.02, "the task to start on C")
    driver.kill_node("c")
    with pytest.raises(swarm.exceptions.NodeDiedError) as info:
        swarm.get(ref, timeout=30)
    assert c in str(info.value)
    wait_for(lambda: c not in driver.alive_node_ids(), 10, 0.1, "nodes() to show C dead")
    driver.start_node("c")
    driver.wait_alive(["head", "b", "c"])


def test_tasks_queued_at_a_dead_node_run_elsewhere(driver, tmp_path):
    from swarm.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    c = driver.node_id("c")
    marks = tmp_path / "marks"
    marks.mkdir()
    try:
        # C's two CPUs are busy for a long time...
        hard = NodeAffinitySchedulingStrategy(c, soft=False)
        blockers = [square_slowly.options(max_retries=0, scheduling_strategy=hard).remote(i, str(marks), 60)
                    for i in range(2)]
        wait_for(lambda: len(os.listdir(marks)) == 2, 30, 0.02, "both blockers to start on C")
        # ...so these wait in C's queue (soft affinity: they may run anywhere once C is gone)
        soft = NodeAffinitySchedulingStrategy(c, soft=True)
        refs = [sleep_pid.options(scheduling_strategy=soft).remote(0.1) for _ in range(6)]
        time.sleep(0.5)
        driver.kill_node("c")
        for b in blockers:
            with pytest.raises(swarm.exceptions.NodeDiedError):
                swarm.get(b, timeout=30)
        assert len(swarm.get(refs, timeout=10)) == 6
    finally:
        if c == driver.node_id("c"):
            wait_for(lambda: c not in driver.alive_node_ids(), 10, 0.1, "nodes() to show C dead")
            driver.start_node("c")
            driver.wait_alive(["head", "b", "c"])
