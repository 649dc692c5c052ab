"""OptunaSearch (the real optuna library, ask-and-tell) runs and improves on a simple quadratic."""

from __future__ import annotations

import statistics

import pytest

from swarm import tune

optuna = pytest.importorskip("optuna")

from swarm.tune.search import ConcurrencyLimiter  # noqa: E402
from swarm.tune.search.optuna import OptunaSearch  # noqa: E402


def quadratic(config):
    tune.report({"loss": (config["x"] - 3) ** 2 + (config["y"] + 1) ** 2, "kind": config["kind"]})


def test_optuna_improves_on_a_quadratic(cluster, tmp_path):
    """TPE samples its first 10 trials at random, then models: the modelled trials must do better.
    One trial at a time, so the seeded run is the same every time."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = {"x": tune.uniform(-10, 10), "y": tune.uniform(-10, 10), "kind": tune.choice(["a", "b"]),
             "const": 1}
    searcher = OptunaSearch(seed=0)
    results = tune.Tuner(quadratic, param_space=space, tune_config=tune.TuneConfig(
        num_samples=30, metric="loss", mode="min", search_alg=ConcurrencyLimiter(searcher, 1)),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="optuna", verbose=0)).fit()
    assert len(results) == 30 and not results.errors
    losses = [r.metrics["loss"] for r in results]  # trial order = suggestion order
    assert all(r.config["const"] == 1 and r.config["kind"] in ("a", "b") for r in results)
    assert min(losses[10:]) < min(losses[:10])
    assert statistics.median(losses[-10:]) < statistics.median(losses[:10])
    assert min(losses) < 1.0
    study = searcher.study
    assert len(study.trials) == 30 and study.best_value == pytest.approx(min(losses))


def test_optuna_define_by_run_space_and_points(cluster, tmp_path):
    def space(trial):
        trial.suggest_float("x", -5, 5)
        trial.suggest_float("y", -5, 5)
        return {"kind": "a"}

    searcher = OptunaSearch(space=space, metric="loss", mode="min", seed=1,
                            points_to_evaluate=[{"x": 3.0, "y": -1.0}])
    results = tune.Tuner(quadratic, tune_config=tune.TuneConfig(num_samples=4, search_alg=searcher),
                         run_config=tune.RunConfig(storage_path=str(tmp_path), name="dbr", verbose=0)).fit()
    assert results[0].metrics["loss"] == 0.0  # the point came first
    assert results.get_best_result(metric="loss", mode="min").config == {"x": 3.0, "y": -1.0, "kind": "a"}


def test_optuna_rejects_grid_search_with_advice(cluster, tmp_path):
    with pytest.raises(ValueError, match="tune.choice"):
        tune.Tuner(quadratic, param_space={"x": tune.grid_search([1, 2])}, tune_config=tune.TuneConfig(
            metric="loss", mode="min", search_alg=OptunaSearch()),
            run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0)).fit()
