"""Search spaces: domains sample within their bounds, grid_search expands every combination,
sample_from sees the rest of the config, a seeded search repeats itself. Mostly pure (no cluster);
the last tests go through Tuner.fit()."""

from __future__ import annotations

import random

import pytest

from swarm import tune
from swarm.tune.search import BasicVariantGenerator, variant_generator as vg


def _configs(space: dict, num_samples: int = 1, **kwargs) -> list[dict]:
    gen = BasicVariantGenerator(**kwargs)
    gen.setup(space, num_samples)
    out = []
    while not gen.is_finished():
        out.append(gen.next_config(f"t{len(out)}"))
    return out


def test_domains_sample_within_bounds():
    rng = random.Random(0)
    for _ in range(200):
        assert 2.0 <= tune.uniform(2, 3).sample(rng) <= 3.0
        assert 1e-4 <= tune.loguniform(1e-4, 1e-1).sample(rng) <= 1e-1
        assert 0 <= tune.randint(0, 3).sample(rng) < 3
        assert tune.qrandint(0, 10, 5).sample(rng) in (0, 5, 10)
        value = tune.quniform(0, 1, 0.25).sample(rng)
        assert value in (0, 0.25, 0.5, 0.75, 1.0)
        assert tune.choice(["a", "b"]).sample(rng) in ("a", "b")


def test_bad_bounds_are_rejected_with_a_reason():
    with pytest.raises(ValueError, match="lower bound"):
        tune.uniform(3, 2)
    with pytest.raises(ValueError, match="positive lower bound"):
        tune.loguniform(0, 1)
    with pytest.raises(ValueError, match="empty"):
        tune.randint(3, 3)


def test_grid_search_expands_all_combinations_times_num_samples():
    space = {"a": tune.grid_search([1, 2, 3]), "nested": {"b": tune.grid_search(["x", "y"])},
             "c": tune.uniform(0, 1), "const": 7}
    configs = _configs(space, num_samples=2)
    assert len(configs) == 12
    combos = [(c["a"], c["nested"]["b"]) for c in configs]
    assert sorted(combos) == sorted([(a, b) for a in (1, 2, 3) for b in "xy"] * 2)
    assert all(c["const"] == 7 and 0 <= c["c"] <= 1 for c in configs)


def test_sample_from_reads_resolved_entries():
    space = {"a": tune.grid_search([1, 2]), "b": tune.sample_from(lambda spec: spec.config.a * 10),
             "c": tune.sample_from(lambda spec: spec.config["b"] + 1)}
    assert [(c["a"], c["b"], c["c"]) for c in _configs(space)] == [(1, 10, 11), (2, 20, 21)]


def test_seeded_random_search_repeats_and_points_come_first():
    space = {"lr": tune.loguniform(1e-4, 1e-1), "layers": tune.randint(1, 5)}
    assert _configs(space, 5, random_state=3) == _configs(space, 5, random_state=3)
    assert _configs(space, 5, random_state=3) != _configs(space, 5, random_state=4)
    configs = _configs(space, 3, points_to_evaluate=[{"lr": 0.5}], random_state=0)
    assert len(configs) == 3 and configs[0]["lr"] == 0.5


def test_flatten_round_trip():
    config = {"a": {"b": 1, "c": {"d": 2}}, "e": 3}
    assert vg.flatten(config) == {"a/b": 1, "a/c/d": 2, "e": 3}
    assert vg.unflatten(vg.flatten(config)) == config


def _echo(config):
    tune.report({"a": config["a"], "b": config["b"]})


def test_tuner_runs_one_trial_per_grid_combination(cluster, tmp_path):
    space = {"a": tune.grid_search([1, 2, 3]), "b": tune.grid_search([10, 20])}
    results = tune.Tuner(_echo, param_space=space,
                         run_config=tune.RunConfig(storage_path=str(tmp_path), name="grid", verbose=0)).fit()
    assert len(results) == 6 and not results.errors
    expected = [(a, b) for a in (1, 2, 3) for b in (10, 20)]
    assert sorted((r.config["a"], r.config["b"]) for r in results) == expected
    assert all(r.metrics["a"] == r.config["a"] for r in results)
