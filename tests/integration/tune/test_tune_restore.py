"""Tuner.restore resumes an interrupted experiment without re-running finished trials (counted with
marker files): after trial errors (resume_errored / restart_errored), and after the driver process
itself was SIGKILLed mid-experiment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from tune_helpers import checkpointed, runs

from swarm import tune

HERE = Path(__file__).resolve().parent
SRC = str(HERE.parents[2] / "src")


def _first_run(tmp_path):
    (tmp_path / "fail_flag").touch()
    space = {"x": tune.grid_search([0, 1, 2, 3]), "marker_dir": str(tmp_path), "iterations": 6,
             "fail_at": 3, "fail_on": [2, 3]}
    results = tune.Tuner(checkpointed, param_space=space,
                         tune_config=tune.TuneConfig(metric="score", mode="max"),
                         run_config=tune.RunConfig(storage_path=str(tmp_path), name="exp", verbose=0)).fit()
    assert results.num_errors == 2 and results.num_terminated == 2
    os.remove(tmp_path / "fail_flag")
    return str(tmp_path / "exp")


def test_restore_resumes_errored_trials_and_skips_finished_ones(cluster, tmp_path):
    path = _first_run(tmp_path)
    assert tune.Tuner.can_restore(path) and not tune.Tuner.can_restore(tmp_path)
    results = tune.Tuner.restore(path, checkpointed, resume_errored=True).fit()
    assert results.num_terminated == 4 and not results.errors
    assert sorted(r.metrics["i"] for r in results) == [5, 5, 5, 5]
    assert runs(str(tmp_path), 0) == runs(str(tmp_path), 1) == [0]       # finished: not run again
    assert runs(str(tmp_path), 2) == runs(str(tmp_path), 3) == [0, 3]    # resumed after checkpoint i=2
    assert results.get_best_result().config["x"] == 3


def test_restore_without_resume_errored_keeps_the_errors(cluster, tmp_path):
    path = _first_run(tmp_path)
    results = tune.Tuner.restore(path, checkpointed).fit()
    assert results.num_errors == 2 and results.num_terminated == 2
    assert all(runs(str(tmp_path), x) == [0] for x in range(4))          # nothing ran


def test_restart_errored_starts_them_from_scratch(cluster, tmp_path):
    path = _first_run(tmp_path)
    results = tune.Tuner.restore(path, checkpointed, restart_errored=True).fit()
    assert results.num_terminated == 4
    assert runs(str(tmp_path), 2) == runs(str(tmp_path), 3) == [0, 0]
    assert runs(str(tmp_path), 0) == [0]


def test_restore_of_a_missing_experiment_says_what_to_pass(tmp_path):
    with pytest.raises(tune.TuneError, match="storage_path joined with RunConfig.name"):
        tune.Tuner.restore(str(tmp_path / "nope"), checkpointed)


DRIVER = textwrap.dedent("""
    import sys
    sys.path[:0] = [{src!r}, {here!r}]
    import swarm
    from swarm import tune
    from tune_helpers import checkpointed
    swarm.init(num_cpus=2)
    space = {{"x": tune.grid_search([0, 1, 2, 3]), "marker_dir": {markers!r}, "iterations": 4,
              "fail_at": 2, "fail_on": [2]}}
    results = tune.Tuner(checkpointed, param_space=space,
                         tune_config=tune.TuneConfig(max_concurrent_trials=1),
                         run_config=tune.RunConfig(storage_path={storage!r}, name="killed", verbose=0)).fit()
    print("fit returned", results.num_terminated, flush=True)
""")


@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
def test_restore_after_the_driver_was_interrupted(cluster, tmp_path, how):
    """Trials 0 and 1 finish, trial 2 hangs after two checkpoints, then the driver is SIGKILLed (with its
    whole process group) or gets Ctrl+C (fit() stops the trials, saves and returns); restore runs only
    trial 2 (from its checkpoint) and trial 3."""
    (tmp_path / "block_flag").touch()
    script = DRIVER.format(src=SRC, here=str(HERE), markers=str(tmp_path), storage=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "blocking").exists():
            assert proc.poll() is None, f"the driver exited before the trial hung: {proc.communicate()}"
            assert time.monotonic() < deadline, "the trial never reached its hang point"
            time.sleep(0.05)
        time.sleep(0.5)  # the state is saved at each checkpoint, at the end of the controller's step
        if how == "SIGINT":
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err
            assert "fit returned 2" in out and "Tuner.restore" in err
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    os.remove(tmp_path / "block_flag")
    results = tune.Tuner.restore(str(tmp_path / "killed"), checkpointed).fit()
    assert results.num_terminated == 4 and not results.errors
    assert runs(str(tmp_path), 0) == runs(str(tmp_path), 1) == [0]
    assert runs(str(tmp_path), 2) == [0, 2]
    assert runs(str(tmp_path), 3) == [0]
    assert sorted(r.metrics["i"] for r in results) == [3, 3, 3, 3]
