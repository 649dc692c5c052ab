"""Distributed RL on swarm (``swarm.rl``, ``examples/rl/train_cartpole.py``) on the shared 2-CPU cluster.

Runs are seeded and their results do not depend on timing or on the number of workers (every job
carries its own seeds and results are used in job order), so the thresholds below are exact facts of
the seed, not flaky statistics.
"""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import pytest

import swarm

pytest.importorskip("gymnasium")

from swarm.rl import (  # noqa: E402
    ESConfig,
    MLPPolicy,
    TrainConfig,
    Trainer,
    centered_ranks,
    config_for,
)
from swarm.rl.policy import policy_gradient, softmax  # noqa: E402
from swarm.rl.worker import RolloutWorker  # noqa: E402

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "rl" / "train_cartpole.py"


def run(config: TrainConfig, **hooks) -> tuple[Trainer, object]:
    trainer = Trainer(config, **hooks)
    try:
        return trainer, trainer.train()
    finally:
        trainer.close()


# -- pieces, in process ------------------------------------------------------------------------------

def test_policy_gradient_matches_finite_differences():
    policy = MLPPolicy(obs_dim=3, act_dim=4, hidden=(5,))
    rng = np.random.default_rng(1)
    flat = (rng.standard_normal(policy.num_params) * 0.5).astype(np.float64)
    obs = rng.standard_normal((7, 3))
    actions = rng.integers(0, 4, size=7)
    weights = rng.standard_normal(7)

    def objective(p: np.ndarray) -> float:
        logp = np.log(softmax(MLPPolicy.logits(policy.unflatten(p), obs)))
        return float(np.mean(weights * logp[np.arange(7), actions]))

    grad, _ = policy_gradient(policy, flat, obs, actions, weights)
    eps = 1e-5
    numeric = np.array([(objective(flat + eps * e) - objective(flat - eps * e)) / (2 * eps)
                        for e in np.eye(flat.size)])
    np.testing.assert_allclose(grad, numeric, rtol=1e-3, atol=1e-5)


def test_centered_ranks():
    r = centered_ranks(np.array([[10.0, -3.0], [7.0, 100.0]]))
    np.testing.assert_allclose(r, [[1 / 6, -0.5], [-1 / 6, 0.5]])


def test_worker_keeps_its_environment_across_calls():
    w = RolloutWorker("CartPole-v1", (8,))
    env = w.env
    params = w.policy.init_params(np.random.default_rng(0))
    a = w.evaluate(params, [1, 2])
    b = w.evaluate(params, [1, 2])
    assert w.env is env and w.episodes == 4 and w.steps == 2 * a["steps"]
    np.testing.assert_array_equal(a["returns"], b["returns"])  # seeded episodes replay exactly


# -- on the cluster ------------------------------------------------------------------------------------

def test_short_seeded_es_run_improves_cartpole(cluster):
    config = config_for("CartPole-v1", "es", num_workers=2, seed=0, iterations=8)
    config.target_return = None  # no solve check: exactly 8 iterations
    _, res = run(config)
    evals = [r.eval_return for r in res.records]
    assert len(res.records) == 8
    assert evals[0] < 30, evals            # a random policy drops the pole at once
    assert max(evals[-3:]) >= 300, evals   # the seed's curve: from ~10 to >= 300 in 8 iterations
    assert res.records[-1].mean_return >= res.records[0].mean_return + 200
    assert res.params_puts == 8 and res.refs_per_iteration == [1] * 8
    assert len(res.worker_pids) == 2


def test_short_seeded_pg_run_improves_cartpole(cluster):
    config = config_for("CartPole-v1", "pg", num_workers=2, seed=0, iterations=20)
    config.target_return = None
    _, res = run(config)
    first = res.records[0]
    assert first.mean_return < 40
    assert max(r.mean_return for r in res.records[-5:]) >= first.mean_return + 60, \
        [round(r.mean_return) for r in res.records]


def test_params_are_put_once_and_read_only_in_workers(cluster):
    # 256x256 hidden units: 270 KB of parameters, above the 100 KiB inline limit, so the params travel
    # through shared memory and every worker reads the same object as a read-only view
    config = TrainConfig(algo="es", num_workers=2, seed=3, iterations=2, target_return=None,
                         hidden=(256, 256), es=ESConfig(pop_size=8), iter_eval_episodes=2)
    trainer, res = run(config)
    assert res.params.nbytes > 100 * 1024
    assert res.params_puts == 2 and res.refs_per_iteration == [1, 1]
    assert res.params_writeable_seen == {False}
    assert len(res.worker_pids) == 2
    # the workers also got the noise table once, read-only, and kept their state across calls
    trainer2 = Trainer(TrainConfig(algo="es", num_workers=2, seed=3, iterations=1, target_return=None))
    try:
        trainer2.train()
        stats = swarm.get([w.stats.remote() for w in trainer2.workers], timeout=60)
    finally:
        trainer2.close()
    assert all(s["noise_writeable"] is False for s in stats)
    assert all(s["calls"] >= 2 and s["episodes"] >= 2 for s in stats)


def test_killed_rollout_worker_is_replaced_and_training_finishes(cluster):
    config = TrainConfig(algo="es", num_workers=2, seed=1, iterations=8, target_return=None)
    _, reference = run(config)

    killed: list[object] = []

    def kill_mid_iteration(trainer: Trainer, iteration: int) -> None:
        if iteration == 3 and not killed:  # after the first result of iteration 3: jobs still in flight
            killed.append(trainer.workers[0])
            swarm.kill(trainer.workers[0])

    trainer, res = run(TrainConfig(algo="es", num_workers=2, seed=1, iterations=8, target_return=None),
                       on_result=kill_mid_iteration)
    assert killed, "the hook never ran"
    assert len(res.restarts) >= 1 and res.restarts[0]["slot"] == 0 and res.restarts[0]["iteration"] == 3
    assert "killed" in res.restarts[0]["cause"]
    assert len(res.records) == 8                      # training went on to the end
    assert len(res.worker_pids) >= 3                  # the replacement did work
    # lost jobs were re-run with the same seeds: the run is exactly the one without the kill
    np.testing.assert_array_equal(res.params, reference.params)
    assert [r.eval_return for r in res.records] == [r.eval_return for r in reference.records]


def test_example_quick_solves_cartpole_and_plots(cluster, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("train_cartpole", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    png = tmp_path / "curve.png"
    assert module.main(["--quick", "--workers", "2", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "solved at iteration" in out and "speed-up with 2 workers" in out
    if importlib.util.find_spec("matplotlib") is not None:
        assert png.stat().st_size > 10_000
