"""Schedulers: ASHA stops bad trials early (fewer iterations than FIFO on the same seeded space) and
never the best one; the stop reaches the trainable's thread at its next report; median stopping too.
The first tests drive the rung logic by hand (no cluster)."""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

import pytest

from swarm import tune
from swarm.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule, TrialScheduler
from swarm.tune.search import BasicVariantGenerator

ITERATIONS = 16


def _trial(trial_id):
    return SimpleNamespace(trial_id=trial_id)


def test_asha_rungs_stop_below_the_quantile():
    asha = ASHAScheduler(metric="score", mode="max", max_t=8, grace_period=1, reduction_factor=2)
    good, bad = _trial("good"), _trial("bad")
    for t in (good, bad):
        asha.on_trial_add(None, t)
    assert asha.on_trial_result(None, good, {"training_iteration": 1, "score": 10}) == TrialScheduler.CONTINUE
    assert asha.on_trial_result(None, bad, {"training_iteration": 1, "score": 1}) == TrialScheduler.STOP
    for it in (2, 3, 4, 5, 6, 7):
        assert asha.on_trial_result(None, good, {"training_iteration": it, "score": 10}) == "CONTINUE"
    assert asha.on_trial_result(None, good, {"training_iteration": 8, "score": 10}) == TrialScheduler.STOP


def test_asha_in_min_mode_and_without_metric():
    asha = ASHAScheduler(metric="loss", mode="min", max_t=4, grace_period=1, reduction_factor=2)
    a, b = _trial("a"), _trial("b")
    assert asha.on_trial_result(None, a, {"training_iteration": 1, "loss": 0.1}) == "CONTINUE"
    assert asha.on_trial_result(None, b, {"training_iteration": 1, "loss": 5.0}) == "STOP"
    with pytest.raises(ValueError, match="metric and a mode"):
        ASHAScheduler().on_trial_result(None, a, {"training_iteration": 1})


def improving(config):
    """Score grows with the iteration at a rate set by config: a bad rate is bad at every rung."""
    try:
        for i in range(1, ITERATIONS + 1):
            time.sleep(0.005)
            tune.report({"score": config["rate"] * i})
    except BaseException as e:
        with open(os.path.join(config["marker_dir"], f"stopped_{config['rate']}"), "w") as f:
            f.write(type(e).__name__)
        raise


def _run(tmp_path, name, scheduler):
    space = {"rate": tune.uniform(0.0, 1.0), "marker_dir": str(tmp_path)}
    tuner = tune.Tuner(improving, param_space=space,
                       tune_config=tune.TuneConfig(num_samples=10, metric="score", mode="max",
                                                   scheduler=scheduler,
                                                   search_alg=BasicVariantGenerator(random_state=42)),
                       run_config=tune.RunConfig(storage_path=str(tmp_path), name=name, verbose=0))
    results = tuner.fit()
    assert not results.errors
    return results


def test_asha_stops_bad_trials_early_compared_to_fifo(cluster, tmp_path):
    fifo = _run(tmp_path, "fifo", FIFOScheduler())
    asha = _run(tmp_path, "asha", ASHAScheduler(time_attr="training_iteration", max_t=ITERATIONS,
                                                grace_period=1, reduction_factor=2))
    assert sorted(r.config["rate"] for r in fifo) == sorted(r.config["rate"] for r in asha)  # same space
    fifo_iters = sum(r.metrics["training_iteration"] for r in fifo)
    asha_iters = sum(r.metrics["training_iteration"] for r in asha)
    assert fifo_iters == 10 * ITERATIONS
    assert asha_iters < fifo_iters * 0.6, (asha_iters, fifo_iters)
    best = asha.get_best_result()
    assert best.config["rate"] == max(r.config["rate"] for r in asha)
    assert best.metrics["training_iteration"] == ITERATIONS  # the best trial is never cut
    stopped_early = [r for r in asha if r.metrics["training_iteration"] < ITERATIONS]
    assert stopped_early
    for r in stopped_early:  # the stop reached the trainable at its next report
        assert (tmp_path / f"stopped_{r.config['rate']}").read_text() == "TrialStopped"


def test_median_stopping_rule_stops_trials_below_the_median(cluster, tmp_path):
    fifo = _run(tmp_path, "fifo", FIFOScheduler())
    median = _run(tmp_path, "median", MedianStoppingRule(time_attr="training_iteration", grace_period=2,
                                                         min_samples_required=2))
    assert sum(r.metrics["training_iteration"] for r in median) < sum(
        r.metrics["training_iteration"] for r in fifo)
    assert median.get_best_result().metrics["training_iteration"] == ITERATIONS


def test_scheduler_and_tune_config_metric_conflict_is_explained(cluster, tmp_path):
    tuner = tune.Tuner(improving, tune_config=tune.TuneConfig(
        metric="score", mode="max", scheduler=ASHAScheduler(metric="loss", mode="min")),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0))
    with pytest.raises(ValueError, match="set them in one place"):
        tuner.fit()
