"""``swarm.util.multiprocessing.Pool`` beside the standard library's ``multiprocessing.Pool``.

Each parity test runs one scenario twice, on the same inputs: once with swarm's Pool (actors of the
shared 2-CPU cluster) and once with the standard library's Pool (``forkserver`` processes, so no
child is forked from this multi-threaded process), and compares what they return or raise.
Work that must still be pending while a test looks waits on a *gate file* the test creates when it
is done, so nothing depends on how fast the machine is.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time

import psutil
import pytest

import swarm
from swarm.exceptions import ActorDiedError
from swarm.util.multiprocessing import Pool as SwarmPool

TIMEOUT = 60
STD_CONTEXT = multiprocessing.get_context("forkserver")


def std_pool(*args, **kwargs):
    return STD_CONTEXT.Pool(*args, **kwargs)


POOLS = {"swarm": SwarmPool, "stdlib": std_pool}


# -- worker functions (module level, so the standard library's Pool can pickle them) -------------------

class CustomError(Exception):
    pass


def square(x):
    return x * x


def add(a, b):
    return a + b


def power(base, exp=2, *, offset=0):
    return base ** exp + offset


def fail_on_three(x):
    if x == 3:
        raise ValueError(f"bad item {x}")
    return x


def raise_custom(msg):
    raise CustomError(msg)


def getpid_of(_x):
    return os.getpid()


_STATE: dict = {}


def set_state(value, label="init"):
    _STATE["value"] = value
    _STATE["label"] = label


def get_state(_x):
    return _STATE.get("value"), _STATE.get("label")


def wait_for_file(path):
    """Returns ``path`` once the file exists (a gate the test opens)."""
    deadline = time.monotonic() + TIMEOUT
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {path} never opened")
        time.sleep(0.005)
    return path


def gated_square(args):
    x, path = args
    if x == 0:
        wait_for_file(path)
    return x * x


def exit_worker(x):
    if x == 3:
        os._exit(1)
    return x


def countdown():
    yield from range(5)
    raise KeyError("the iterable failed")


# -- helpers --------------------------------------------------------------------------------------------

def both(scenario, *args, **kwargs):
    """Run ``scenario(Pool)`` with swarm's Pool and the stdlib's; assert they agree; return the value."""
    out = {name: scenario(make, *args, **kwargs) for name, make in POOLS.items()}
    assert out["swarm"] == out["stdlib"], out
    return out["swarm"]


def both_raise(scenario, exc_type, match=None):
    for make in POOLS.values():
        with pytest.raises(exc_type, match=match):
            scenario(make)


def _gate(tmp_path, name):
    return str(tmp_path / name)


def _open(path):
    with open(path, "w"):
        pass


def _running(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:   # gone (possibly between two looks)
        return False


def _all_exited(pids, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if _running(p)]
        if not alive:
            return True
        time.sleep(0.02)
    return False


def _cpus_back(timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if swarm.available_resources().get("CPU", 0) >= swarm.cluster_resources()["CPU"]:
            return True
        time.sleep(0.02)
    return False


# -- parity: results ------------------------------------------------------------------------------------

def test_map_parity(cluster):
    def scenario(make):
        with make(2) as p:
            return (p.map(square, range(100)), p.map(square, range(37), chunksize=5),
                    p.map(square, (x for x in range(10))), p.map(square, []))

    out = both(scenario)
    assert out[0] == [x * x for x in range(100)]


def test_map_many_small_items_parity(cluster):
    def scenario(make):
        with make(2) as p:
            return p.map(square, range(10_000))

    assert both(scenario) == [x * x for x in range(10_000)]


def test_map_async_parity(cluster):
    def scenario(make):
        with make(2) as p:
            seen = []
            r = p.map_async(square, range(50), callback=seen.append)
            value = r.get(TIMEOUT)
            return value, r.ready(), r.successful(), seen

    value, ready, ok, seen = both(scenario)
    assert value == [x * x for x in range(50)] and ready and ok and seen == [value]


def test_map_async_get_timeout_parity(cluster, tmp_path):
    def scenario(make):
        gate = _gate(tmp_path, f"gate-{make.__name__}")
        with make(2) as p:
            r = p.map_async(gated_square, [(x, gate) for x in range(4)], chunksize=1)
            with pytest.raises(multiprocessing.TimeoutError):
                r.get(timeout=0.05)
            assert not r.ready()
            with pytest.raises(ValueError):
                r.successful()  # not ready yet
            r.wait(0.01)
            _open(gate)
            return r.get(timeout=TIMEOUT), r.ready(), r.successful()

    assert both(scenario) == ([0, 1, 4, 9], True, True)


def test_starmap_parity(cluster):
    pairs = [(i, i + 1) for i in range(30)]

    def scenario(make):
        with make(2) as p:
            return (p.starmap(add, pairs), p.starmap(power, [(2, 3), (3, 2), (5,)]),
                    p.starmap_async(add, pairs, chunksize=4).get(TIMEOUT))

    out = both(scenario)
    assert out[0] == [a + b for a, b in pairs] and out[1] == [8, 9, 25]


def test_imap_parity(cluster):
    def scenario(make):
        with make(2) as p:
            return (list(p.imap(square, range(40))), list(p.imap(square, range(40), chunksize=7)),
                    list(p.imap(square, iter(range(13)), chunksize=3)), list(p.imap(square, [])))

    out = both(scenario)
    assert out[0] == [x * x for x in range(40)]


def test_imap_unordered_parity(cluster):
    def scenario(make):
        with make(2) as p:
            a = p.imap_unordered(square, range(40))
            b = p.imap_unordered(square, (x for x in range(25)), chunksize=4)
            return sorted(a), sorted(b)

    out = both(scenario)
    assert out == (sorted(x * x for x in range(40)), sorted(x * x for x in range(25)))
    assert set(out[0]) == {x * x for x in range(40)}


def test_imap_next_timeout_parity(cluster, tmp_path):
    def scenario(make):
        gate = _gate(tmp_path, f"gate-{make.__name__}")
        with make(2) as p:
            it = p.imap(gated_square, [(x, gate) for x in range(3)])
            with pytest.raises(multiprocessing.TimeoutError):
                it.next(timeout=0.05)
            _open(gate)
            first = it.next(timeout=TIMEOUT)
            rest = list(it)
            with pytest.raises(StopIteration):
                it.next(timeout=1)
            return first, rest

    assert both(scenario) == (0, [1, 4])


def test_imap_error_at_its_place_parity(cluster):
    def scenario(make):
        with make(2) as p:
            out = []
            it = p.imap(fail_on_three, range(6))
            while True:
                try:
                    out.append(next(it))
                except StopIteration:
                    return out
                except ValueError as e:
                    out.append(("ValueError", "bad item 3" in str(e)))

    assert both(scenario) == [0, 1, 2, ("ValueError", True), 4, 5]


def test_imap_failing_iterable_parity(cluster):
    def scenario(make):
        with make(2) as p:
            out = []
            it = p.imap(square, countdown())
            while True:
                try:
                    out.append(next(it))
                except StopIteration:
                    return out
                except KeyError:
                    out.append("KeyError")

    assert both(scenario) == [0, 1, 4, 9, 16, "KeyError"]


def test_apply_parity(cluster):
    def scenario(make):
        with make(2) as p:
            return (p.apply(power, (3,)), p.apply(power, (2, 5), {"offset": 1}),
                    p.apply_async(add, (1, 2)).get(TIMEOUT))

    assert both(scenario) == (9, 33, 3)


def test_apply_async_callback_parity(cluster):
    def scenario(make):
        with make(2) as p:
            results, errors = [], []
            rs = [p.apply_async(square, (i,), callback=results.append, error_callback=errors.append)
                  for i in range(10)]
            values = [r.get(TIMEOUT) for r in rs]
            return values, sorted(results), errors, all(r.successful() for r in rs)

    values, results, errors, ok = both(scenario)
    assert values == [i * i for i in range(10)] and results == values and errors == [] and ok


def test_apply_async_error_callback_parity(cluster):
    def scenario(make):
        with make(2) as p:
            results, errors = [], []
            r = p.apply_async(raise_custom, ("nope",), callback=results.append,
                              error_callback=errors.append)
            r.wait(TIMEOUT)
            with pytest.raises(CustomError, match="nope"):
                r.get(TIMEOUT)
            assert len(errors) == 1 and isinstance(errors[0], CustomError)
            return results, r.ready(), r.successful()

    assert both(scenario) == ([], True, False)


def test_map_async_error_callback_parity(cluster):
    def scenario(make):
        with make(2) as p:
            results, errors = [], []
            r = p.map_async(fail_on_three, range(10), chunksize=2, callback=results.append,
                            error_callback=errors.append)
            r.wait(TIMEOUT)
            assert len(errors) == 1 and isinstance(errors[0], ValueError)
            return results, r.successful(), "bad item 3" in str(errors[0])

    assert both(scenario) == ([], False, True)


def test_initializer_parity(cluster):
    def scenario(make):
        with make(2, initializer=set_state, initargs=(42, "ready")) as p:
            return p.map(get_state, range(8), chunksize=1)

    assert both(scenario) == [(42, "ready")] * 8


def test_maxtasksperchild_recycles_processes_parity(cluster):
    def scenario(make):
        with make(2, maxtasksperchild=1) as p:
            pids = p.map(getpid_of, range(6), chunksize=1)
        with make(2) as p:
            steady = p.map(getpid_of, range(6), chunksize=1)
        return len(set(pids)), len(set(steady)) <= 2

    assert both(scenario) == (6, True)


def test_maxtasksperchild_keeps_initializer_and_results(cluster):
    with SwarmPool(2, maxtasksperchild=3, initializer=set_state, initargs=(7,)) as p:
        assert p.map(get_state, range(10)) == [(7, "init")] * 10
        pids = p.map(getpid_of, range(12), chunksize=2)
        assert len(set(pids)) >= 4  # 12 items, at most 3 per process
        assert p.map(square, range(100)) == [x * x for x in range(100)]


# -- parity: errors -------------------------------------------------------------------------------------

def test_exceptions_keep_their_type_parity(cluster):
    def map_fails(make):
        with make(2) as p:
            p.map(fail_on_three, range(10))

    def apply_fails(make):
        with make(2) as p:
            p.apply(raise_custom, ("custom message",))

    def starmap_fails(make):
        with make(2) as p:
            p.starmap(add, [(1, 2), (1, "x")])

    both_raise(map_fails, ValueError, "bad item 3")
    both_raise(apply_fails, CustomError, "custom message")
    both_raise(starmap_fails, TypeError)


def test_misuse_parity(cluster):
    def bad_processes(make):
        make(0)

    def bad_maxtasks(make):
        make(1, maxtasksperchild=0)

    def bad_initializer(make):
        make(1, initializer=3)

    def bad_chunksize(make):
        with make(1) as p:
            p.imap(square, range(3), chunksize=0)

    both_raise(bad_processes, ValueError)
    both_raise(bad_maxtasks, ValueError)
    both_raise(bad_initializer, TypeError)
    both_raise(bad_chunksize, ValueError)


def test_pool_cannot_be_pickled(cluster):
    import pickle
    with SwarmPool(1) as p:
        with pytest.raises(NotImplementedError):
            pickle.dumps(p)


# -- parity: lifecycle ----------------------------------------------------------------------------------

def test_context_manager_parity(cluster):
    def scenario(make):
        with make(2) as p:
            value = p.map(square, range(5))
        with pytest.raises(ValueError, match="Pool not running"):
            p.map(square, range(5))
        with pytest.raises(ValueError, match="Pool not running"):
            p.apply_async(square, (1,))
        return value

    assert both(scenario) == [0, 1, 4, 9, 16]


def test_close_join_parity(cluster):
    def scenario(make):
        p = make(2)
        pids = set(p.map(getpid_of, range(8), chunksize=1))
        r = p.map_async(square, range(200), chunksize=10)
        p.close()
        with pytest.raises(ValueError):
            p.apply_async(square, (1,))
        p.join()
        assert _all_exited(pids)  # the workers exit once the submitted work is done
        return r.get(TIMEOUT), r.successful()

    assert both(scenario) == ([x * x for x in range(200)], True)
    assert _cpus_back()


def test_join_before_close_parity(cluster):
    def scenario(make):
        p = make(1)
        try:
            p.join()
        finally:
            p.terminate()

    both_raise(scenario, ValueError)


def test_terminate_parity(cluster, tmp_path):
    def scenario(make):
        gate = _gate(tmp_path, f"gate-{make.__name__}")
        p = make(2)
        pids = set(p.map(getpid_of, range(8), chunksize=1))
        pending = p.map_async(gated_square, [(x, gate) for x in range(4)], chunksize=1)
        p.terminate()
        p.join()
        assert _all_exited(pids)  # killed, although work was pending
        with pytest.raises(ValueError):
            p.map(square, range(3))
        return pending

    pending = scenario(SwarmPool)
    scenario(std_pool)
    with pytest.raises(RuntimeError, match="terminated"):  # swarm: fails rather than hanging
        pending.get(TIMEOUT)
    assert _cpus_back()


# -- swarm specifics ------------------------------------------------------------------------------------

def test_default_processes_is_cluster_cpus(cluster):
    with SwarmPool() as p:
        assert p._processes == int(swarm.cluster_resources()["CPU"])
        assert len(set(p.map(getpid_of, range(20), chunksize=1))) <= p._processes


def test_more_processes_than_cpus(cluster):
    with SwarmPool(3) as p:
        assert p.map(square, range(30), chunksize=1) == [x * x for x in range(30)]
        pids = p.map(getpid_of, range(30), chunksize=1)
        assert len(set(pids)) <= 3
    assert _cpus_back()


def test_terminated_actors_release_the_cluster(cluster):
    p = SwarmPool(2)
    handles = p._core.actor_handles()
    assert p.map(square, range(4)) == [0, 1, 4, 9]
    p.terminate()
    p.join()
    for h in handles:
        with pytest.raises(ActorDiedError):
            swarm.get(h.pid.remote(), timeout=TIMEOUT)
    assert _cpus_back()


def test_dead_worker_is_replaced(cluster):
    with SwarmPool(2) as p:
        with pytest.raises(ActorDiedError):
            p.map(exit_worker, range(6), chunksize=1)
        assert p.map(square, range(20)) == [x * x for x in range(20)]


def broken_initializer():
    raise RuntimeError("initializer exploded")


def test_failing_initializer_fails_the_work_instead_of_hanging(cluster):
    # (the standard library's Pool respawns such workers forever and map() never returns)
    with SwarmPool(2, initializer=broken_initializer) as p:
        with pytest.raises(ActorDiedError, match="initializer exploded"):
            p.map(square, range(10))
        with pytest.raises(ActorDiedError):
            p.apply(square, (3,))
    assert _cpus_back()


def test_unreferenced_pool_stops_its_actors(cluster):
    p = SwarmPool(2)
    pids = set(p.map(getpid_of, range(8), chunksize=1))
    del p
    import gc
    gc.collect()
    assert _all_exited(pids)
    assert _cpus_back()


def test_results_keep_an_unreferenced_pool_alive(cluster):
    r = SwarmPool(2).map_async(square, range(50))  # the pool itself is not kept by the caller
    assert r.get(TIMEOUT) == [x * x for x in range(50)]
    import gc
    gc.collect()
    assert _cpus_back()


def test_callbacks_may_submit_more_work(cluster):
    with SwarmPool(2) as p:
        done = threading.Event()
        out = []

        def chain(value):
            if value < 5:
                p.apply_async(add, (value, 1), callback=chain)
            else:
                out.append(value)
                done.set()

        p.apply_async(add, (0, 1), callback=chain)
        assert done.wait(TIMEOUT) and out == [5]


def test_unpicklable_argument_fails_that_result_only(cluster):
    with SwarmPool(2) as p:
        r = p.apply_async(square, (threading.Lock(),))
        with pytest.raises(TypeError):
            r.get(TIMEOUT)
        assert p.map(square, range(5)) == [0, 1, 4, 9, 16]


def test_pool_starts_swarm_if_needed(isolated):
    assert not swarm.is_initialized()
    with SwarmPool() as p:
        assert swarm.is_initialized()
        assert p.map(square, range(10)) == [x * x for x in range(10)]
        assert p._processes == int(swarm.cluster_resources()["CPU"])


# -- runtime behaviour the Pool depends on (in fresh processes: a failure can break the driver) -------

KILL_WHILE_CREATING = """
import swarm
swarm.init(num_cpus=1)

@swarm.remote(num_cpus=1)
class A:
    def ping(self):
        return "alive"

a = A.remote()
assert swarm.get(a.ping.remote(), timeout=30) == "alive"  # holds the only CPU
b = A.remote()  # its creation waits for a CPU
swarm.kill(b)   # killed while its creation is pending
swarm.kill(a)   # frees the CPU
try:
    print("RESULT", swarm.get(b.ping.remote(), timeout=30))
except Exception as e:
    print("RESULT", type(e).__name__)
swarm.shutdown()
"""

DROP_HANDLE_WHILE_CREATING = """
import time
import swarm
swarm.init(num_cpus=1)

@swarm.remote(num_cpus=1)
class A:
    def ping(self):
        return "alive"

@swarm.remote
def f():
    return "task ran"

a = A.remote()
assert swarm.get(a.ping.remote(), timeout=30) == "alive"  # holds the only CPU
b = A.remote()  # its creation waits for a CPU
del b           # its last handle goes away while the creation is pending
time.sleep(0.5)
swarm.kill(a)   # frees the CPU: b's lease is granted to a caller that forgot b
try:
    print("RESULT", swarm.get(f.remote(), timeout=20))
except Exception as e:
    print("RESULT", type(e).__name__)
swarm.shutdown()
"""


def _run_fresh(code):
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=150)
    return proc.stdout + proc.stderr[-3000:]


def test_runtime_kill_while_creating():
    # (was a runtime bug: the kill was lost and the actor started later; the Pool kills actors that
    # may still be waiting for a CPU)
    out = _run_fresh(KILL_WHILE_CREATING)
    assert "RESULT ActorDiedError" in out, out


def test_runtime_drop_handle_while_creating():
    # (was a runtime bug: the late lease reply raised KeyError and cut the driver off its node)
    out = _run_fresh(DROP_HANDLE_WHILE_CREATING)
    assert "RESULT task ran" in out, out
