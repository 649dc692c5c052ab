"""swarm.tune example: a Ray Tune program that runs on swarm by changing its imports.

Fits a tiny model (y = w·x + b by gradient descent, in pure Python) and searches its learning rate
and batch size two ways:
  (a) random search with ASHA early stopping: bad learning rates are cut at the first rungs;
  (b) Optuna's TPE (when optuna is installed), one trial per learning rate it proposes.
Trials checkpoint their weights each epoch; the best trial's checkpoint is loaded at the end.

Run:  python examples/tune_example.py        (about 10 s on 2 cores)
"""

from __future__ import annotations

import json
import os
import random
import tempfile

import swarm as ray
from swarm import tune
from swarm.tune.schedulers import ASHAScheduler
from swarm.tune.search import ConcurrencyLimiter

EPOCHS = 20
DATA = [(x / 50, 3.0 * x / 50 - 1.0 + random.Random(x).gauss(0, 0.05)) for x in range(100)]


def train_model(config: dict) -> None:
    """One epoch = one pass of mini-batch gradient descent, then tune.report(loss, checkpoint)."""
    w, b, start = 0.0, 0.0, 0
    checkpoint = tune.get_checkpoint()
    if checkpoint:  # resuming after a failure or Tuner.restore
        with checkpoint.as_directory() as d, open(os.path.join(d, "model.json")) as f:
            state = json.load(f)
        w, b, start = state["w"], state["b"], state["epoch"] + 1
    rng = random.Random(config["seed"])
    for epoch in range(start, EPOCHS):
        data = DATA[:]
        rng.shuffle(data)
        for i in range(0, len(data), config["batch_size"]):
            batch = data[i:i + config["batch_size"]]
            gw = sum(2 * (w * x + b - y) * x for x, y in batch) / len(batch)
            gb = sum(2 * (w * x + b - y) for x, y in batch) / len(batch)
            w, b = w - config["lr"] * gw, b - config["lr"] * gb
        loss = sum((w * x + b - y) ** 2 for x, y in DATA) / len(DATA)
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "model.json"), "w") as f:
                json.dump({"w": w, "b": b, "epoch": epoch}, f)
            tune.report({"loss": loss, "w": w, "b": b}, checkpoint=tune.Checkpoint.from_directory(d))


def main() -> int:
    ray.init(ignore_reinit_error=True)
    storage = tempfile.mkdtemp(prefix="swarm_tune_example_")
    space = {"lr": tune.loguniform(1e-4, 0.5), "batch_size": tune.choice([8, 16, 32]), "seed": 0}

    print("(a) random search + ASHA")
    tuner = tune.Tuner(
        tune.with_resources(train_model, {"cpu": 1}),
        param_space=space,
        tune_config=tune.TuneConfig(num_samples=12, metric="loss", mode="min",
                                    scheduler=ASHAScheduler(max_t=EPOCHS, grace_period=2, reduction_factor=3),
                                    search_alg=tune.search.BasicVariantGenerator(random_state=1)),
        run_config=tune.RunConfig(name="asha", storage_path=storage, verbose=1))
    results = tuner.fit()
    best = results.get_best_result()
    epochs = sum(r.metrics["training_iteration"] for r in results)
    print(f"best lr={best.config['lr']:.4g} batch={best.config['batch_size']} "
          f"loss={best.metrics['loss']:.5f}; ASHA ran {epochs} of {12 * EPOCHS} epochs")
    with best.checkpoint.as_directory() as d, open(os.path.join(d, "model.json")) as f:
        model = json.load(f)
    print(f"best model: y = {model['w']:.3f}·x + {model['b']:.3f}   (truth: y = 3·x - 1)")
    ok = abs(model["w"] - 3) < 0.2 and abs(model["b"] + 1) < 0.2

    try:
        from swarm.tune.search.optuna import OptunaSearch
    except ImportError:
        print("(b) skipped: pip install optuna")
        return 0 if ok else 1
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print("\n(b) Optuna TPE")
    results = tune.Tuner(
        train_model, param_space=space,
        tune_config=tune.TuneConfig(num_samples=12, metric="loss", mode="min",
                                    search_alg=ConcurrencyLimiter(OptunaSearch(seed=0), max_concurrent=2)),
        run_config=tune.RunConfig(name="optuna", storage_path=storage, verbose=1)).fit()
    best = results.get_best_result()
    print(f"best lr={best.config['lr']:.4g} loss={best.metrics['loss']:.5f}; results in {storage}")
    return 0 if ok and best.metrics["loss"] < 0.01 else 1


if __name__ == "__main__":
    raise SystemExit(main())
