"""Integration tests of remote functions through the public API (``import swarm as ray``).

Most tests share the session cluster (``cluster`` fixture: 2 CPUs, 1 GPU, resource ``custom: 1``).
Tasks that must stay running while the test looks at them wait on a *gate file* (created by the test
when it is done), so nothing depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import os
import re
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import swarm
from swarm.exceptions import (
    GetTimeoutError,
    SerializationError,
    TaskError,
    TaskUnschedulableError,
)

TIMEOUT = 60


# -- task functions (module level) ------------------------------------------------------------------

@swarm.remote
def identity(x):
    return x


@swarm.remote
def inc(x):
    return x + 1


@swarm.remote
def add(a, b):
    return a + b


@swarm.remote
def wait_for_file(path, timeout=TIMEOUT):
    """Runs until ``path`` exists (a gate the test opens), then returns the path."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {path} never opened")
        time.sleep(0.01)
    return path


@swarm.remote(num_returns=2)
def two_values(x):
    return x, x * 10


@swarm.remote
def three_values(x):
    return x, x + 1, x + 2


@swarm.remote
def fails_with_value_error(msg):
    raise ValueError(msg)


@swarm.remote
def fails_for_named_option():
    raise KeyError("boom")


@swarm.remote
def describe_nested(container):
    """Reports the types of what arrived inside a container and the values behind its refs."""
    if isinstance(container, dict):
        items = list(container.values())
    else:
        items = list(container)
    kinds = [isinstance(r, swarm.ObjectRef) for r in items]
    values = swarm.get(items, timeout=TIMEOUT)
    return kinds, values


@swarm.remote
def fib(n):
    if n < 2:
        return n
    return sum(swarm.get([fib.remote(n - 1), fib.remote(n - 2)], timeout=TIMEOUT))


@swarm.remote
def square(x):
    return x * x


@swarm.remote
def fan_out_parent(base, n):
    return sum(swarm.get([square.remote(base + i) for i in range(n)], timeout=TIMEOUT))


@swarm.remote
def cuda_visible_devices():
    return os.environ.get("CUDA_VISIBLE_DEVICES")


@swarm.remote(resources={"custom": 1})
def needs_custom():
    return "custom ok"


@swarm.remote
def timed_sleep(seconds):
    start = time.time()
    time.sleep(seconds)
    return start, time.time()


@swarm.remote
def task_context():
    ctx = swarm.get_runtime_context()
    return ctx.get_task_id(), ctx.get_job_id(), ctx.get_node_id(), ctx.get_worker_id()


@swarm.remote
def getpid():
    return os.getpid()


@swarm.remote
def mutate(lst):
    lst.append("mutated")
    return lst


@swarm.remote
def return_lock():
    return threading.Lock()


@swarm.remote
def noop(*args, **kwargs):
    return None


@swarm.remote
def raise_given(cls, *args):
    raise cls(*args)


@swarm.remote
def double(x):
    return 2 * x


@swarm.remote
def sum_of_doubles(n):
    return sum(swarm.get([double.remote(i) for i in range(n)], timeout=TIMEOUT))


@swarm.remote
def countdown(n):
    return 0 if n == 0 else 1 + swarm.get(countdown.remote(n - 1), timeout=TIMEOUT)


@swarm.remote
def array_total(a):
    return int(a.sum())


class _Writer:
    def __init__(self):
        self._lock = threading.Lock()


class _Holder:
    def __init__(self):
        self.writer = _Writer()


def _gate(tmp_path, name="gate"):
    return str(tmp_path / name)


def _open(path):
    with open(path, "w"):
        pass


# -- submission and get -----------------------------------------------------------------------------

def test_remote_returns_object_ref_immediately(cluster, tmp_path):
    gate = _gate(tmp_path)
    ref = wait_for_file.remote(gate)  # would block forever if .remote() waited for the result
    try:
        assert isinstance(ref, swarm.ObjectRef)
        ready, not_ready = swarm.wait([ref], timeout=0.1)
        assert ready == [] and not_ready == [ref]
    finally:
        _open(gate)
    assert swarm.get(ref, timeout=TIMEOUT) == gate


def test_get_single_ref_and_list(cluster):
    assert swarm.get(inc.remote(1), timeout=TIMEOUT) == 2
    refs = [inc.remote(i) for i in range(10)]
    values = swarm.get(refs, timeout=TIMEOUT)
    assert isinstance(values, list)
    assert values == list(range(1, 11))
    assert swarm.get([], timeout=TIMEOUT) == []


def test_kwargs_are_passed(cluster):
    assert swarm.get(add.remote(a=2, b=3), timeout=TIMEOUT) == 5
    assert swarm.get(add.remote(2, b=swarm.put(40)), timeout=TIMEOUT) == 42


def test_num_returns_in_decorator(cluster):
    refs = two_values.remote(3)
    assert isinstance(refs, list) and len(refs) == 2
    assert all(isinstance(r, swarm.ObjectRef) for r in refs)
    assert swarm.get(refs, timeout=TIMEOUT) == [3, 30]


def test_num_returns_in_options(cluster):
    refs = three_values.options(num_returns=3).remote(7)
    assert len(refs) == 3 and all(isinstance(r, swarm.ObjectRef) for r in refs)
    assert len(set(refs)) == 3
    assert swarm.get(refs, timeout=TIMEOUT) == [7, 8, 9]
    # options() does not change the function itself
    assert swarm.get(three_values.remote(1), timeout=TIMEOUT) == (1, 2, 3)


def test_options_name_is_used_in_errors(cluster):
    ref = fails_for_named_option.options(name="my_custom_task_name").remote()
    with pytest.raises(TaskError) as info:
        swarm.get(ref, timeout=TIMEOUT)
    assert "my_custom_task_name" in str(info.value)


def test_calling_remote_function_directly_raises(cluster):
    with pytest.raises(TypeError, match=r"\.remote\("):
        inc(1)


@pytest.mark.parametrize("bad", [5, "not a ref", None, [1, 2]])
def test_get_of_non_ref_raises_type_error(cluster, bad):
    with pytest.raises(TypeError, match="ObjectRef"):
        swarm.get(bad)


def test_get_timeout_raises_get_timeout_error(cluster, tmp_path):
    gate = _gate(tmp_path)
    ref = wait_for_file.remote(gate)
    try:
        with pytest.raises(GetTimeoutError) as info:
            swarm.get(ref, timeout=0.5)
        assert isinstance(info.value, TimeoutError)
        with pytest.raises(TimeoutError):  # plain `except TimeoutError` works too
            swarm.get([ref], timeout=0.1)
    finally:
        _open(gate)
    assert swarm.get(ref, timeout=TIMEOUT) == gate  # the timeout did not break the ref


# -- wait -----------------------------------------------------------------------------------------

def test_wait_ready_in_order_given(cluster):
    refs = [inc.remote(i) for i in range(6)]
    swarm.get(refs, timeout=TIMEOUT)
    shuffled = [refs[i] for i in (4, 1, 5, 0, 3, 2)]
    ready, not_ready = swarm.wait(shuffled, num_returns=6, timeout=TIMEOUT)
    assert ready == shuffled and not_ready == []
    ready, not_ready = swarm.wait(shuffled, num_returns=2, timeout=TIMEOUT)
    assert ready == shuffled[:2] and not_ready == shuffled[2:]


def test_wait_num_returns_and_not_ready(cluster, tmp_path):
    gate = _gate(tmp_path)
    slow = wait_for_file.remote(gate)
    try:
        fast = [inc.remote(i) for i in range(3)]
        refs = [fast[0], slow, fast[1], fast[2]]
        ready, not_ready = swarm.wait(refs, num_returns=3, timeout=TIMEOUT)
        assert ready == [fast[0], fast[1], fast[2]]
        assert not_ready == [slow]
        # waiting for more than can be ready gives up at the timeout with what is ready
        ready, not_ready = swarm.wait(refs, num_returns=4, timeout=0.3)
        assert ready == [fast[0], fast[1], fast[2]]
        assert not_ready == [slow]
    finally:
        _open(gate)
    ready, not_ready = swarm.wait(refs, num_returns=4, timeout=TIMEOUT)
    assert ready == refs and not_ready == []


def test_wait_returns_early_when_enough_ready(cluster, tmp_path):
    gate = _gate(tmp_path)
    slow = wait_for_file.remote(gate)
    try:
        fast = inc.remote(1)
        # the slow ref comes first: if wait waited for everything, it would be the one returned
        ready, not_ready = swarm.wait([slow, fast], num_returns=1, timeout=TIMEOUT)
        assert ready == [fast]
        assert not_ready == [slow]
    finally:
        _open(gate)
    swarm.get(slow, timeout=TIMEOUT)


def test_wait_timeout_zero_and_small(cluster, tmp_path):
    gate = _gate(tmp_path)
    slow = wait_for_file.remote(gate)
    try:
        assert swarm.wait([slow], timeout=0) == ([], [slow])
        assert swarm.wait([slow], num_returns=1, timeout=0.2) == ([], [slow])
    finally:
        _open(gate)
    assert swarm.wait([slow], timeout=TIMEOUT) == ([slow], [])


def test_wait_rejects_bad_arguments(cluster):
    ref = inc.remote(1)
    with pytest.raises(ValueError):
        swarm.wait([ref], num_returns=2)
    with pytest.raises(TypeError):
        swarm.wait([ref, 3])
    swarm.get(ref, timeout=TIMEOUT)


# -- arguments and dependencies ---------------------------------------------------------------------

def test_top_level_ref_argument_is_resolved(cluster):
    assert swarm.get(identity.remote(swarm.put(41)), timeout=TIMEOUT) == 41
    assert swarm.get(inc.remote(inc.remote(1)), timeout=TIMEOUT) == 3
    value = swarm.get(identity.remote(swarm.put({"a": [1, 2]})), timeout=TIMEOUT)
    assert value == {"a": [1, 2]}
    assert swarm.get(add.remote(a=swarm.put(1), b=inc.remote(1)), timeout=TIMEOUT) == 3


def test_chain_of_dependent_tasks(cluster):
    ref = swarm.put(0)
    for _ in range(50):
        ref = inc.remote(ref)
    assert swarm.get(ref, timeout=TIMEOUT) == 50


def test_task_waits_for_its_argument(cluster, tmp_path):
    gate = _gate(tmp_path)
    upstream = wait_for_file.remote(gate)
    downstream = identity.remote(upstream)
    try:
        # the dependent cannot have run: its argument does not exist yet
        assert swarm.wait([downstream], timeout=0.3) == ([], [downstream])
    finally:
        _open(gate)
    assert swarm.get(downstream, timeout=TIMEOUT) == gate


def test_refs_nested_in_list_and_dict_arrive_as_refs(cluster):
    a, b = swarm.put(1), inc.remote(1)
    kinds, values = swarm.get(describe_nested.remote([a, b]), timeout=TIMEOUT)
    assert kinds == [True, True]
    assert values == [1, 2]
    kinds, values = swarm.get(describe_nested.remote({"x": a, "y": b}), timeout=TIMEOUT)
    assert kinds == [True, True]
    assert values == [1, 2]


def test_nested_tasks_recursive_fib(cluster):
    assert swarm.get(fib.remote(10), timeout=TIMEOUT) == 55


def test_nested_fan_out_does_not_deadlock(cluster):
    # 4 parents block in get on 2 CPUs: only possible if a blocked worker gives its CPU back
    parents = [fan_out_parent.remote(p * 20, 20) for p in range(4)]
    expected = [sum((p * 20 + i) ** 2 for i in range(20)) for p in range(4)]
    assert swarm.get(parents, timeout=TIMEOUT) == expected


def test_task_using_remote_function_already_called_by_driver(cluster):
    assert swarm.get(double.remote(4), timeout=TIMEOUT) == 8
    assert swarm.get(sum_of_doubles.remote(5), timeout=TIMEOUT) == 20


def test_recursive_task_after_reinit(isolated):
    swarm.init(num_cpus=2)
    assert swarm.get(countdown.remote(3), timeout=TIMEOUT) == 3
    swarm.shutdown()
    swarm.init(num_cpus=2)
    assert swarm.get(countdown.remote(3), timeout=TIMEOUT) == 3


# -- errors ---------------------------------------------------------------------------------------

def test_task_exception_reraised_at_get(cluster):
    ref = fails_with_value_error.remote("bad input 123")
    with pytest.raises(ValueError) as info:
        swarm.get(ref, timeout=TIMEOUT)
    err = info.value
    assert isinstance(err, TaskError)
    assert isinstance(err, swarm.exceptions.RayTaskError)
    assert isinstance(err, swarm.exceptions.SwarmError)
    msg = str(err)
    assert "fails_with_value_error" in msg
    assert "Traceback" in msg
    assert "bad input 123" in msg
    # the error is also raised when the ref is part of a list
    with pytest.raises(TaskError):
        swarm.get([inc.remote(1), ref], timeout=TIMEOUT)


def test_exception_with_custom_init_signature(cluster):
    class PairError(Exception):
        def __init__(self, a, b):
            super().__init__(f"pair {a}/{b}")
            self.a, self.b = a, b

    with pytest.raises(TaskError) as info:
        swarm.get(raise_given.remote(PairError, 1, 2), timeout=TIMEOUT)
    assert "pair 1/2" in str(info.value)
    assert "raise_given" in str(info.value)
    assert isinstance(info.value, PairError)


def test_failed_dependency_fails_dependent(cluster):
    bad = fails_with_value_error.remote("upstream broke")
    dependent = inc.remote(bad)
    with pytest.raises(ValueError) as info:
        swarm.get(dependent, timeout=TIMEOUT)
    assert isinstance(info.value, TaskError)
    assert "upstream broke" in str(info.value)
    further = inc.remote(dependent)
    with pytest.raises(ValueError):
        swarm.get(further, timeout=TIMEOUT)


# -- futures --------------------------------------------------------------------------------------

def test_object_ref_is_awaitable(cluster):
    async def main():
        one = await inc.remote(1)
        many = await asyncio.gather(*[inc.remote(i) for i in range(5)])
        return one, many

    one, many = asyncio.run(asyncio.wait_for(main(), TIMEOUT))
    assert one == 2
    assert list(many) == [1, 2, 3, 4, 5]


def test_await_failed_ref_raises(cluster):
    async def main():
        return await fails_with_value_error.remote("async failure")

    with pytest.raises(ValueError, match="async failure"):
        asyncio.run(asyncio.wait_for(main(), TIMEOUT))


def test_object_ref_future(cluster):
    fut = inc.remote(41).future()
    assert isinstance(fut, concurrent.futures.Future)
    assert fut.result(timeout=TIMEOUT) == 42
    bad = fails_with_value_error.remote("future failure").future()
    with pytest.raises(ValueError):
        bad.result(timeout=TIMEOUT)


# -- resources ------------------------------------------------------------------------------------

def test_gpu_task_sees_cuda_visible_devices(cluster):
    assert swarm.get(cuda_visible_devices.options(num_gpus=1).remote(), timeout=TIMEOUT) == "0"


def test_custom_resource_task_runs(cluster):
    assert swarm.get(needs_custom.remote(), timeout=TIMEOUT) == "custom ok"
    ref = identity.options(resources={"custom": 1}).remote(5)
    assert swarm.get(ref, timeout=TIMEOUT) == 5


def _max_overlap(intervals):
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals],
                    key=lambda ev: (ev[0], ev[1]))  # ends before starts at the same instant
    running = best = 0
    for _, delta in events:
        running += delta
        best = max(best, running)
    return best


def test_never_more_tasks_than_cpus_at_once(cluster):
    intervals = swarm.get([timed_sleep.remote(0.5) for _ in range(4)], timeout=TIMEOUT)
    assert len(intervals) == 4
    assert 1 <= _max_overlap(intervals) <= 2


def test_custom_resource_limits_concurrency(cluster):
    # resource "custom" has capacity 1: two such tasks never overlap
    intervals = swarm.get([timed_sleep.options(resources={"custom": 1}).remote(0.3) for _ in range(2)],
                          timeout=TIMEOUT)
    assert _max_overlap(intervals) == 1


def test_infeasible_cpu_request_errors(cluster):
    ref = noop.options(num_cpus=64).remote()
    with pytest.raises(TaskUnschedulableError) as info:
        swarm.get(ref, timeout=TIMEOUT)
    msg = str(info.value)
    assert re.search(r"64(\.0)?\s*CPU|CPU\W{0,4}64\b", msg), msg  # the request
    assert re.search(r"\b2(\.0)?\s*CPU|CPU\W{0,4}2(\.0)?\b", msg), msg  # the cluster's total


def test_infeasible_custom_resource_errors(cluster):
    ref = noop.options(resources={"nope": 1}).remote()
    with pytest.raises(TaskUnschedulableError) as info:
        swarm.get(ref, timeout=TIMEOUT)
    msg = str(info.value)
    assert "nope" in msg
    assert re.search(r"\b2(\.0)?\s*CPU|CPU\W{0,4}2(\.0)?\b", msg), msg  # the cluster's total
    assert "custom" in msg


def test_cluster_resources_and_nodes(cluster):
    total = swarm.cluster_resources()
    assert total["CPU"] == 2.0
    assert total["GPU"] == 1.0
    assert total["custom"] == 1.0
    avail = swarm.available_resources()
    assert isinstance(avail, dict)
    assert "CPU" in avail and 0 < avail["CPU"] <= 2.0
    nodes = swarm.nodes()
    assert isinstance(nodes, list) and len(nodes) == 1
    node = nodes[0]
    for key in ("NodeID", "Alive", "NodeManagerAddress", "Resources"):
        assert key in node
    assert node["Alive"] is True
    assert node["Resources"]["CPU"] == 2.0


def test_runtime_context(cluster):
    ctx = swarm.get_runtime_context()
    assert ctx.get_job_id()
    assert ctx.get_node_id()
    assert ctx.get_worker_id()
    t1, job1, node1, _ = swarm.get(task_context.remote(), timeout=TIMEOUT)
    t2, job2, node2, _ = swarm.get(task_context.remote(), timeout=TIMEOUT)
    assert t1 and t2 and t1 != t2
    assert job1 == job2 == ctx.get_job_id()
    assert node1 == node2 == ctx.get_node_id()
    assert node1 == swarm.nodes()[0]["NodeID"]


# -- init and lifecycle ---------------------------------------------------------------------------

def test_init_twice_raises_unless_ignored(cluster):
    assert swarm.is_initialized()
    with pytest.raises(RuntimeError):
        swarm.init(num_cpus=2)
    swarm.init(ignore_reinit_error=True)
    assert swarm.is_initialized()
    assert swarm.get(inc.remote(1), timeout=TIMEOUT) == 2


def test_remote_before_init_starts_a_cluster(isolated):
    assert not swarm.is_initialized()
    ref = inc.remote(1)
    assert swarm.is_initialized()
    assert swarm.get(ref, timeout=TIMEOUT) == 2
    assert swarm.cluster_resources()["CPU"] >= 1


def test_shutdown_then_init_again(isolated):
    swarm.init(num_cpus=1)
    assert swarm.get(inc.remote(1), timeout=TIMEOUT) == 2
    swarm.shutdown()
    assert not swarm.is_initialized()
    swarm.init(num_cpus=1)
    assert swarm.get(inc.remote(2), timeout=TIMEOUT) == 3


# -- local mode -----------------------------------------------------------------------------------

def test_local_mode_runs_in_driver_process(isolated):
    swarm.init(local_mode=True)
    assert swarm.get(getpid.remote(), timeout=TIMEOUT) == os.getpid()
    ref = swarm.put(0)
    for _ in range(5):
        ref = inc.remote(ref)
    assert swarm.get(ref, timeout=TIMEOUT) == 5
    assert swarm.get(two_values.remote(2), timeout=TIMEOUT) == [2, 20]


def test_local_mode_serializes_arguments(isolated):
    swarm.init(local_mode=True)
    original = [1, 2, 3]
    result = swarm.get(mutate.remote(original), timeout=TIMEOUT)
    assert result == [1, 2, 3, "mutated"]
    assert original == [1, 2, 3]


def test_local_mode_exceptions(isolated):
    swarm.init(local_mode=True)
    ref = fails_with_value_error.remote("local failure")
    with pytest.raises(ValueError) as info:
        swarm.get(ref, timeout=TIMEOUT)
    assert isinstance(info.value, TaskError)
    assert "local failure" in str(info.value)
    assert "fails_with_value_error" in str(info.value)
    with pytest.raises(ValueError):
        swarm.get(inc.remote(ref), timeout=TIMEOUT)


def test_local_mode_numpy_values(isolated):
    swarm.init(local_mode=True)
    a = np.arange(1000, dtype=np.int64)
    np.testing.assert_array_equal(swarm.get(swarm.put(a), timeout=TIMEOUT), a)
    assert swarm.get(array_total.remote(a), timeout=TIMEOUT) == int(a.sum())
    np.testing.assert_array_equal(swarm.get(identity.remote(a), timeout=TIMEOUT), a)


def test_local_mode_unpicklable_argument_fails_at_remote(isolated):
    swarm.init(local_mode=True)
    with pytest.raises(SerializationError, match=r"args\[0\]\.writer\._lock"):
        noop.remote(_Holder())


# -- serialization errors -------------------------------------------------------------------------

def test_unpicklable_argument_fails_at_remote(cluster):
    with pytest.raises(TypeError) as info:
        noop.remote(_Holder())
    err = info.value
    assert isinstance(err, SerializationError)
    msg = str(err)
    assert "args[0].writer._lock" in msg
    assert "_thread.lock" in msg


def test_unpicklable_keyword_argument_fails_at_remote(cluster):
    with pytest.raises(SerializationError) as info:
        noop.remote(1, sink=_Holder())
    msg = str(info.value)
    assert "writer._lock" in msg and "_thread.lock" in msg


def test_unpicklable_return_value_fails_at_get(cluster):
    ref = return_lock.remote()
    with pytest.raises(swarm.exceptions.SwarmError) as info:
        swarm.get(ref, timeout=TIMEOUT)
    msg = str(info.value)
    assert "return value" in msg
    assert "_thread.lock" in msg
    # the worker survives: later tasks still run
    assert swarm.get(inc.remote(1), timeout=TIMEOUT) == 2


# -- driver scripts -------------------------------------------------------------------------------

def test_driver_script_sibling_module_importable_in_workers(tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "helpers_mod.py").write_text("class Point:\n    def __init__(self, x):\n        self.x = x\n")
    (app / "driver.py").write_text(textwrap.dedent("""
        import swarm
        import helpers_mod

        @swarm.remote
        def get_x(p):
            return p.x

        swarm.init(num_cpus=1)
        print("RESULT", swarm.get(get_x.remote(helpers_mod.Point(7)), timeout=60))
        swarm.shutdown()
    """))
    # run from another directory, as `python app/driver.py` would be
    proc = subprocess.run([sys.executable, str(app / "driver.py")], cwd=str(tmp_path), capture_output=True,
                          text=True, timeout=120)
    assert "RESULT 7" in proc.stdout, proc.stderr[-3000:]


def test_remote_traceback_names_the_users_file_and_line(cluster):
    @swarm.remote
    def fails_here():
        raise ValueError("from the user's code")
    with pytest.raises(swarm.exceptions.TaskError) as info:
        swarm.get(fails_here.remote(), timeout=60)
    text = str(info.value)
    assert f'File "{__file__}"' in text and 'raise ValueError("from the user\'s code")' in text
    assert "worker_main.py" not in text    # the worker's own frames are left out


@swarm.remote
def nap_pid(seconds):
    time.sleep(seconds)
    return os.getpid()


def test_slow_calls_of_a_function_learned_as_quick_still_spread_over_workers(cluster):
    # one at a time: a single worker is leased, and the function is measured as very quick ...
    for _ in range(30):
        swarm.get(nap_pid.remote(0), timeout=60)
    # ... so these get queued deep on the workers; once one runs long the owner takes back the calls
    # not started, learns the function is slow, and from then on the two CPUs share the work evenly
    pids = swarm.get([nap_pid.remote(1.0) for _ in range(8)], timeout=60)
    assert sorted(collections.Counter(pids).values()) == [4, 4]


@swarm.remote
def raises_deep():
    raise KeyError("from two levels down")


@swarm.remote
def waits_on_failing():
    return swarm.get(raises_deep.remote())


def test_an_error_from_a_nested_task_is_caught_by_its_own_class(cluster):
    with pytest.raises(KeyError) as info:
        swarm.get(waits_on_failing.remote(), timeout=60)
    assert isinstance(info.value, swarm.exceptions.TaskError)
    text = str(info.value)
    assert "waits_on_failing" in text and "from two levels down" in text
