"""A trial whose actor dies (the trainable os._exit()s once) is restarted in a new actor from its
latest checkpoint and finishes; without max_failures it is an error."""

from __future__ import annotations

import os

from tune_helpers import checkpointed, runs

from swarm import tune
from swarm.exceptions import ActorDiedError


def _run(tmp_path, name, trainable=checkpointed, max_failures=0, **space):
    (tmp_path / "exit_flag").touch()
    space = {"x": 0, "marker_dir": str(tmp_path), "iterations": 8, "fail_at": 4, **space}
    return tune.Tuner(trainable, param_space=space, run_config=tune.RunConfig(
        storage_path=str(tmp_path), name=name, verbose=0,
        failure_config=tune.FailureConfig(max_failures=max_failures))).fit()


def test_killed_trial_actor_restarts_from_its_checkpoint(cluster, tmp_path):
    results = _run(tmp_path, "restart", max_failures=2)
    assert not results.errors
    result = results[0]
    assert result.metrics["i"] == 7 and result.metrics["training_iteration"] == 8
    assert runs(str(tmp_path), 0) == [0, 4]  # the second actor resumed after checkpoint i=3
    rows = open(os.path.join(result.path, "result.json")).read().splitlines()
    assert len(rows) == 8  # iterations 0-3 from the first actor, 4-7 from the second


def test_dead_actor_without_retries_is_an_actor_died_error(cluster, tmp_path):
    results = _run(tmp_path, "no_retry", max_failures=0)
    assert results.num_errors == 1
    assert isinstance(results[0].error, ActorDiedError)
    assert results[0].metrics["i"] == 3 and results[0].checkpoint is not None


class Crashy(tune.Trainable):
    def setup(self, config):
        self.flag = os.path.join(config["marker_dir"], "exit_flag")
        self.total = 0

    def step(self):
        if self.iteration == 3 and os.path.exists(self.flag):
            os.remove(self.flag)
            os._exit(1)
        self.total += self.iteration
        return {"total": self.total, "done": self.iteration >= 5}

    def save_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "total"), "w") as f:
            f.write(str(self.total))

    def load_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "total")) as f:
            self.total = int(f.read())


def test_class_trainable_restarts_from_its_checkpoint(cluster, tmp_path):
    (tmp_path / "exit_flag").touch()
    results = tune.Tuner(Crashy, param_space={"marker_dir": str(tmp_path)}, run_config=tune.RunConfig(
        storage_path=str(tmp_path), name="class", verbose=0,
        failure_config=tune.FailureConfig(max_failures=1),
        checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1))).fit()
    assert not results.errors
    assert results[0].metrics["training_iteration"] == 6
    assert results[0].metrics["total"] == 0 + 1 + 2 + 3 + 4 + 5  # no step lost or repeated in the total
    assert not (tmp_path / "exit_flag").exists()
