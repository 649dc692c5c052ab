"""The ``"swarm"`` joblib backend (``swarm.util.joblib.register_swarm``), on the shared 2-CPU cluster.

joblib (and scikit-learn, for the estimator test) are optional: the tests skip without them.
"""

from __future__ import annotations

import math
import os
import sys

import pytest

import swarm

joblib = pytest.importorskip("joblib")

from joblib import Parallel, delayed, parallel_backend  # noqa: E402

from swarm.util.joblib import register_swarm  # noqa: E402

TIMEOUT = 60


def square(x):
    return x * x


def slow_sqrt(x):
    return math.sqrt(x)


def fail_on(x, bad):
    if x == bad:
        raise ValueError(f"bad value {x}")
    return x


def pid(_x):
    return os.getpid()


def nested(n):
    # a Parallel inside a task: joblib gives it the nested (thread) backend
    return sum(Parallel(n_jobs=2)(delayed(square)(i) for i in range(n)))


@pytest.fixture(autouse=True)
def _registered(cluster):
    register_swarm()
    yield


def test_parallel_equals_serial():
    serial = [square(x) for x in range(200)]
    with parallel_backend("swarm"):
        assert Parallel(n_jobs=-1)(delayed(square)(x) for x in range(200)) == serial
        assert Parallel(n_jobs=2, batch_size=7)(delayed(square)(x) for x in range(200)) == serial
        roots = Parallel(n_jobs=2)(delayed(slow_sqrt)(x) for x in range(50))
        assert roots == [math.sqrt(x) for x in range(50)]
        assert Parallel(n_jobs=-1)(delayed(square)(x) for x in []) == []


def test_runs_on_swarm_workers():
    with parallel_backend("swarm"):
        pids = Parallel(n_jobs=2, batch_size=1)(delayed(pid)(x) for x in range(10))
    assert os.getpid() not in pids


def test_backend_by_name_in_parallel():
    assert Parallel(n_jobs=2, backend="swarm")(delayed(square)(x) for x in range(10)) == \
        [x * x for x in range(10)]


def test_effective_n_jobs_is_cluster_cpus():
    cpus = int(swarm.cluster_resources()["CPU"])
    with parallel_backend("swarm"):
        assert joblib.effective_n_jobs(-1) == cpus
        assert joblib.effective_n_jobs(-2) == max(cpus - 1, 1)
        assert joblib.effective_n_jobs(3) == 3
    from swarm.util.joblib import _backend_class
    with pytest.raises(ValueError):
        _backend_class()().effective_n_jobs(0)


def test_exceptions_propagate():
    with parallel_backend("swarm"):
        with pytest.raises(ValueError, match="bad value 13"):
            Parallel(n_jobs=2)(delayed(fail_on)(x, 13) for x in range(40))
        # the backend is usable again afterwards
        assert Parallel(n_jobs=2)(delayed(square)(x) for x in range(5)) == [0, 1, 4, 9, 16]


def test_return_as_generator():
    with parallel_backend("swarm"):
        gen = Parallel(n_jobs=2, return_as="generator")(delayed(square)(x) for x in range(30))
        assert list(gen) == [x * x for x in range(30)]
        unordered = Parallel(n_jobs=2, return_as="generator_unordered")(delayed(square)(x) for x in range(30))
        assert sorted(unordered) == [x * x for x in range(30)]


def test_nested_parallel_inside_a_task():
    with parallel_backend("swarm"):
        assert Parallel(n_jobs=2)(delayed(nested)(n) for n in range(1, 6)) == \
            [sum(i * i for i in range(n)) for n in range(1, 6)]


def test_reuse_parallel_instance():
    with parallel_backend("swarm"):
        with Parallel(n_jobs=2) as parallel:
            a = parallel(delayed(square)(x) for x in range(20))
            b = parallel(delayed(square)(x) for x in range(20, 40))
    assert a + b == [x * x for x in range(40)]


def test_task_options_through_backend_kwargs():
    with parallel_backend("swarm", swarm_remote_args={"resources": {"custom": 1}, "num_cpus": 0}):
        assert Parallel(n_jobs=2)(delayed(square)(x) for x in range(10)) == [x * x for x in range(10)]


def test_register_without_joblib_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "joblib", None)  # import joblib now raises ImportError
    with pytest.raises(ImportError, match="pip install joblib"):
        register_swarm()


def test_sklearn_estimator_n_jobs():
    sklearn = pytest.importorskip("sklearn")
    assert sklearn
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, cross_val_score

    X, y = make_classification(n_samples=200, n_features=8, random_state=0)
    grid = {"C": [0.1, 1.0, 10.0]}
    serial = GridSearchCV(LogisticRegression(max_iter=500), grid, cv=3, n_jobs=1).fit(X, y)
    with parallel_backend("swarm"):
        search = GridSearchCV(LogisticRegression(max_iter=500), grid, cv=3, n_jobs=2).fit(X, y)
        scores = cross_val_score(LogisticRegression(max_iter=500), X, y, cv=4, n_jobs=2)
        forest = RandomForestClassifier(n_estimators=20, n_jobs=2, random_state=0).fit(X, y)
    assert search.best_params_ == serial.best_params_
    assert search.cv_results_["mean_test_score"].tolist() == pytest.approx(
        serial.cv_results_["mean_test_score"].tolist())
    assert scores.tolist() == pytest.approx(
        cross_val_score(LogisticRegression(max_iter=500), X, y, cv=4, n_jobs=1).tolist())
    assert forest.score(X, y) > 0.9
