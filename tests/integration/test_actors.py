"""Integration tests of actors through the public API (``import swarm as ray``), one or more per bullet
of the "Actors" section of issue 3.

All tests share the session cluster (``cluster`` fixture: 2 CPUs, 1 GPU, resource ``custom: 1``).
Concurrency is proven by rendezvous (a barrier, or every call waiting until all have started) and by
comparing start/end times recorded *inside* the actor, never by wall-clock durations seen outside.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
import uuid

import psutil
import pytest

import swarm
from swarm.exceptions import ActorDiedError, GetTimeoutError

TIMEOUT = 60


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _max_overlap(intervals: list) -> int:
    """The largest number of (start, end) intervals that are running at one instant."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals],
                    key=lambda ev: (ev[0], ev[1]))  # at equal times, ends before starts: strict overlap
    best = running = 0
    for _, delta in events:
        running += delta
        best = max(best, running)
    return best


def _wait_until(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def _pid_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# -- actor classes and task functions (module level) -----------------------------------------------

def expensive_process(record):
    time.sleep(0.01)
    return record * record


@swarm.remote
class CountedSlows:
    def __init__(self, initial_count=0):
        self.count = initial_count

    def slow(self, record):
        self.count += 1
        return expensive_process(record)

    def get_count(self):
        return self.count


@swarm.remote
class Recorder:
    """Keeps what it is sent, in arrival order."""

    def __init__(self):
        self.items = []

    def add(self, item):
        self.items.append(item)
        return len(self.items)

    def get_items(self):
        return list(self.items)

    def pid(self):
        return os.getpid()


@swarm.remote
class Counter:
    def __init__(self, start=0):
        self.value = start

    def incr(self, by=1):
        self.value += by
        return self.value

    def get(self):
        return self.value

    def pid(self):
        return os.getpid()

    def block(self, path):
        """Runs until ``path`` exists (a gate the test never opens when it wants a call in flight)."""
        deadline = time.monotonic() + TIMEOUT
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.01)
        return "unblocked"

    def leave(self):
        swarm.actor.exit_actor()

    def crash(self, code):
        os._exit(code)

    @swarm.method(num_returns=2)
    def pair(self):
        return self.value, self.value + 1

    def triple(self):
        return "a", "b", "c"

    def cuda_visible_devices(self):
        return os.environ.get("CUDA_VISIBLE_DEVICES")


@swarm.remote
class FailingInit:
    def __init__(self, token):
        raise ValueError(f"constructor refused {token}")

    def ping(self):
        return "pong"


@swarm.remote
class Sleeper:
    """A threaded actor when created with max_concurrency > 1."""

    def __init__(self, parties, barrier_timeout=TIMEOUT):
        self.barrier = threading.Barrier(parties)
        self.barrier_timeout = barrier_timeout

    def nap(self, seconds):
        start = time.monotonic()
        # every call must be running at once to pass the barrier: serial execution breaks it
        self.barrier.wait(timeout=self.barrier_timeout)
        time.sleep(seconds)
        return start, time.monotonic(), threading.get_ident()


@swarm.remote
class AsyncSleeper:
    def __init__(self, expected):
        self.expected = expected
        self.started = 0
        self.all_started = None
        self.give_up_at = None

    async def nap(self, seconds):
        loop = asyncio.get_running_loop()
        start = time.monotonic()
        if self.all_started is None:
            self.all_started = asyncio.Event()
            self.give_up_at = loop.time() + 30  # shared: a serial actor fails fast instead of hanging
        self.started += 1
        if self.started >= self.expected:
            self.all_started.set()
        await asyncio.sleep(seconds)
        try:
            await asyncio.wait_for(self.all_started.wait(), max(0.0, self.give_up_at - loop.time()))
        except asyncio.TimeoutError:
            pass
        return start, time.monotonic()

    async def add_awaited(self, boxed_ref, extra):
        value = await boxed_ref[0]  # the ref arrives inside a list, so it is not resolved beforehand
        return value + extra

    async def get_all(self, boxed_refs):
        return [await r for r in boxed_refs]


@swarm.remote
def slow_double(x):
    time.sleep(0.2)
    return 2 * x


@swarm.remote
def call_in_sequence(handle, caller, n):
    refs = [handle.add.remote((caller, i)) for i in range(n)]
    swarm.get(refs, timeout=TIMEOUT)
    return caller


@swarm.remote
def hop_two(handle, value):
    return swarm.get(handle.incr.remote(value), timeout=TIMEOUT)


@swarm.remote
def hop_one(handle, value):
    return swarm.get(hop_two.remote(handle, value), timeout=TIMEOUT)


@swarm.remote
def return_handle(boxed):
    return boxed[0]


@swarm.remote
def create_and_return_counter(start):
    h = Counter.remote(start)
    swarm.get(h.get.remote(), timeout=TIMEOUT)
    return h


@swarm.remote
def call_handle_in_object(boxed_ref):
    container = swarm.get(boxed_ref[0], timeout=TIMEOUT)
    return swarm.get(container["counter"].incr.remote(100), timeout=TIMEOUT)


@swarm.remote
def create_detached(name, namespace, value):
    h = Counter.options(name=name, namespace=namespace, lifetime="detached").remote(value)
    return swarm.get(h.pid.remote(), timeout=TIMEOUT)


@swarm.remote
class Creator:
    """Creates another actor; it is then killed or exits, and the test looks at the child."""

    def __init__(self):
        self.children = []

    def make(self, name, namespace, detached, value):
        opts = {"name": name, "namespace": namespace}
        if detached:
            opts["lifetime"] = "detached"
        h = Counter.options(**opts).remote(value)
        self.children.append(h)
        return swarm.get(h.pid.remote(), timeout=TIMEOUT)

    def call_child(self, boxed_handle, by):
        return swarm.get(boxed_handle[0].incr.remote(by), timeout=TIMEOUT)

    def leave(self):
        swarm.actor.exit_actor()


# -- the seed example --------------------------------------------------------------------------------

def test_seed_counted_slows_count_equals_records(cluster):
    records = list(range(25))
    cs = CountedSlows.remote()
    futures = [cs.slow.remote(r) for r in records]
    results = []
    while futures:  # the wait loop
        done, futures = swarm.wait(futures, num_returns=1, timeout=TIMEOUT)
        assert done, "no call finished within the timeout"
        results.extend(swarm.get(done, timeout=TIMEOUT))
    assert sorted(results) == [r * r for r in records]
    assert swarm.get(cs.get_count.remote(), timeout=TIMEOUT) == len(records)


def test_constructor_arguments(cluster):
    cs = CountedSlows.remote(10)
    swarm.get([cs.slow.remote(1), cs.slow.remote(2)], timeout=TIMEOUT)
    assert swarm.get(cs.get_count.remote(), timeout=TIMEOUT) == 12


# -- ordering ---------------------------------------------------------------------------------------

def test_calls_from_one_handle_run_in_submission_order(cluster):
    r = Recorder.remote()
    refs = [r.add.remote(i) for i in range(300)]  # submitted without waiting for any of them
    assert swarm.get(refs, timeout=TIMEOUT) == list(range(1, 301))
    assert swarm.get(r.get_items.remote(), timeout=TIMEOUT) == list(range(300))


def test_ordering_under_concurrent_callers(cluster):
    r = Recorder.remote()
    n = 100
    callers = [call_in_sequence.remote(r, name, n) for name in ("a", "b")]
    # the driver calls concurrently too, from two threads sharing one handle
    driver_refs: dict = {}

    def drive(name):
        driver_refs[name] = [r.add.remote((name, i)) for i in range(n)]
    threads = [threading.Thread(target=drive, args=(name,)) for name in ("t1", "t2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(swarm.get(callers, timeout=TIMEOUT)) == ["a", "b"]
    swarm.get(driver_refs["t1"] + driver_refs["t2"], timeout=TIMEOUT)
    items = swarm.get(r.get_items.remote(), timeout=TIMEOUT)
    assert len(items) == 4 * n
    for name in ("a", "b", "t1", "t2"):
        own = [i for c, i in items if c == name]
        assert own == list(range(n)), f"caller {name}'s calls ran out of order"


# -- handles are values -----------------------------------------------------------------------------

def test_handle_passed_across_three_hops(cluster):
    c = Counter.remote(1)
    # driver -> task -> nested task -> actor call
    assert swarm.get(hop_one.remote(c, 5), timeout=TIMEOUT) == 6
    assert swarm.get(c.get.remote(), timeout=TIMEOUT) == 6


def test_handle_returned_from_task(cluster):
    c = Counter.remote(0)
    back = swarm.get(return_handle.remote([c]), timeout=TIMEOUT)
    assert isinstance(back, swarm.ActorHandle)
    assert back == c
    assert swarm.get(back.incr.remote(3), timeout=TIMEOUT) == 3
    assert swarm.get(c.get.remote(), timeout=TIMEOUT) == 3


def test_actor_created_in_task_and_returned(cluster):
    h = swarm.get(create_and_return_counter.remote(40), timeout=TIMEOUT)
    assert swarm.get(h.incr.remote(2), timeout=TIMEOUT) == 42


def test_handle_put_inside_object(cluster):
    c = Counter.remote(0)
    ref = swarm.put({"counter": c, "note": "inside"})
    assert swarm.get(call_handle_in_object.remote([ref]), timeout=TIMEOUT) == 100
    got = swarm.get(ref, timeout=TIMEOUT)
    assert swarm.get(got["counter"].incr.remote(1), timeout=TIMEOUT) == 101


def test_handle_passed_to_another_actor(cluster):
    target = Counter.remote(0)
    creator = Creator.remote()
    assert swarm.get(creator.call_child.remote([target], 7), timeout=TIMEOUT) == 7
    assert swarm.get(target.get.remote(), timeout=TIMEOUT) == 7


def test_actor_reclaimed_when_last_handle_is_gone(cluster):
    h = Counter.remote()
    pid = swarm.get(h.pid.remote(), timeout=TIMEOUT)
    assert psutil.pid_exists(pid)
    copy = h
    del h
    gc.collect()
    assert not _wait_until(lambda: _pid_gone(pid), timeout=1.0), "reclaimed while a handle still existed"
    assert swarm.get(copy.get.remote(), timeout=TIMEOUT) == 0
    del copy
    gc.collect()
    assert _wait_until(lambda: _pid_gone(pid), timeout=10.0), "the actor's process outlived its last handle"


# -- named actors -----------------------------------------------------------------------------------

def test_named_actor_get_actor(cluster):
    name = _unique("named")
    h = Counter.options(name=name).remote(5)
    try:
        again = swarm.get_actor(name)
        assert swarm.get(again.incr.remote(1), timeout=TIMEOUT) == 6
        assert swarm.get(h.get.remote(), timeout=TIMEOUT) == 6
        with pytest.raises(ValueError):
            swarm.get_actor(_unique("no-such-actor"))
    finally:
        swarm.kill(h)


def test_namespaces_isolate_names(cluster):
    name = _unique("shared-name")
    a = Counter.options(name=name, namespace="ns_a").remote(1)
    b = Counter.options(name=name, namespace="ns_b").remote(2)
    try:
        assert swarm.get(swarm.get_actor(name, namespace="ns_a").get.remote(), timeout=TIMEOUT) == 1
        assert swarm.get(swarm.get_actor(name, namespace="ns_b").get.remote(), timeout=TIMEOUT) == 2
        with pytest.raises(ValueError):
            swarm.get_actor(name)  # not in this job's namespace
        with pytest.raises(ValueError):
            swarm.get_actor(name, namespace="ns_c")
    finally:
        swarm.kill(a)
        swarm.kill(b)


def test_get_if_exists_returns_same_actor(cluster):
    name = _unique("gie")
    first = Counter.options(name=name, get_if_exists=True).remote(10)
    try:
        pid = swarm.get(first.pid.remote(), timeout=TIMEOUT)
        second = Counter.options(name=name, get_if_exists=True).remote(999)  # args ignored: it exists
        assert second == first
        assert swarm.get(second.pid.remote(), timeout=TIMEOUT) == pid
        assert swarm.get(second.incr.remote(1), timeout=TIMEOUT) == 11
        assert swarm.get(first.get.remote(), timeout=TIMEOUT) == 11
    finally:
        swarm.kill(first)


def test_duplicate_name_raises_value_error(cluster):
    name = _unique("dup")
    h = Counter.options(name=name).remote()
    try:
        swarm.get(h.get.remote(), timeout=TIMEOUT)
        with pytest.raises(ValueError, match=name):
            Counter.options(name=name).remote()
        assert swarm.get(h.incr.remote(), timeout=TIMEOUT) == 1  # the original is untouched
    finally:
        swarm.kill(h)


# -- detached actors --------------------------------------------------------------------------------

def test_detached_actor_created_in_task_outlives_it(cluster):
    name = _unique("detached-task")
    pid = swarm.get(create_detached.remote(name, "detached_ns", 7), timeout=TIMEOUT)
    gc.collect()
    h = swarm.get_actor(name, namespace="detached_ns")
    try:
        assert swarm.get(h.incr.remote(1), timeout=TIMEOUT) == 8
        assert swarm.get(h.pid.remote(), timeout=TIMEOUT) == pid
    finally:
        swarm.kill(h)


@pytest.mark.parametrize("how", ["kill", "exit_actor"])
def test_detached_actor_survives_creator_exit(cluster, how):
    name = _unique(f"detached-{how}")
    creator = Creator.remote()
    child_pid = swarm.get(creator.make.remote(name, "detached_ns", True, 41), timeout=TIMEOUT)
    if how == "kill":
        swarm.kill(creator)
    else:
        with pytest.raises(ActorDiedError):
            swarm.get(creator.leave.remote(), timeout=TIMEOUT)
    with pytest.raises(ActorDiedError):
        swarm.get(creator.make.remote(_unique("x"), "detached_ns", True, 0), timeout=TIMEOUT)
    h = swarm.get_actor(name, namespace="detached_ns")
    try:
        assert swarm.get(h.pid.remote(), timeout=TIMEOUT) == child_pid
        assert swarm.get(h.incr.remote(1), timeout=TIMEOUT) == 42
    finally:
        swarm.kill(h)


def test_non_detached_child_dies_with_its_creator(cluster):
    """The counterpart that makes the detached tests meaningful: an owned actor goes with its owner."""
    name = _unique("owned-child")
    creator = Creator.remote()
    child_pid = swarm.get(creator.make.remote(name, "owned_ns", False, 0), timeout=TIMEOUT)
    child = swarm.get_actor(name, namespace="owned_ns")
    swarm.kill(creator)
    with pytest.raises(ActorDiedError):
        swarm.get(creator.make.remote(_unique("x"), "owned_ns", False, 0), timeout=TIMEOUT)
    assert _wait_until(lambda: _pid_gone(child_pid), timeout=10.0), "the owned child outlived its owner"
    with pytest.raises(ActorDiedError):
        swarm.get(child.incr.remote(1), timeout=TIMEOUT)


# -- kill, exit_actor, deaths -----------------------------------------------------------------------

def test_kill_then_calls_raise_actor_died_saying_killed(cluster, tmp_path):
    h = Counter.remote()
    pid = swarm.get(h.pid.remote(), timeout=TIMEOUT)
    in_flight = h.block.remote(str(tmp_path / "never-opened"))
    swarm.kill(h)
    with pytest.raises(ActorDiedError, match="killed"):
        swarm.get(in_flight, timeout=TIMEOUT)
    with pytest.raises(ActorDiedError, match="killed"):
        swarm.get(h.get.remote(), timeout=TIMEOUT)
    # a second call after the death is known fails the same way, at once rather than after a timeout
    with pytest.raises(ActorDiedError, match="killed"):
        swarm.get(h.incr.remote(), timeout=TIMEOUT)
    assert _wait_until(lambda: _pid_gone(pid), timeout=10.0)


def test_calls_made_after_kill_returns_never_run(cluster):
    ran = 0
    for _ in range(30):  # the race does not show every time: try often enough that it would
        h = Counter.remote()
        swarm.get(h.get.remote(), timeout=TIMEOUT)
        swarm.kill(h)
        for ref in [h.incr.remote() for _ in range(10)]:
            try:
                swarm.get(ref, timeout=TIMEOUT)
                ran += 1
            except ActorDiedError:
                pass
    assert ran == 0, f"{ran} calls submitted after kill() returned ran on the killed actor"


def test_kill_during_creation(cluster):
    h = Counter.remote()
    swarm.kill(h)  # before the actor has started
    with pytest.raises(ActorDiedError, match="killed"):
        swarm.get(h.get.remote(), timeout=TIMEOUT)


def test_kill_is_seen_by_other_holders(cluster):
    h = Counter.remote()
    swarm.get(h.get.remote(), timeout=TIMEOUT)
    swarm.kill(h)
    with pytest.raises(swarm.exceptions.TaskError) as ei:  # the task's get re-raises the actor's death
        swarm.get(hop_two.remote(h, 1), timeout=TIMEOUT)
    assert "killed" in str(ei.value)


def test_exit_actor_inside_method(cluster):
    h = Counter.remote()
    pid = swarm.get(h.pid.remote(), timeout=TIMEOUT)
    with pytest.raises(ActorDiedError):
        swarm.get(h.leave.remote(), timeout=TIMEOUT)
    with pytest.raises(ActorDiedError, match="exit_actor"):
        swarm.get(h.get.remote(), timeout=TIMEOUT)
    assert _wait_until(lambda: _pid_gone(pid), timeout=10.0)


def test_exit_actor_outside_actor_raises():
    with pytest.raises(TypeError, match="inside an actor"):
        swarm.actor.exit_actor()


def test_constructor_exception_surfaces_at_first_call(cluster):
    h = FailingInit.remote("xyzzy-42")
    with pytest.raises(ActorDiedError) as ei:
        swarm.get(h.ping.remote(), timeout=TIMEOUT)
    msg = str(ei.value)
    assert "constructor refused xyzzy-42" in msg
    assert "ValueError" in msg
    assert "Traceback" in msg and "__init__" in msg  # the constructor's traceback, not just its message
    with pytest.raises(ActorDiedError, match="xyzzy-42"):
        swarm.get(h.ping.remote(), timeout=TIMEOUT)


def test_actor_process_death_names_exit_code(cluster):
    h = Counter.remote()
    swarm.get(h.get.remote(), timeout=TIMEOUT)
    with pytest.raises(ActorDiedError) as ei:
        swarm.get(h.crash.remote(77), timeout=TIMEOUT)
    msg = str(ei.value)
    assert "77" in msg and "exit" in msg.lower()
    with pytest.raises(ActorDiedError, match="77"):
        swarm.get(h.get.remote(), timeout=TIMEOUT)


def test_calls_on_dead_actor_never_hang(cluster, tmp_path):
    h = Counter.remote()
    swarm.get(h.get.remote(), timeout=TIMEOUT)  # started (a kill during creation: see the xfail below)
    in_flight = h.block.remote(str(tmp_path / "never-opened"))
    swarm.kill(h)
    with pytest.raises(ActorDiedError):
        swarm.get(in_flight, timeout=TIMEOUT)
    refs = [h.incr.remote() for _ in range(20)]
    ready, not_ready = swarm.wait(refs, num_returns=len(refs), timeout=TIMEOUT)
    assert not not_ready
    for r in ready:
        with pytest.raises(ActorDiedError):
            swarm.get(r, timeout=TIMEOUT)


# -- handle surface ---------------------------------------------------------------------------------

def test_reading_handle_attribute_explains_methods(cluster):
    cs = CountedSlows.remote()
    with pytest.raises(AttributeError) as ei:
        cs.count  # noqa: B018
    msg = str(ei.value)
    assert "CountedSlows" in msg
    assert "count" in msg
    assert "method" in msg
    assert swarm.get(cs.get_count.remote(), timeout=TIMEOUT) == 0  # the handle still works


def test_method_num_returns_decorator_and_options(cluster):
    h = Counter.remote(5)
    refs = h.pair.remote()
    assert isinstance(refs, list) and len(refs) == 2
    assert all(isinstance(r, swarm.ObjectRef) for r in refs)
    assert swarm.get(refs, timeout=TIMEOUT) == [5, 6]
    refs3 = h.triple.options(num_returns=3).remote()
    assert len(refs3) == 3
    assert swarm.get(refs3, timeout=TIMEOUT) == ["a", "b", "c"]
    single = h.triple.remote()  # without the option, one ref holding the tuple
    assert isinstance(single, swarm.ObjectRef)
    assert swarm.get(single, timeout=TIMEOUT) == ("a", "b", "c")


def test_calling_method_directly_or_class_directly_errors(cluster):
    h = Counter.remote()
    with pytest.raises(TypeError):
        h.incr()
    with pytest.raises(TypeError):
        Counter(1)


# -- concurrency ------------------------------------------------------------------------------------

def test_threaded_actor_runs_calls_concurrently(cluster):
    n = 4
    s = Sleeper.options(max_concurrency=n).remote(n)
    results = swarm.get([s.nap.remote(0.3) for _ in range(n)], timeout=TIMEOUT)
    intervals = [(start, end) for start, end, _ in results]
    assert _max_overlap(intervals) == n
    assert len({tid for _, _, tid in results}) == n  # n threads, one per call


def test_default_actor_is_serial(cluster):
    """The counterpart: without max_concurrency, the same barrier can never be passed."""
    s = Sleeper.remote(2, barrier_timeout=2.0)
    a, b = s.nap.remote(0), s.nap.remote(0)
    with pytest.raises(threading.BrokenBarrierError):
        swarm.get(a, timeout=TIMEOUT)  # waited alone: the second call could not start meanwhile
    with pytest.raises(threading.BrokenBarrierError):
        swarm.get(b, timeout=TIMEOUT)  # ran only afterwards, and found the barrier broken


def test_async_actor_runs_calls_concurrently(cluster):
    n = 50
    a = AsyncSleeper.remote(n)
    intervals = swarm.get([a.nap.remote(0.5) for _ in range(n)], timeout=TIMEOUT)
    assert _max_overlap(intervals) == n


def test_async_actor_awaits_other_refs(cluster):
    a = AsyncSleeper.remote(1)
    task_ref = slow_double.remote(21)
    assert swarm.get(a.add_awaited.remote([task_ref], 0.5), timeout=TIMEOUT) == 42.5
    c = Counter.remote(9)
    refs = [c.incr.remote(), swarm.put("put value"), slow_double.remote(4)]
    assert swarm.get(a.get_all.remote(refs), timeout=TIMEOUT) == [10, "put value", 8]


def test_actor_refs_awaitable_from_driver_event_loop(cluster):
    c = Counter.remote(1)

    async def main():
        first = await c.incr.remote()
        both = await asyncio.gather(c.incr.remote(), c.incr.remote())
        return first, both
    assert asyncio.run(main()) == (2, [3, 4])


# -- resources --------------------------------------------------------------------------------------

def test_gpu_actor_sees_cuda_visible_devices(cluster):
    h = Counter.options(num_gpus=1).remote()
    try:
        devices = swarm.get(h.cuda_visible_devices.remote(), timeout=TIMEOUT)
        assert devices is not None and devices != ""
        assert devices.split(",") == ["0"]
    finally:
        swarm.kill(h)
    plain = Counter.remote()
    assert not swarm.get(plain.cuda_visible_devices.remote(), timeout=TIMEOUT)


def test_actor_with_custom_resource(cluster):
    h = Counter.options(resources={"custom": 1}).remote(3)
    try:
        assert swarm.get(h.incr.remote(), timeout=TIMEOUT) == 4
    finally:
        swarm.kill(h)


def test_actor_with_num_cpus_holds_cpu(cluster):
    h = Counter.options(num_cpus=1).remote()
    try:
        swarm.get(h.get.remote(), timeout=TIMEOUT)
        assert _wait_until(lambda: swarm.available_resources().get("CPU", 0) <= 1, timeout=10.0)
    finally:
        swarm.kill(h)
    assert _wait_until(lambda: swarm.available_resources().get("CPU", 0) == 2, timeout=10.0)


def test_get_on_unfinished_actor_call_times_out(cluster, tmp_path):
    h = Counter.remote()
    gate = tmp_path / "gate"
    ref = h.block.remote(str(gate))
    with pytest.raises(GetTimeoutError):
        swarm.get(ref, timeout=0.5)
    gate.touch()
    assert swarm.get(ref, timeout=TIMEOUT) == "unblocked"


def test_call_on_a_handle_dropped_at_once_still_runs(cluster):
    @swarm.remote
    class Once:
        def value(self):
            return 42
    # the handle is gone right after the call is made: the call still runs, then the actor exits
    assert swarm.get(Once.remote().value.remote(), timeout=60) == 42
