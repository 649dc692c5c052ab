"""Trainables shared by the tune tests and by the driver scripts they run in subprocesses (so both
import them by name). Each records what it did in marker files under ``config["marker_dir"]``."""

from __future__ import annotations

import json
import os
import tempfile
import time

from swarm import tune


def record_run(config: dict, start: int) -> None:
    """One line per invocation of the trainable: the iteration it started from."""
    with open(os.path.join(config["marker_dir"], f"runs_{config['x']}.txt"), "a") as f:
        f.write(f"{start}\n")


def runs(marker_dir: str, x: int) -> list[int]:
    try:
        with open(os.path.join(marker_dir, f"runs_{x}.txt")) as f:
            return [int(line) for line in f.read().split()]
    except FileNotFoundError:
        return []


def resume_point() -> int:
    """The iteration after the one saved in the trial's checkpoint (0 on a fresh start)."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return 0
    with checkpoint.as_directory() as d, open(os.path.join(d, "state.json")) as f:
        return json.load(f)["i"] + 1


def report_with_checkpoint(metrics: dict, i: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "state.json"), "w") as f:
            json.dump({"i": i}, f)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))


def checkpointed(config: dict) -> None:
    """``iterations`` iterations, a checkpoint at each. Misbehaves once the named flag files exist:
    ``fail_flag``: raise at ``fail_at`` for x in ``fail_on``; ``exit_flag``: ``os._exit`` at ``fail_at``
    (the flag is removed first, so only once); ``block_flag``: hang at ``fail_at`` for x in
    ``fail_on`` after creating ``blocking``."""
    start = resume_point()
    record_run(config, start)
    for i in range(start, config.get("iterations", 6)):
        if i == config.get("fail_at", -1):
            marker_dir = config["marker_dir"]
            if config["x"] in config.get("fail_on", ()) and os.path.exists(f"{marker_dir}/fail_flag"):
                raise RuntimeError(f"simulated failure of trial x={config['x']}")
            if os.path.exists(f"{marker_dir}/exit_flag"):
                os.remove(f"{marker_dir}/exit_flag")
                os._exit(1)
            if config["x"] in config.get("fail_on", ()) and os.path.exists(f"{marker_dir}/block_flag"):
                open(f"{marker_dir}/blocking", "w").close()
                time.sleep(120)
        report_with_checkpoint({"i": i, "score": config["x"] * 10 + i}, i)
