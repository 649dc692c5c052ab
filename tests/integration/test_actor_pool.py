"""``swarm.util.ActorPool``: Ray's ActorPool semantics over swarm actors."""

from __future__ import annotations

import os
import time

import pytest

import swarm
from swarm.exceptions import ActorDiedError
from swarm.util import ActorPool

TIMEOUT = 60


@swarm.remote
class Worker:
    def __init__(self, tag=0):
        self.tag = tag
        self.calls = 0

    def double(self, v):
        self.calls += 1
        return 2 * v

    def slow_double(self, v):
        """Later values finish first: unordered results come back in a different order."""
        time.sleep(0.05 * (5 - v) if 0 <= v < 5 else 0)
        return 2 * v

    def wait_for(self, path):
        deadline = time.monotonic() + TIMEOUT
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.01)
        return path

    def who(self, v):
        return self.tag, v

    def get_calls(self):
        return self.calls

    @swarm.method(num_returns=2)
    def split(self, v):
        return v, -v

    def die(self, v):
        os._exit(1)


@pytest.fixture
def workers(cluster):
    return [Worker.remote(tag) for tag in range(2)]


def test_map_in_order(workers):
    pool = ActorPool(workers)
    assert list(pool.map(lambda a, v: a.double.remote(v), range(10))) == [2 * v for v in range(10)]
    assert not pool.has_next()
    calls = swarm.get([w.get_calls.remote() for w in workers], timeout=TIMEOUT)
    assert sum(calls) == 10 and all(c > 0 for c in calls)  # the work was spread over both actors


def test_map_ordered_even_when_finishing_out_of_order(workers):
    pool = ActorPool(workers)
    assert list(pool.map(lambda a, v: a.slow_double.remote(v), range(5))) == [0, 2, 4, 6, 8]


def test_map_unordered(workers):
    pool = ActorPool(workers)
    got = list(pool.map_unordered(lambda a, v: a.slow_double.remote(v), range(8)))
    assert sorted(got) == [2 * v for v in range(8)]


def test_map_drops_uncollected_results(workers):
    pool = ActorPool(workers)
    pool.submit(lambda a, v: a.double.remote(v), 100)  # never collected: map() drops it
    gen = pool.map(lambda a, v: a.double.remote(v), [1, 2, 3])
    assert list(gen) == [2, 4, 6]


def test_submit_and_get_next(workers):
    pool = ActorPool(workers)
    for i in range(5):
        pool.submit(lambda a, v: a.double.remote(v), i)
    assert pool.has_next()
    assert [pool.get_next() for _ in range(5)] == [0, 2, 4, 6, 8]
    assert not pool.has_next()
    with pytest.raises(StopIteration):
        pool.get_next()
    with pytest.raises(StopIteration):
        pool.get_next_unordered()


def test_get_next_unordered(workers):
    pool = ActorPool(workers)
    for i in range(4):
        pool.submit(lambda a, v: a.double.remote(v), i)
    got = {pool.get_next_unordered(timeout=TIMEOUT) for _ in range(4)}
    assert got == {0, 2, 4, 6}
    assert not pool.has_next()


def test_mixing_get_next_and_unordered(workers, tmp_path):
    pool = ActorPool(workers)
    pool.submit(lambda a, v: a.double.remote(v), 1)
    assert pool.get_next_unordered(timeout=TIMEOUT) == 2
    pool.submit(lambda a, v: a.double.remote(v), 2)
    assert pool.get_next() == 4  # the in-order index moved past the unordered one
    gate = tmp_path / "gate"
    pool.submit(lambda a, v: a.wait_for.remote(v), str(gate))  # index 2: held back
    pool.submit(lambda a, v: a.double.remote(v), 3)            # index 3
    assert pool.get_next_unordered(timeout=TIMEOUT) == 6
    with pytest.raises(ValueError, match="get_next_unordered"):
        pool.get_next()  # index 2 is behind a result already returned out of order
    gate.touch()
    assert pool.get_next_unordered(timeout=TIMEOUT) == str(gate)


def test_get_next_timeout(workers, tmp_path):
    pool = ActorPool(workers)
    gate = tmp_path / "gate"
    pool.submit(lambda a, v: a.wait_for.remote(v), str(gate))
    with pytest.raises(TimeoutError):
        pool.get_next(timeout=0.2)
    assert pool.has_next()  # not dropped without ignore_if_timedout
    gate.touch()
    assert pool.get_next(timeout=TIMEOUT) == str(gate)


def test_get_next_timeout_ignored(workers, tmp_path):
    pool = ActorPool(workers)
    pool.submit(lambda a, v: a.wait_for.remote(v), str(tmp_path / "gate-a"))
    pool.submit(lambda a, v: a.double.remote(v), 21)
    with pytest.raises(TimeoutError, match="ignored"):
        pool.get_next(timeout=0.2, ignore_if_timedout=True)
    assert pool.get_next(timeout=TIMEOUT) == 42  # moved past the ignored one
    assert not pool.has_next()
    (tmp_path / "gate-a").touch()


def test_get_next_unordered_timeout(workers, tmp_path):
    pool = ActorPool(workers)
    gate = tmp_path / "gate"
    pool.submit(lambda a, v: a.wait_for.remote(v), str(gate))
    with pytest.raises(TimeoutError):
        pool.get_next_unordered(timeout=0.2)
    assert pool.has_next()
    with pytest.raises(TimeoutError):
        pool.get_next_unordered(timeout=0.2, ignore_if_timedout=True)
    assert not pool.has_next()
    gate.touch()


def test_pending_submits_wait_for_a_free_actor(cluster):
    pool = ActorPool([Worker.remote()])
    for i in range(4):
        pool.submit(lambda a, v: a.double.remote(v), i)
    assert not pool.has_free()
    assert [pool.get_next() for _ in range(4)] == [0, 2, 4, 6]
    assert pool.has_free()


def test_has_free_pop_idle_push(workers):
    a1, a2 = workers
    pool = ActorPool([a1])
    assert pool.has_free()
    pool.submit(lambda a, v: a.double.remote(v), 1)
    assert not pool.has_free()
    assert pool.pop_idle() is None
    with pytest.raises(ValueError):
        pool.push(a1)  # busy, still in the pool
    pool.push(a2)
    assert pool.has_free()
    with pytest.raises(ValueError):
        pool.push(a2)  # idle, already in the pool
    assert pool.get_next() == 2
    popped = {pool.pop_idle(), pool.pop_idle()}
    assert popped == {a1, a2}
    assert pool.pop_idle() is None
    assert not pool.has_free()


def test_push_takes_pending_submit(cluster):
    pool = ActorPool([])
    pool.submit(lambda a, v: a.double.remote(v), 5)
    assert not pool.has_next()  # no actor: queued
    pool.push(Worker.remote())
    assert pool.has_next()
    assert pool.get_next() == 10


def test_multiple_returns(workers):
    pool = ActorPool(workers)
    got = list(pool.map(lambda a, v: a.split.remote(v), [1, 2, 3]))
    assert got == [[1, -1], [2, -2], [3, -3]]
    got_unordered = list(pool.map_unordered(lambda a, v: a.split.remote(v), [4, 5]))
    assert sorted(got_unordered) == [[4, -4], [5, -5]]


def test_task_error_propagates_and_actor_stays(workers):
    pool = ActorPool(workers[:1])
    pool.submit(lambda a, v: a.double.remote(v), None)
    with pytest.raises(TypeError):
        pool.get_next()
    assert pool.has_free()
    pool.submit(lambda a, v: a.double.remote(v), 4)
    assert pool.get_next() == 8


def test_dead_actor_leaves_pool(cluster):
    doomed, healthy = Worker.remote(0), Worker.remote(1)
    pool = ActorPool([healthy, doomed])  # submit() takes the last idle actor first: doomed
    pool.submit(lambda a, v: a.die.remote(v), 0)
    with pytest.raises(ActorDiedError):
        pool.get_next(timeout=TIMEOUT)
    assert pool.pop_idle() == healthy
    assert pool.pop_idle() is None  # the dead actor did not come back
    pool.push(healthy)
    assert list(pool.map(lambda a, v: a.who.remote(v), [1, 2])) == [(1, 1), (1, 2)]
