"""Integration tests of objects through the public API: put/get, zero-copy shared memory, reference
counting, store capacity and nested refs.

Memory checks use the driver's *private* resident memory (RSS minus shared pages): reading a value
in shared memory maps it (shared pages), while a copy would show up as private memory.
"""

from __future__ import annotations

import gc

import numpy as np
import psutil
import pytest

import swarm
from swarm.exceptions import ObjectStoreFullError

TIMEOUT = 60
MiB = 2**20


def private_rss() -> int:
    mi = psutil.Process().memory_info()
    return mi.rss - mi.shared


# -- task functions (module level) ------------------------------------------------------------------

@swarm.remote
def inspect_array(a):
    return bool(a.flags.writeable), int(a.sum()), a.nbytes


@swarm.remote
def array_sum(a):
    return int(a.sum()), a.shape, str(a.dtype)


@swarm.remote
def make_array(n, fill):
    return np.full(n, fill, dtype=np.int64)


@swarm.remote
def put_inside(x):
    return [swarm.put(x)]


@swarm.remote
def get_nested(container):
    return swarm.get(container[0], timeout=TIMEOUT)


# -- put / get ------------------------------------------------------------------------------------

VALUES = [
    0,
    -12345678901234567890,
    3.5,
    "hello",
    "ünïcödé" * 1000,
    b"\x00\x01binary",
    b"x" * (300 * 1024),  # larger than the inline limit
    None,
    True,
    (1, "two", 3.0),
    [1, [2, [3]]],
    {"a": 1, "b": [1, 2], "c": {"d": b"e"}},
    {1, 2, 3},
    list(range(10_000)),
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_put_get_roundtrip(cluster, value):
    ref = swarm.put(value)
    assert isinstance(ref, swarm.ObjectRef)
    assert swarm.get(ref, timeout=TIMEOUT) == value
    # and through a task
    assert swarm.get(identity_task.remote(ref), timeout=TIMEOUT) == value


@swarm.remote
def identity_task(x):
    return x


@pytest.mark.parametrize("shape,dtype", [((10,), np.int32), ((100, 100), np.float64),
                                         ((1000, 1000), np.float32), ((0,), np.int64)])
def test_put_get_numpy(cluster, shape, dtype):
    a = np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape)
    b = swarm.get(swarm.put(a), timeout=TIMEOUT)
    assert isinstance(b, np.ndarray)
    assert b.dtype == a.dtype and b.shape == a.shape
    np.testing.assert_array_equal(a, b)


def test_put_of_object_ref_is_rejected(cluster):
    with pytest.raises(TypeError):
        swarm.put(swarm.put(1))


def test_object_ref_hashable_and_comparable(cluster):
    r1, r2 = swarm.put(1), swarm.put(2)
    assert r1 == r1
    assert r1 != r2
    assert len({r1, r2, r1}) == 2
    d = {r1: "one", r2: "two"}
    assert d[r1] == "one" and d[r2] == "two"
    # a ref that comes back from a task compares equal to the original
    back = swarm.get(identity_task.remote([r1]), timeout=TIMEOUT)[0]
    assert back == r1 and hash(back) == hash(r1)
    assert back in d
    assert sorted([r2, r1]) in ([r1, r2], [r2, r1])  # orderable
    task_refs = [identity_task.remote(i) for i in range(3)]
    assert len(set(task_refs)) == 3


# -- zero copy ------------------------------------------------------------------------------------

def test_get_large_array_is_zero_copy_view(cluster):
    n = 80 * MiB // 8
    ref = make_array.remote(n, 7)  # produced by a worker: the driver never touched the data
    swarm.wait([ref], timeout=TIMEOUT)
    gc.collect()
    before = private_rss()
    a = swarm.get(ref, timeout=TIMEOUT)
    b = swarm.get(ref, timeout=TIMEOUT)
    after = private_rss()
    assert isinstance(a, np.ndarray) and a.shape == (n,)
    assert not a.flags.writeable
    assert not a.flags.owndata and a.base is not None
    with pytest.raises(ValueError):
        a[0] = 1
    assert np.shares_memory(a, b)
    assert after - before < 30 * MiB, f"driver private memory grew by {(after - before) / MiB:.1f} MiB"
    assert a[0] == 7 and a[-1] == 7 and int(a.sum()) == 7 * n


def test_get_of_put_array_is_read_only_view(cluster):
    src = np.arange(80 * MiB // 8, dtype=np.int64)
    ref = swarm.put(src)
    gc.collect()
    before = private_rss()
    a = swarm.get(ref, timeout=TIMEOUT)
    after = private_rss()
    assert not a.flags.writeable and a.base is not None
    assert not np.shares_memory(a, src)  # the store holds its own immutable copy
    assert after - before < 30 * MiB, f"driver private memory grew by {(after - before) / MiB:.1f} MiB"
    src[:10] = -1  # mutating the original after put does not change the stored object
    assert a[0] == 0 and a[9] == 9
    np.testing.assert_array_equal(a[10:1000], np.arange(10, 1000))


def test_one_put_array_to_ten_tasks_read_only(cluster):
    a = np.ones(50 * MiB // 8, dtype=np.int64)
    ref = swarm.put(a)
    results = swarm.get([inspect_array.remote(ref) for _ in range(10)], timeout=TIMEOUT)
    assert len(results) == 10
    for writeable, total, nbytes in results:
        assert writeable is False
        assert total == a.size
        assert nbytes == a.nbytes


def test_large_array_passed_by_value(cluster):
    a = np.arange(20 * MiB // 8, dtype=np.int64)
    total, shape, dtype = swarm.get(array_sum.remote(a), timeout=TIMEOUT)
    assert total == int(a.sum()) and shape == a.shape and dtype == "int64"
    writeable, total, _ = swarm.get(inspect_array.remote(a), timeout=TIMEOUT)
    assert writeable is False and total == int(a.sum())


def test_large_return_value(cluster):
    n = 20 * MiB // 8
    b = swarm.get(make_array.remote(n, 3), timeout=TIMEOUT)
    np.testing.assert_array_equal(b, np.full(n, 3, dtype=np.int64))
    # a large return value passed on to another task
    total, shape, _ = swarm.get(array_sum.remote(make_array.remote(n, 2)), timeout=TIMEOUT)
    assert total == 2 * n and shape == (n,)


# -- reference counting ---------------------------------------------------------------------------

def test_put_and_drop_loop_keeps_memory_flat(isolated):
    swarm.init(num_cpus=1, object_store_memory=400 * MiB)
    arr = np.zeros(100 * MiB // 8, dtype=np.int64)
    baseline = None
    for i in range(60):
        arr[0] = i
        ref = swarm.put(arr)  # leaks would fill the 400 MiB store within 4 rounds
        del ref
        if i == 4:
            gc.collect()
            baseline = private_rss()
    gc.collect()
    grown = private_rss() - baseline
    assert grown < 150 * MiB, f"driver private memory grew by {grown / MiB:.0f} MiB over 55 rounds"

    # the same with a read of each value (the reader's view must release the object too)
    for i in range(30):
        arr[0] = i
        ref = swarm.put(arr)
        view = swarm.get(ref, timeout=TIMEOUT)
        assert view[0] == i
        del ref, view
    gc.collect()
    grown = private_rss() - baseline
    assert grown < 150 * MiB, f"driver private memory grew by {grown / MiB:.0f} MiB after get loop"

    # task results that are dropped are freed too
    for i in range(8):
        ref = make_array.remote(100 * MiB // 8, i)
        swarm.wait([ref], timeout=TIMEOUT)
        del ref


def test_live_view_keeps_value_after_ref_dropped(cluster):
    n = 20 * MiB // 8
    view = swarm.get(swarm.put(np.full(n, 42, dtype=np.int64)), timeout=TIMEOUT)
    gc.collect()
    for i in range(6):  # other objects that could reuse freed memory
        other = swarm.put(np.full(n, -i, dtype=np.int64))
        other_result = swarm.get(make_array.remote(n, -100 - i), timeout=TIMEOUT)
        del other, other_result
        gc.collect()
    assert view[0] == 42 and view[-1] == 42
    assert int(view.sum()) == 42 * n


def test_object_too_large_for_store(isolated):
    swarm.init(num_cpus=1, object_store_memory=64 * MiB)
    big = np.zeros(100 * MiB // 8, dtype=np.int64)
    with pytest.raises(ObjectStoreFullError) as info:
        swarm.put(big)
    assert "object_store_memory" in str(info.value)
    # the store still works afterwards
    small = np.ones(MiB, dtype=np.uint8)
    np.testing.assert_array_equal(swarm.get(swarm.put(small), timeout=TIMEOUT), small)


# -- nested refs ----------------------------------------------------------------------------------

@pytest.mark.parametrize("inner_value", [5, "large"], ids=["small", "large"])
def test_ref_nested_in_put_value_stays_alive(cluster, inner_value):
    if inner_value == "large":
        inner_value = np.arange(20 * MiB // 8, dtype=np.int64)
    outer = swarm.put([swarm.put(inner_value)])  # the inner handle is dropped right away
    gc.collect()
    for _ in range(3):  # give a premature free time to happen
        swarm.get(identity_task.remote(0), timeout=TIMEOUT)
    inner = swarm.get(outer, timeout=TIMEOUT)[0]
    assert isinstance(inner, swarm.ObjectRef)
    got = swarm.get(inner, timeout=TIMEOUT)
    if isinstance(inner_value, np.ndarray):
        np.testing.assert_array_equal(got, inner_value)
    else:
        assert got == inner_value
    # and a task borrowing the nested ref can read it
    got = swarm.get(get_nested.remote(swarm.get(outer, timeout=TIMEOUT)), timeout=TIMEOUT)
    if isinstance(inner_value, np.ndarray):
        np.testing.assert_array_equal(got, inner_value)
    else:
        assert got == inner_value


@pytest.mark.parametrize("size", ["small", "large"])
def test_task_returning_ref_it_created(cluster, size):
    x = {"k": 1} if size == "small" else np.arange(20 * MiB // 8, dtype=np.int64)
    result = swarm.get(put_inside.remote(x), timeout=TIMEOUT)
    assert isinstance(result, list) and len(result) == 1
    inner = result[0]
    assert isinstance(inner, swarm.ObjectRef)
    gc.collect()
    got = swarm.get(inner, timeout=TIMEOUT)
    if size == "small":
        assert got == x
    else:
        np.testing.assert_array_equal(got, x)


def test_workers_of_a_numpy_driver_import_numpy_before_a_task_needs_it(isolated):
    import numpy  # noqa: F401  (this driver uses numpy: the workers of its cluster preload it)
    swarm.init(num_cpus=1)   # fresh workers: none has run a numpy task yet

    def numpy_loaded_without_asking() -> bool:
        import sys
        import time
        deadline = time.monotonic() + 30
        while "numpy" not in sys.modules and time.monotonic() < deadline:
            time.sleep(0.05)
        return "numpy" in sys.modules
    assert swarm.get(swarm.remote(numpy_loaded_without_asking).remote(), timeout=60)
