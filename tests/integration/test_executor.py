"""``swarm.util.Executor``: a ``concurrent.futures.Executor`` on swarm tasks.

Uses the shared 2-CPU cluster (``cluster`` fixture). Work that must still be pending while a test
looks waits on a *gate file* the test creates, so nothing depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import swarm
from swarm.util import Executor
from swarm.util.executor import Executor as ExecutorFromModule

TIMEOUT = 60


class CustomError(Exception):
    pass


def square(x):
    return x * x


def add(a, b=0, *, c=0):
    return a + b + c


def fail(msg):
    raise ValueError(msg)


def fail_custom(msg):
    raise CustomError(msg)


def wait_for_file(path, value=None):
    deadline = time.monotonic() + TIMEOUT
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {path} never opened")
        time.sleep(0.005)
    return value


_STATE: dict = {}


def set_state(value):
    _STATE["value"] = value
    _STATE["calls"] = _STATE.get("calls", 0) + 1


def get_state():
    return _STATE.get("value"), _STATE.get("calls")


def pid():
    return os.getpid()


class Multiplier:
    def __init__(self, k):
        self.k = k

    def __call__(self, x):
        return self.k * x

    def times(self, x):
        return self.k * x


def _open(path):
    with open(path, "w"):
        pass


def test_same_class_from_util_and_module():
    assert Executor is ExecutorFromModule
    assert issubclass(Executor, concurrent.futures.Executor)


def test_submit_returns_a_future(cluster):
    with Executor() as ex:
        fut = ex.submit(square, 7)
        assert isinstance(fut, concurrent.futures.Future)
        assert fut.result(TIMEOUT) == 49
        assert fut.done() and not fut.cancelled() and fut.exception() is None
        assert ex.submit(add, 1, 2, c=3).result(TIMEOUT) == 6


def test_submit_any_callable(cluster):
    m = Multiplier(3)
    with Executor() as ex:
        assert ex.submit(pow, 2, 10).result(TIMEOUT) == 1024  # a builtin
        assert ex.submit(functools.partial(add, 1), 2).result(TIMEOUT) == 3
        assert ex.submit(m, 5).result(TIMEOUT) == 15  # a callable object
        assert ex.submit(m.times, 6).result(TIMEOUT) == 18  # a bound method
        assert ex.submit(lambda x: x + 1, 1).result(TIMEOUT) == 2
        assert ex.submit(Multiplier, 4).result(TIMEOUT).k == 4  # a class is called, not an actor


def test_exceptions_propagate_with_their_type(cluster):
    with Executor() as ex:
        fut = ex.submit(fail, "boom")
        with pytest.raises(ValueError, match="boom"):
            fut.result(TIMEOUT)
        assert isinstance(fut.exception(), ValueError)
        with pytest.raises(CustomError, match="custom"):
            ex.submit(fail_custom, "custom").result(TIMEOUT)
        with pytest.raises(ZeroDivisionError):
            ex.submit(divmod, 1, 0).result(TIMEOUT)
        with pytest.raises(ValueError):
            list(ex.map(fail, ["in map"]))


def test_unpicklable_argument_fails_the_future(cluster):
    with Executor() as ex:
        fut = ex.submit(square, threading.Lock())
        with pytest.raises(TypeError):
            fut.result(TIMEOUT)
        assert ex.submit(square, 3).result(TIMEOUT) == 9


def test_map(cluster):
    with Executor() as ex:
        assert list(ex.map(square, range(50))) == [x * x for x in range(50)]
        assert list(ex.map(add, range(5), range(5, 10))) == [5, 7, 9, 11, 13]
        assert list(ex.map(square, range(103), chunksize=10)) == [x * x for x in range(103)]
        assert list(ex.map(add, [1, 2, 3], [10, 20], chunksize=2)) == [11, 22]
        assert list(ex.map(square, [])) == []
        with pytest.raises(ValueError):
            ex.map(square, range(3), chunksize=0)


def test_map_timeout(cluster, tmp_path):
    gate = str(tmp_path / "gate")
    with Executor() as ex:
        it = ex.map(wait_for_file, [gate], timeout=0.05)
        with pytest.raises(concurrent.futures.TimeoutError):
            next(it)
        _open(gate)


def test_as_completed_and_wait(cluster):
    with Executor() as ex:
        futs = {ex.submit(square, i): i for i in range(20)}
        seen = {futs[f]: f.result() for f in concurrent.futures.as_completed(futs, timeout=TIMEOUT)}
        assert seen == {i: i * i for i in range(20)}
        more = [ex.submit(add, i, i) for i in range(10)]
        done, not_done = concurrent.futures.wait(more, timeout=TIMEOUT)
        assert not not_done and sorted(f.result() for f in done) == [2 * i for i in range(10)]
        first = [ex.submit(square, i) for i in range(3)]
        done, _ = concurrent.futures.wait(first, timeout=TIMEOUT,
                                          return_when=concurrent.futures.FIRST_COMPLETED)
        assert done


def test_asyncio_run_in_executor(cluster):
    async def main():
        loop = asyncio.get_running_loop()
        ex = Executor()
        try:
            results = await asyncio.gather(*(loop.run_in_executor(ex, square, i) for i in range(10)))
            with pytest.raises(ValueError, match="async"):
                await loop.run_in_executor(ex, fail, "async")
            one = await asyncio.wait_for(loop.run_in_executor(ex, add, 1, 2), TIMEOUT)
            return results, one
        finally:
            ex.shutdown()

    results, one = asyncio.run(main())
    assert results == [i * i for i in range(10)] and one == 3


def test_shutdown(cluster, tmp_path):
    gate = str(tmp_path / "gate")
    ex = Executor()
    fut = ex.submit(wait_for_file, gate, "done")
    threading.Timer(0.2, _open, args=(gate,)).start()
    ex.shutdown(wait=True)  # returns once the work is done
    assert fut.done() and fut.result() == "done"
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(square, 1)
    ex.shutdown()  # twice is fine


def test_shutdown_without_wait(cluster, tmp_path):
    gate = str(tmp_path / "gate")
    ex = Executor()
    fut = ex.submit(wait_for_file, gate, 5)
    ex.shutdown(wait=False)
    assert not fut.done()
    _open(gate)
    assert fut.result(TIMEOUT) == 5


def test_context_manager_waits(cluster):
    with Executor() as ex:
        futs = [ex.submit(square, i) for i in range(10)]
    assert all(f.done() for f in futs)
    with pytest.raises(RuntimeError):
        ex.submit(square, 1)


def test_max_workers_limits_tasks_in_flight(cluster, tmp_path):
    gate = str(tmp_path / "gate")
    with Executor(max_workers=1) as ex:
        first = ex.submit(wait_for_file, gate, "first")
        second = ex.submit(square, 3)
        third = ex.submit(square, 4)
        assert first.running()
        assert not second.running() and not second.done()  # waits in the executor
        assert third.cancel() and third.cancelled()
        _open(gate)
        assert first.result(TIMEOUT) == "first" and second.result(TIMEOUT) == 9
        assert list(ex.map(square, range(10))) == [x * x for x in range(10)]


def test_shutdown_cancel_futures(cluster, tmp_path):
    gate = str(tmp_path / "gate")
    ex = Executor(max_workers=1)
    running = ex.submit(wait_for_file, gate, "ran")
    waiting = [ex.submit(square, i) for i in range(5)]
    threading.Timer(0.2, _open, args=(gate,)).start()
    ex.shutdown(wait=True, cancel_futures=True)
    assert running.result() == "ran"
    assert all(f.cancelled() for f in waiting)


def test_done_callbacks_may_call_swarm(cluster):
    """Callbacks run on the executor's relay thread, so they may block and call swarm.get."""
    ref = swarm.put(41)
    got = []
    done = threading.Event()

    def callback(fut):
        got.append((fut.result(), swarm.get(ref, timeout=TIMEOUT)))
        got.append(ex.submit(square, 2).result(TIMEOUT))  # and submit and wait for more work
        done.set()

    with Executor() as ex:
        ex.submit(square, 3).add_done_callback(callback)
        assert done.wait(TIMEOUT)
    assert got == [(9, 41), 4]


def test_object_ref_arguments_are_resolved(cluster):
    ref = swarm.put(6)
    with Executor() as ex:
        assert ex.submit(square, ref).result(TIMEOUT) == 36
        assert ex.submit(pow, ref, 2).result(TIMEOUT) == 36


def test_task_options(cluster):
    with Executor(resources={"custom": 1}, num_cpus=0, max_retries=0) as ex:
        assert list(ex.map(square, range(4))) == [0, 1, 4, 9]
    with pytest.raises(ValueError):
        Executor(num_cpus=-1)
    with pytest.raises(ValueError):
        Executor(max_workers=0)


def test_initializer_runs_once_per_worker_process(cluster):
    with Executor(initializer=set_state, initargs=("ready",)) as ex:
        out = [ex.submit(get_state).result(TIMEOUT) for _ in range(6)]
        pids = [ex.submit(pid).result(TIMEOUT) for _ in range(6)]
    assert all(value == "ready" for value, _ in out)
    assert all(calls == 1 for _, calls in out)  # once per process, not once per call
    assert len(set(pids)) >= 1


def test_executor_starts_swarm_if_needed(isolated):
    assert not swarm.is_initialized()
    with Executor() as ex:
        assert ex.submit(square, 5).result(TIMEOUT) == 25
    assert swarm.is_initialized()


# -- runtime bug (reproduced in a fresh process, so a hang cannot affect the shared cluster) -----------

REF_FUTURE_CALLBACK_GET = """
import swarm, threading
swarm.init(num_cpus=2)

@swarm.remote
def f(x):
    return x

done = threading.Event()
out = []

def callback(fut):
    try:
        out.append(swarm.get(f.remote(2), timeout=5))
    except Exception as e:
        out.append(type(e).__name__)
    done.set()

fut = f.remote(1).future()
fut.add_done_callback(callback)
done.wait(30)
print("RESULT", out)
swarm.shutdown()
"""


def test_runtime_ref_future_callback_can_call_get():
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(REF_FUTURE_CALLBACK_GET)],
                          capture_output=True, text=True, timeout=120)
    assert "RESULT [2]" in proc.stdout, proc.stdout + proc.stderr[-2000:]
