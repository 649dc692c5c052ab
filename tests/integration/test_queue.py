"""``swarm.util.queue.Queue``: an actor-backed FIFO shared by the driver, tasks and actors."""

from __future__ import annotations

import pickle
import queue as stdlib_queue
import time

import pytest

import swarm
from swarm.exceptions import ActorDiedError
from swarm.util.queue import Empty, Full, Queue

TIMEOUT = 60


@swarm.remote
def producer(q, items):
    for item in items:
        q.put(item, timeout=TIMEOUT)
    return len(items)


@swarm.remote
def consume_in_task(q, n):
    return [q.get(timeout=TIMEOUT) for _ in range(n)]


@swarm.remote
class Consumer:
    def __init__(self, q):
        self.q = q
        self.seen = []

    def take(self, n):
        for _ in range(n):
            self.seen.append(self.q.get(timeout=TIMEOUT))
        return list(self.seen)

    def try_get(self, timeout):
        try:
            return ("got", self.q.get(timeout=timeout))
        except Empty:
            return ("empty", None)


@swarm.remote
class AsyncConsumer:
    async def take(self, q, n):
        return [await q.get_async(timeout=TIMEOUT) for _ in range(n)]


def _eventually_dead(actor) -> bool:
    """Calls on the actor fail with ActorDiedError (kill() is asynchronous: allow it a moment)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        try:
            swarm.get(actor.qsize.remote(), timeout=TIMEOUT)
        except ActorDiedError:
            return True
        time.sleep(0.05)
    return False


def test_exceptions_are_stdlib_subclasses():
    assert issubclass(Empty, stdlib_queue.Empty)
    assert issubclass(Full, stdlib_queue.Full)
    assert swarm.util.Queue is Queue


def test_fifo_put_get(cluster):
    q = Queue()
    assert q.empty() and not q.full()
    for i in range(10):
        q.put(i)
    assert q.qsize() == 10 == q.size() == len(q)
    assert not q.empty()
    assert [q.get() for _ in range(10)] == list(range(10))
    assert q.empty()


def test_nonblocking_empty_and_full(cluster):
    q = Queue(maxsize=2)
    with pytest.raises(Empty):
        q.get_nowait()
    with pytest.raises(Empty):
        q.get(block=False)
    q.put_nowait("a")
    q.put("b", block=False)
    assert q.full()
    with pytest.raises(Full):
        q.put_nowait("c")
    with pytest.raises(Full):
        q.put("c", block=False)
    assert q.get_nowait() == "a"
    assert q.get_nowait() == "b"


def test_timeouts_raise_empty_and_full(cluster):
    q = Queue(maxsize=1)
    with pytest.raises(Empty):
        q.get(timeout=0.3)
    with pytest.raises(stdlib_queue.Empty):  # catchable as the standard library's exception
        q.get(timeout=0)
    q.put(1, timeout=0)  # room: a zero timeout does not fail
    with pytest.raises(Full):
        q.put(2, timeout=0.3)
    with pytest.raises(stdlib_queue.Full):
        q.put(2, timeout=0)
    assert q.get(timeout=0) == 1
    with pytest.raises(ValueError):
        q.get(timeout=-1)
    with pytest.raises(ValueError):
        q.put(3, timeout=-1)


def test_batches(cluster):
    q = Queue(maxsize=5)
    q.put_nowait_batch([1, 2, 3])
    with pytest.raises(Full):
        q.put_nowait_batch([4, 5, 6])  # all or nothing
    assert q.qsize() == 3
    with pytest.raises(Empty):
        q.get_nowait_batch(4)
    assert q.qsize() == 3
    assert q.get_nowait_batch(2) == [1, 2]
    assert q.get_nowait_batch(0) == []
    q.put_nowait_batch(x for x in (7, 8))  # any iterable
    assert q.get_nowait_batch(3) == [3, 7, 8]
    with pytest.raises(TypeError):
        q.put_nowait_batch(5)
    with pytest.raises(TypeError):
        q.get_nowait_batch("2")
    with pytest.raises(ValueError):
        q.get_nowait_batch(-1)


def test_blocked_get_is_woken_by_put(cluster):
    q = Queue()
    c = Consumer.remote(q)
    pending = c.take.remote(3)  # blocks in the consumer until items arrive
    ready, _ = swarm.wait([pending], timeout=0.3)
    assert not ready
    q.put_nowait_batch(["x", "y", "z"])
    assert swarm.get(pending, timeout=TIMEOUT) == ["x", "y", "z"]


def test_producer_task_consumer_actor(cluster):
    q = Queue(maxsize=5)  # small: the producer must wait for the consumer to make room
    items = list(range(40))
    consumer = Consumer.remote(q)
    produced = producer.remote(q, items)
    consumed = consumer.take.remote(len(items))
    assert swarm.get(produced, timeout=TIMEOUT) == len(items)
    assert swarm.get(consumed, timeout=TIMEOUT) == items
    assert q.empty()
    assert swarm.get(consumer.try_get.remote(0.2), timeout=TIMEOUT) == ("empty", None)


def test_driver_to_task_and_async_actor(cluster):
    q = Queue()
    for i in range(6):
        q.put({"n": i})
    assert swarm.get(consume_in_task.remote(q, 3), timeout=TIMEOUT) == [{"n": i} for i in range(3)]
    a = AsyncConsumer.remote()
    assert swarm.get(a.take.remote(q, 3), timeout=TIMEOUT) == [{"n": i} for i in range(3, 6)]


def test_queue_pickles_to_same_actor(cluster):
    q = Queue()
    q2 = pickle.loads(pickle.dumps(q))
    q.put("through the original")
    assert q2.get(timeout=TIMEOUT) == "through the original"


def test_async_api(cluster):
    import asyncio
    q = Queue(maxsize=1)

    async def main():
        await q.put_async(1)
        with pytest.raises(Full):
            await q.put_async(2, timeout=0.1)
        got = await q.get_async()
        with pytest.raises(Empty):
            await q.get_async(block=False)
        return got
    assert asyncio.run(main()) == 1


def test_actor_options(cluster):
    name = "queue-actor-options-test"
    q = Queue(actor_options={"name": name, "num_cpus": 0})
    q.put(5)
    same = swarm.get_actor(name)
    assert swarm.get(same.qsize.remote(), timeout=TIMEOUT) == 1
    q.shutdown()


@pytest.mark.parametrize("force", [False, True])
def test_shutdown(cluster, force):
    q = Queue()
    q.put(1)
    actor = q.actor
    q.shutdown(force=force)
    assert _eventually_dead(actor)
    with pytest.raises(RuntimeError):
        q.put(2)
    q.shutdown()  # a second shutdown is harmless
