"""Tuner end to end through the public API: results, best result, errors, stopping criteria, class
trainables, resource requests, the progress table."""

from __future__ import annotations

import io
import os
import time

import pytest

from swarm import tune
from swarm.tune.search import BasicVariantGenerator


def _run(trainable, tmp_path, name="exp", space=None, run_kwargs=None, **tune_kwargs):
    run_kwargs = {"verbose": 0, **(run_kwargs or {})}
    tuner = tune.Tuner(trainable, param_space=space or {},
                       tune_config=tune.TuneConfig(**tune_kwargs),
                       run_config=tune.RunConfig(storage_path=str(tmp_path), name=name, **run_kwargs))
    return tuner.fit()


def quadratic(config):
    for step in range(5):
        tune.report({"loss": (config["x"] - 2) ** 2 + 1 / (step + 1), "step": step})


def test_fit_returns_a_result_per_trial_and_the_best_one(cluster, tmp_path):
    space = {"x": tune.grid_search([0, 1, 2, 3])}
    results = _run(quadratic, tmp_path, space=space, metric="loss", mode="min")
    assert len(results) == 4 and not results.errors and results.num_terminated == 4
    best = results.get_best_result()
    assert best.config["x"] == 2 and best.metrics["loss"] == pytest.approx(0.2)
    assert results.get_best_result(metric="loss", mode="max").config["x"] == 0
    assert results.get_best_result(metric="loss", mode="min", scope="all").config["x"] == 2
    for r in results:
        assert r.metrics["training_iteration"] == 5 and r.metrics["done"] is True
        assert os.path.dirname(r.path) == str(tmp_path / "exp")
        assert len(open(os.path.join(r.path, "result.json")).readlines()) == 5
    with pytest.raises(RuntimeError, match="no trial reported"):
        results.get_best_result(metric="nope", mode="min")


def test_get_dataframe_has_a_row_per_trial(cluster, tmp_path):
    pd = pytest.importorskip("pandas")
    results = _run(quadratic, tmp_path, space={"x": tune.grid_search([0, 2])}, metric="loss", mode="min")
    df = results.get_dataframe()
    assert isinstance(df, pd.DataFrame) and len(df) == 2
    assert sorted(df["config/x"]) == [0, 2]
    best_rows = results.get_dataframe(filter_metric="loss", filter_mode="min")
    assert sorted(best_rows["step"]) == [4, 4]
    assert len(results[0].metrics_dataframe) == 5


def failing(config):
    tune.report({"ok": 1})
    if config["x"] == 1:
        raise ValueError("bad hyperparameter x=1")
    tune.report({"ok": 2})


def test_a_failing_trial_is_an_error_in_the_results_not_an_exception(cluster, tmp_path):
    results = _run(failing, tmp_path, space={"x": tune.grid_search([0, 1, 2])})
    assert results.num_errors == 1 and len(results.errors) == 1
    assert isinstance(results.errors[0], ValueError) and "bad hyperparameter" in str(results.errors[0])
    errored = [r for r in results if r.error is not None][0]
    assert errored.config["x"] == 1 and errored.metrics["ok"] == 1
    assert "bad hyperparameter" in open(os.path.join(errored.path, "error.txt")).read()


def forgets_metric(config):
    tune.report({"los": 1.0})


def test_missing_metric_names_the_metric(cluster, tmp_path):
    results = _run(forgets_metric, tmp_path, metric="loss", mode="min")
    assert results.num_errors == 1
    assert "'loss'" in str(results.errors[0]) and "los" in str(results.errors[0])


def counts_forever(config):
    i = 0
    try:
        while True:
            i += 1
            tune.report({"i": i})
    except BaseException as e:  # the stop signal reaches the trainable's thread as an exception
        with open(os.path.join(config["marker_dir"], f"stopped_{config['x']}"), "w") as f:
            f.write(type(e).__name__)
        raise


def test_stop_dict_ends_trials_and_signals_their_thread(cluster, tmp_path):
    space = {"x": tune.grid_search([0, 1]), "marker_dir": str(tmp_path)}
    results = _run(counts_forever, tmp_path, space=space, run_kwargs={"stop": {"training_iteration": 3}})
    assert [r.metrics["i"] for r in results] == [3, 3]
    for x in (0, 1):
        path = tmp_path / f"stopped_{x}"
        deadline = time.monotonic() + 10
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.read_text() == "TrialStopped"


def test_stop_function_and_stopper_objects(cluster, tmp_path):
    space = {"x": tune.grid_search([0, 1]), "marker_dir": str(tmp_path)}
    results = _run(counts_forever, tmp_path, "fn", space=space,
                   run_kwargs={"stop": lambda trial_id, result: result["i"] >= 2 + result["config"]["x"]})
    assert sorted(r.metrics["i"] for r in results) == [2, 3]
    results = _run(counts_forever, tmp_path, "obj", space=space,
                   run_kwargs={"stop": tune.stopper.MaximumIterationStopper(4)})
    assert [r.metrics["i"] for r in results] == [4, 4]


class Counter(tune.Trainable):
    def setup(self, config):
        self.value = config["start"]

    def step(self):
        self.value += 1
        return {"value": self.value}

    def save_checkpoint(self, checkpoint_dir):
        return {"value": self.value}

    def load_checkpoint(self, checkpoint):
        self.value = checkpoint["value"]


def test_class_trainable_with_periodic_and_final_checkpoints(cluster, tmp_path):
    results = _run(Counter, tmp_path, space={"start": tune.grid_search([0, 100])},
                   run_kwargs={"stop": {"training_iteration": 5},
                               "checkpoint_config": tune.CheckpointConfig(checkpoint_frequency=2,
                                                                          checkpoint_at_end=True)})
    assert sorted(r.metrics["value"] for r in results) == [5, 105]
    for r in results:
        names = sorted(d for d in os.listdir(r.path) if d.startswith("checkpoint_"))
        assert names == ["checkpoint_000000", "checkpoint_000001", "checkpoint_000002"]  # iter 2, 4, end
        restored = Counter(config={"start": -1})
        restored.restore(r.checkpoint)
        assert restored.value == r.metrics["value"] and restored.iteration == 5


def test_class_trainable_runs_locally_too():
    trainable = Counter(config={"start": 10})
    assert trainable.train()["value"] == 11 and trainable.iteration == 1


def sleeper(config):
    """Records when it ran; with ``rendezvous``, first waits (up to 20 s) until 2 trials have started."""
    start = time.time()
    marker_dir = config["marker_dir"]
    open(os.path.join(marker_dir, f"started_{config['x']}"), "w").close()
    met = False
    while config["rendezvous"] and time.time() - start < 20 and not met:
        met = sum(name.startswith("started_") for name in os.listdir(marker_dir)) >= 2
        time.sleep(0.01)
    time.sleep(0.1)
    tune.report({"start": start, "end": time.time(), "met": met})


def _max_overlap(results) -> int:
    events = sorted([(r.metrics["start"], 1) for r in results] + [(r.metrics["end"], -1) for r in results],
                    key=lambda e: (e[0], e[1]))
    best = running = 0
    for _, delta in events:
        running += delta
        best = max(best, running)
    return best


def test_trials_run_as_actors_with_their_resource_requests(cluster, tmp_path):
    def run(trainable, name, rendezvous=False, **kwargs):
        (tmp_path / name).mkdir()
        space = {"x": tune.grid_search([0, 1, 2, 3]), "marker_dir": str(tmp_path / name),
                 "rendezvous": rendezvous}
        return _run(trainable, tmp_path, name, space=space, **kwargs)

    one_cpu = run(sleeper, "one", rendezvous=True)
    assert all(r.metrics["met"] for r in one_cpu)        # 1 CPU each: 2 trials at once on 2 CPUs
    assert _max_overlap(one_cpu) == 2
    assert _max_overlap(run(tune.with_resources(sleeper, {"cpu": 2}), "two")) == 1
    assert _max_overlap(run(tune.with_resources(sleeper, {"cpu": 0, "custom": 1}), "custom")) == 1
    assert _max_overlap(run(sleeper, "capped", max_concurrent_trials=1)) == 1


def test_a_request_larger_than_the_cluster_is_refused(cluster, tmp_path):
    with pytest.raises(tune.TuneError, match="cluster has"):
        _run(tune.with_resources(sleeper, {"cpu": 64}), tmp_path)


def uses_parameters(config, data):
    tune.report({"total": sum(data) * config["x"]})


def test_with_parameters_passes_large_objects_through_the_store(cluster, tmp_path):
    trainable = tune.with_parameters(uses_parameters, data=list(range(1000)))
    results = _run(trainable, tmp_path, space={"x": tune.grid_search([1, 2])})
    assert sorted(r.metrics["total"] for r in results) == [499500, 999000]


def test_final_table_when_not_a_terminal(cluster, tmp_path, capsys):
    _run(quadratic, tmp_path, space={"x": tune.grid_search([0, 1])}, metric="loss", mode="min",
         run_kwargs={"verbose": 1})
    out = capsys.readouterr().out
    assert out.count("== Status ==") == 1 and "\x1b[" not in out
    assert "quadratic_" in out and "TERMINATED" in out and "loss" in out and "| x " in out


def slow_quadratic(config):
    for step in range(4):
        time.sleep(0.1)
        tune.report({"loss": (config["x"] - 2) ** 2 + 1 / (step + 1)})


def test_live_table_redraws_in_place(cluster, tmp_path):
    stream = io.StringIO()
    reporter = tune.CLIReporter(max_report_frequency=0.05, print_intermediate_tables=True, out=stream)
    _run(slow_quadratic, tmp_path, space={"x": tune.grid_search([0, 1])}, metric="loss", mode="min",
         run_kwargs={"verbose": 1, "progress_reporter": reporter},
         search_alg=BasicVariantGenerator())
    text = stream.getvalue()
    assert text.count("== Status ==") >= 3 and "RUNNING" in text
    assert "\x1b[" in text and text.rstrip().endswith("+")


def test_time_budget_stops_everything(cluster, tmp_path):
    space = {"x": tune.grid_search([0, 1, 2, 3]), "marker_dir": str(tmp_path)}
    start = time.monotonic()
    results = _run(slow_counter, tmp_path, space=space, time_budget_s=1.0)
    assert time.monotonic() - start < 15
    assert all(r.metrics.get("i", 0) < 100 for r in results)
    assert {r.error for r in results} == {None}


def slow_counter(config):
    for i in range(1, 100):
        time.sleep(0.05)
        tune.report({"i": i})


def numpy_metrics(config):
    np = pytest.importorskip("numpy")
    tune.report({"loss": np.float32(config["x"]), "steps": np.int64(3), "vec": np.arange(2)})


def test_numpy_metrics_are_numbers(cluster, tmp_path):
    space = {"x": tune.grid_search([2.0, 1.0])}
    results = _run(numpy_metrics, tmp_path, space=space, metric="loss", mode="min")
    assert results.get_best_result().config["x"] == 1.0
    line = open(os.path.join(results[0].path, "result.json")).readline()
    assert '"vec": [0, 1]' in line


class Recorder(tune.Callback):
    def __init__(self):
        self.events = []

    def on_trial_start(self, iteration, trials, trial, **info):
        self.events.append(("start", trial.trial_id))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.events.append(("result", trial.trial_id))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.events.append(("complete", trial.trial_id))


def test_callbacks_see_the_trial_lifecycle(cluster, tmp_path):
    recorder = Recorder()
    results = _run(quadratic, tmp_path, space={"x": 1}, run_kwargs={"callbacks": [recorder]})
    tid = results[0].metrics["trial_id"]
    assert recorder.events == [("start", tid)] + [("result", tid)] * 5 + [("complete", tid)]


def pid_reporter(config):
    tune.report({"pid": os.getpid(), "x": config["x"]})


def test_actors_are_reused_between_trials_unless_disabled(cluster, tmp_path):
    space = {"x": tune.grid_search([0, 1, 2])}
    reused = _run(pid_reporter, tmp_path, "reused", space=space, max_concurrent_trials=1)
    assert len({r.metrics["pid"] for r in reused}) == 1
    fresh = _run(pid_reporter, tmp_path, "fresh", space=space, max_concurrent_trials=1, reuse_actors=False)
    assert len({r.metrics["pid"] for r in fresh}) == 3
