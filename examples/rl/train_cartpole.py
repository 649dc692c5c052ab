"""Distributed reinforcement learning on swarm: solve Gymnasium's CartPole-v1 (or LunarLander-v3).

Rollout workers are actors that keep their environment across calls; every iteration the learner
``put``s the policy parameters once and sends that one ref to every worker; results are consumed with
``wait`` as they finish; a rollout worker that dies is replaced and training goes on. The algorithm is
OpenAI-ES (antithetic sampling, a shared noise table put once, centered ranks); ``--algo pg`` runs
REINFORCE instead. "Solved" means a mean return >= 475 over 100 evaluation episodes (CartPole-v1).

    python examples/rl/train_cartpole.py                      # solve CartPole with all cores
    python examples/rl/train_cartpole.py --compare-workers    # ... and again with 1 worker: speed-up
    python examples/rl/train_cartpole.py --quick              # the `make demo` version (< 60 s)
    python examples/rl/train_cartpole.py --env LunarLander-v3 # needs gymnasium[box2d]; ~2 min, 2 cores

It prints the learning curve (iteration, mean return of the training episodes, return of the current
policy on 5 evaluation episodes, environment steps, wall time) and writes a PNG plot of it when
matplotlib is installed. Exit status 0 when the run solved the environment (or, without a target,
improved), 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable

import swarm
from swarm.rl import HEADER, PRESETS, TrainConfig, TrainResult, config_for
from swarm.rl.trainer import Trainer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", default="CartPole-v1", help="Gymnasium environment id (default CartPole-v1)")
    ap.add_argument("--algo", choices=["es", "pg"], default="es", help="evolution strategies (default) "
                    "or policy gradient")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="rollout worker actors "
                    "(default: all cores)")
    ap.add_argument("--iterations", type=int, default=None, help="at most this many iterations")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="short run for `make demo` (< 60 s on 2 cores): "
                    "CartPole, then the same seed with 1 worker for the speed-up")
    ap.add_argument("--compare-workers", action="store_true", help="run again with 1 rollout worker and "
                    "report both wall times")
    ap.add_argument("--plot", default=None, metavar="PATH", help="PNG of the learning curve (default: in "
                    "the temp dir; '' for none); needs matplotlib")
    ap.add_argument("--target", type=float, default=None, help="mean return over 100 episodes that "
                    "counts as solved (default: the environment's threshold)")
    return ap.parse_args(argv)


def summary(label: str, res: TrainResult) -> str:
    c = res.config
    if res.solved:
        what = (f"solved at iteration {res.solved_iteration} in {res.solve_time_s:.2f} s "
                f"(mean return {res.final_eval_return:.1f} over {c.eval_episodes} episodes)")
    else:
        last = res.records[-1] if res.records else None
        what = f"not solved after {len(res.records)} iterations, {res.wall_s:.2f} s" + (
            f" (last eval return {last.eval_return:.1f})" if last else "")
    return (f"{label}: {what}; {res.steps} env steps, {res.steps / max(res.wall_s, 1e-9):,.0f} steps/s, "
            f"workers started in {res.setup_s:.2f} s, {len(res.restarts)} replaced")


def run_once(config: TrainConfig, log: Callable[[str], None] | None) -> TrainResult:
    trainer = Trainer(config, log=log)
    try:
        return trainer.train()
    finally:
        trainer.close()


def plot(path: str, runs: list[tuple[str, TrainResult]], target: float | None, title: str) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
        return
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    main = runs[0][1]
    its = [r.iteration for r in main.records]
    ax1.plot(its, [r.mean_return for r in main.records], label="training episodes (mean)")
    ax1.plot(its, [r.eval_return for r in main.records], label="current policy (5 eval episodes)")
    ax1.set_xlabel("iteration")
    ax1.set_ylabel("return")
    for label, res in runs:
        ax2.plot([r.wall_s for r in res.records], [r.eval_return for r in res.records], marker=".",
                 label=label)
    ax2.set_xlabel("wall time (s)")
    ax2.set_ylabel("return of the current policy")
    for ax in (ax1, ax2):
        if target is not None:
            ax.axhline(target, color="gray", linestyle="--", linewidth=1, label=f"solved ({target:g})")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"plot: {path}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.quick:
        args.compare_workers = True
    if args.env not in PRESETS or args.algo not in PRESETS[args.env]:
        print(f"note: no preset for {args.env} with {args.algo}; using defaults", file=sys.stderr)
    iterations = args.iterations
    if args.quick:
        iterations = min(iterations or 100, 100 if args.env == "CartPole-v1" else 30)
    started_here = not swarm.is_initialized()
    if started_here:
        swarm.init(num_cpus=max(os.cpu_count() or 1, args.workers))
    try:
        cpus = int(swarm.cluster_resources().get("CPU", 1))
        workers = max(1, args.workers)
        config = config_for(args.env, args.algo, num_workers=workers, iterations=iterations, seed=args.seed,
                            target_return=args.target, num_cpus_per_worker=1 if workers <= cpus else 0)
        print(f"{args.env} with {args.algo.upper()}, policy MLP hidden={config.hidden}, {workers} rollout "
              f"worker(s) on a {cpus}-CPU cluster, seed {args.seed}, at most {config.iterations} iterations")
        print(HEADER)
        t0 = time.perf_counter()
        main_res = run_once(config, print)
        print(summary(f"{workers} worker(s)", main_res))
        print(f"object store: {main_res.params_puts} params puts (one per iteration); distinct params refs "
              f"sent per iteration: {sorted(set(main_res.refs_per_iteration))}; workers saw the params "
              f"array {'read-only' if main_res.params_writeable_seen == {False} else 'writeable'}"
              f" ({main_res.params.nbytes} bytes: values up to 100 KiB travel inline, larger ones as "
              f"zero-copy views)")
        runs = [(f"{workers} worker(s)", main_res)]
        if args.compare_workers:
            other = 1 if workers > 1 else min(cpus, 2)
            if other != workers:
                print(f"\nsame seed with {other} rollout worker(s) (same learning curve, other wall time):")
                cmp_config = config_for(args.env, args.algo, num_workers=other, iterations=iterations,
                                        seed=args.seed, target_return=args.target,
                                        num_cpus_per_worker=1 if other <= cpus else 0)
                cmp_res = run_once(cmp_config, None)
                print(summary(f"{other} worker(s)", cmp_res))
                same = [r.eval_return for r in cmp_res.records] == [r.eval_return for r in main_res.records]
                runs.append((f"{other} worker(s)", cmp_res))
                by_workers = sorted(runs, key=lambda r: r[1].config.num_workers)
                one, many = by_workers[0][1], by_workers[-1][1]
                t_one = one.solve_time_s if one.solved else one.wall_s
                t_many = many.solve_time_s if many.solved else many.wall_s
                print(f"\n{'rollout workers':>16} {'wall s':>8} {'steps/s':>10}")
                for _, res in by_workers:
                    t = res.solve_time_s if res.solved else res.wall_s
                    print(f"{res.config.num_workers:>16} {t:8.2f} {res.steps / max(res.wall_s, 1e-9):10,.0f}")
                print(f"speed-up with {many.config.num_workers} workers: {t_one / max(t_many, 1e-9):.2f}x"
                      f"{'' if same else ' (learning curves differ!)'}")
        path = args.plot
        if path is None:
            path = os.path.join(tempfile.gettempdir(), f"swarm-rl-{args.env}-{args.algo}.png")
        if path:
            plot(path, runs, config.target_return, f"{args.env}, {args.algo.upper()} on swarm")
        print(f"total {time.perf_counter() - t0:.1f} s")
        if config.target_return is not None:
            ok = main_res.solved
        else:
            recs = main_res.records
            ok = bool(recs) and max(r.eval_return for r in recs) > recs[0].eval_return
        if args.quick and not ok:
            print("FAILED: the quick run did not solve the environment")
        return 0 if ok else 1
    finally:
        if started_here:
            swarm.shutdown()


if __name__ == "__main__":
    sys.exit(main())
