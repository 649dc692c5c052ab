"""Checkpoints: the Checkpoint round trip, persistence of reported checkpoints into the trial
directory, get_checkpoint() inside a trial, retention (num_to_keep)."""

from __future__ import annotations

import json
import os
import shutil

from tune_helpers import checkpointed, report_with_checkpoint, resume_point

from swarm import tune


def test_checkpoint_round_trip(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "model.bin").write_bytes(b"\x00\x01weights")
    (src / "sub" / "opt.json").write_text('{"lr": 0.1}')
    checkpoint = tune.Checkpoint.from_directory(src)
    checkpoint.set_metadata({"epoch": 3})
    checkpoint.update_metadata({"note": "x"})
    copy = tune.Checkpoint.from_directory(checkpoint.to_directory(tmp_path / "copy"))
    assert (tmp_path / "copy" / "model.bin").read_bytes() == b"\x00\x01weights"
    assert copy.get_metadata() == {"epoch": 3, "note": "x"}
    with copy.as_directory() as d:
        assert json.load(open(os.path.join(d, "sub", "opt.json"))) == {"lr": 0.1}
    fresh = checkpoint.to_directory()  # a new temporary directory
    try:
        assert os.path.exists(os.path.join(fresh, "sub", "opt.json")) and fresh != str(src)
    finally:
        shutil.rmtree(fresh)


def test_reported_checkpoints_are_persisted_in_the_trial_directory(cluster, tmp_path):
    space = {"x": tune.grid_search([1, 2]), "marker_dir": str(tmp_path), "iterations": 4}
    results = tune.Tuner(checkpointed, param_space=space,
                         run_config=tune.RunConfig(storage_path=str(tmp_path), name="ckpt", verbose=0)).fit()
    for r in results:
        # the trainable's temporary directories are gone; the copies in the trial dir remain
        assert r.checkpoint.path == os.path.join(r.path, "checkpoint_000003")
        with r.checkpoint.as_directory() as d:
            assert json.load(open(os.path.join(d, "state.json"))) == {"i": 3}
        assert [m["i"] for _, m in r.best_checkpoints] == [0, 1, 2, 3]
        assert tune.Result.from_path(r.path).checkpoint == r.checkpoint


def test_num_to_keep_keeps_the_best_and_the_latest(cluster, tmp_path):
    space = {"x": 1, "marker_dir": str(tmp_path), "iterations": 6}
    config = tune.CheckpointConfig(num_to_keep=2, checkpoint_score_attribute="score",
                                   checkpoint_score_order="min")
    results = tune.Tuner(checkpointed, param_space=space, run_config=tune.RunConfig(
        storage_path=str(tmp_path), name="keep", verbose=0, checkpoint_config=config)).fit()
    r = results[0]
    on_disk = sorted(d for d in os.listdir(r.path) if d.startswith("checkpoint_"))
    assert on_disk == ["checkpoint_000000", "checkpoint_000001", "checkpoint_000005"]  # 2 lowest + latest
    assert r.checkpoint.path.endswith("checkpoint_000005")


def resumes_from_own_checkpoint(config):
    start = resume_point()
    for i in range(start, 3):
        report_with_checkpoint({"i": i, "seen": tune.get_checkpoint() is not None}, i)
    tune.report({"context": tune.get_context().get_trial_id()})


def test_get_checkpoint_returns_the_latest_reported_one(cluster, tmp_path):
    results = tune.Tuner(resumes_from_own_checkpoint, run_config=tune.RunConfig(
        storage_path=str(tmp_path), name="latest", verbose=0)).fit()
    rows = [json.loads(line) for line in open(os.path.join(results[0].path, "result.json"))]
    assert [row.get("seen") for row in rows[:3]] == [False, True, True]
    assert rows[-1]["context"] == rows[-1]["trial_id"]


def test_report_outside_a_trial_is_a_logged_no_op(caplog):
    tune.report({"x": 1})
    assert tune.get_checkpoint() is None
    assert "outside of a Tune trial" in caplog.text
