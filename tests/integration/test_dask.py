"""Dask on swarm: dask graphs (delayed, array, dataframe) run as swarm tasks through
``swarm.util.dask.swarm_dask_get``; results equal what numpy / pandas compute locally."""

from __future__ import annotations

import os

import numpy as np
import pytest

import swarm

dask = pytest.importorskip("dask")

from swarm.util.dask import (  # noqa: E402
    disable_dask_on_swarm,
    enable_dask_on_swarm,
    swarm_dask_get,
)

TIMEOUT = 60


@dask.delayed
def inc(x):
    return x + 1


@dask.delayed
def add(a, b):
    return a + b


@dask.delayed
def where_am_i(_dep):
    return os.getpid()


@dask.delayed
def explode(x):
    raise ZeroDivisionError(f"exploded on {x}")


def test_delayed_graph(cluster):
    total = add(inc(1), add(inc(2), inc(inc(3))))
    assert total.compute(scheduler=swarm_dask_get) == 2 + 3 + 5


def test_delayed_runs_in_workers_not_driver(cluster):
    pids = dask.compute(*[where_am_i(i) for i in range(4)], scheduler=swarm_dask_get)
    assert os.getpid() not in pids


def test_compute_many_collections_at_once(cluster):
    a, b = inc(1), add(inc(1), 10)
    assert dask.compute(a, b, [a, b], scheduler=swarm_dask_get) == (2, 12, [2, 12])


def test_task_exception_propagates(cluster):
    with pytest.raises(ZeroDivisionError, match="exploded on 3"):
        add(explode(3), 1).compute(scheduler=swarm_dask_get)


def test_array_computation_matches_numpy(cluster):
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(0)
    data = rng.random((60, 60))
    x = da.from_array(data, chunks=(20, 20))
    result = (x + x.T).sum().compute(scheduler=swarm_dask_get)
    assert np.isclose(result, (data + data.T).sum())
    y = da.arange(400, chunks=50).reshape(20, 20).rechunk(7)
    got = (y @ y.T + 1).mean(axis=0).compute(scheduler=swarm_dask_get)
    ref = np.arange(400).reshape(20, 20)
    np.testing.assert_allclose(got, (ref @ ref.T + 1).mean(axis=0))


def test_array_with_config_scheduler(cluster):
    da = pytest.importorskip("dask.array")
    x = da.ones((30, 30), chunks=10)
    with dask.config.set(scheduler=swarm_dask_get):
        assert (x + x.T).sum().compute() == 2 * 900


def test_enable_and_disable(cluster):
    da = pytest.importorskip("dask.array")
    x = da.ones((8, 8), chunks=4)
    try:
        enable_dask_on_swarm()
        assert dask.config.get("scheduler") is swarm_dask_get
        assert x.sum().compute() == 64
    finally:
        disable_dask_on_swarm()
    assert dask.config.get("scheduler", None) is not swarm_dask_get
    with enable_dask_on_swarm():  # also a context manager
        assert dask.config.get("scheduler") is swarm_dask_get
    assert dask.config.get("scheduler", None) is not swarm_dask_get


def test_persist_returns_refs(cluster):
    total = add(inc(1), inc(2))
    ref = swarm_dask_get(total.__dask_graph__(), total.key, swarm_persist=True)
    assert isinstance(ref, swarm.ObjectRef)
    assert swarm.get(ref, timeout=TIMEOUT) == 5
    [refs] = swarm_dask_get(total.__dask_graph__(), [total.key], swarm_persist=True)
    assert swarm.get(refs, timeout=TIMEOUT) == 5


def test_remote_args_apply_to_every_task(cluster):
    @dask.delayed
    def gpus(_dep):
        return os.environ.get("CUDA_VISIBLE_DEVICES")
    graph = dask.delayed(list)([gpus(inc(1)), gpus(2)])
    got = swarm_dask_get(graph.__dask_graph__(), graph.key,
                         swarm_remote_args={"num_gpus": 1, "num_cpus": 0})
    assert got == ["0", "0"]


def test_legacy_tuple_graph(cluster):
    from operator import add as op_add, mul
    dsk = {"a": 1, "b": (op_add, "a", 2), "c": (mul, "b", "b"), "d": [(op_add, "a", "c"), "b"],
           "alias": "c"}
    assert swarm_dask_get(dsk, "c") == 9
    assert swarm_dask_get(dsk, ["d", ["alias", "a"]]) == [[10, 3], [9, 1]]


def test_dataframe_groupby(cluster):
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    df = pd.DataFrame({"key": np.arange(200) % 7, "value": np.arange(200, dtype=float),
                       "other": np.arange(200) % 3})
    ddf = dd.from_pandas(df, npartitions=5)
    with enable_dask_on_swarm():
        got = ddf.groupby("key").value.sum().compute()
        means = ddf.groupby(["key", "other"]).value.mean().compute()
    pd.testing.assert_series_equal(got.sort_index(), df.groupby("key").value.sum().sort_index())
    pd.testing.assert_series_equal(means.sort_index(), df.groupby(["key", "other"]).value.mean().sort_index())


def test_dataframe_shuffle(cluster):
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    df = pd.DataFrame({"key": (np.arange(120) * 37) % 11, "value": np.arange(120)})
    ddf = dd.from_pandas(df, npartitions=4)
    with enable_dask_on_swarm():
        got = ddf.set_index("key").value.sum().compute()
        merged = ddf.merge(ddf, on="key").value_x.count().compute()
    assert got == df.value.sum()
    assert merged == len(df.merge(df, on="key"))
