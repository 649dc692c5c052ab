"""The distributed training loop: a learner in the driver, rollout workers as actors.

Every iteration:

1. the learner's current parameters are ``put`` into the object store **once**; that one ref is sent
   with every call of the iteration, to every worker (workers read it zero-copy when it is large);
2. the iteration's jobs (ES perturbation pairs or PG episodes, plus a few evaluation episodes of the
   current policy) are handed out to the workers, at most ``max_inflight_per_worker`` each, and
   results are consumed with ``swarm.wait`` as they finish: a worker that finishes gets the next job,
   so fast and slow episodes balance themselves;
3. a call that fails with ``ActorDiedError`` means its worker is gone: a replacement actor is started
   in its slot and the lost jobs are sent again, with the current params ref, to whichever worker
   is free. Jobs carry their own seeds, so the retried results are the same and training goes on as
   if nothing happened;
4. if the evaluation episodes reach the target, the same params ref is evaluated on
   ``eval_episodes`` (100) more episodes; at or above the target the environment counts as solved.
   Otherwise the learner updates from the results, in job order (so a run is reproducible from its
   seed, with any number of workers).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import swarm
from swarm.exceptions import ActorDiedError
from swarm.rl.base import Job, Learner, chunks
from swarm.rl.es import ESConfig, ESLearner
from swarm.rl.noise import DEFAULT_SIZE, make_noise_table
from swarm.rl.pg import PGConfig, PGLearner
from swarm.rl.policy import MLPPolicy
from swarm.rl.worker import make_env, start_worker

ITER_EVAL_SEED = 1_000_000
FINAL_EVAL_SEED = 2_000_000


@dataclass
class TrainConfig:
    env_id: str = "CartPole-v1"
    algo: str = "es"                     # "es" or "pg"
    num_workers: int = 2
    iterations: int = 100                # upper bound; training stops earlier once solved
    seed: int = 0
    hidden: tuple[int, ...] = (32,)
    target_return: float | None = 475.0  # None: run all iterations, no solve check
    eval_episodes: int = 100             # episodes of the final check against the target
    iter_eval_episodes: int = 5          # episodes of the current policy evaluated every iteration
    eval_episodes_per_job: int = 5
    stop_on_solve: bool = True
    num_cpus_per_worker: float = 1.0
    max_inflight_per_worker: int = 2
    noise_size: int = DEFAULT_SIZE
    env_kwargs: dict = field(default_factory=dict)
    max_worker_restarts: int = 100
    call_timeout_s: float = 600.0        # no result at all for this long: give up
    es: ESConfig = field(default_factory=ESConfig)
    pg: PGConfig = field(default_factory=PGConfig)


@dataclass
class IterationRecord:
    iteration: int
    mean_return: float      # mean return of this iteration's training episodes
    max_return: float
    eval_return: float      # mean return of the current (deterministic) policy on the eval episodes
    steps: int              # environment steps so far, all workers
    wall_s: float           # seconds since training started (workers ready)
    restarts: int           # rollout workers replaced so far


@dataclass
class TrainResult:
    config: TrainConfig
    records: list[IterationRecord]
    params: np.ndarray
    solved: bool = False
    solved_iteration: int | None = None
    solve_time_s: float | None = None
    final_eval_return: float | None = None
    setup_s: float = 0.0
    wall_s: float = 0.0
    steps: int = 0
    worker_cpu_s: float = 0.0     # CPU time the rollout workers spent in calls (robust to machine load)
    learner_cpu_s: float = 0.0
    restarts: list[dict] = field(default_factory=list)
    params_puts: int = 0
    refs_per_iteration: list[int] = field(default_factory=list)   # distinct params refs sent
    params_writeable_seen: set[bool] = field(default_factory=set)
    worker_pids: set[int] = field(default_factory=set)


def policy_for(config: TrainConfig) -> MLPPolicy:
    env = make_env(config.env_id, config.env_kwargs)
    try:
        return MLPPolicy.for_env(env, tuple(config.hidden))
    finally:
        env.close()


class Trainer:
    """Runs one training (``train()``), then ``close()`` stops its workers. Hooks, both optional:
    ``on_iteration(trainer, record)`` after each iteration, ``on_result(trainer, iteration)`` after
    each worker result is consumed (tests use it to kill a worker mid-iteration)."""

    def __init__(self, config: TrainConfig, log: Callable[[str], None] | None = None,
                 on_iteration: Callable[[Trainer, IterationRecord], None] | None = None,
                 on_result: Callable[[Trainer, int], None] | None = None) -> None:
        if config.algo not in ("es", "pg"):
            raise ValueError(f"algo must be 'es' or 'pg', got {config.algo!r}")
        if config.num_workers < 1:
            raise ValueError("num_workers must be >= 1")
        self.config = config
        self.log = log or (lambda _msg: None)
        self.on_iteration = on_iteration
        self.on_result = on_result
        self.policy = policy_for(config)
        self.noise_ref: Any = None
        self.learner: Learner
        if config.algo == "es":
            noise = make_noise_table(config.seed + 12345, config.noise_size)
            self.noise_ref = swarm.put(noise)  # once for the whole training
            self.learner = ESLearner(self.policy, noise, config.es, seed=config.seed)
        else:
            self.learner = PGLearner(self.policy, config.pg, seed=config.seed)
        self.workers: list[Any] = []
        self.iteration = 0
        self.result = TrainResult(config, [], self.learner.params)
        self._params_ref: Any = None
        self._refs_sent: set[Any] = set()
        self._steps = 0

    # -- workers ---------------------------------------------------------------------------------

    def _start(self, index: int) -> Any:
        c = self.config
        return start_worker(c.env_id, tuple(c.hidden), index, self.noise_ref, c.env_kwargs,
                            c.num_cpus_per_worker)

    def start_workers(self) -> None:
        t0 = time.perf_counter()
        self.workers = [self._start(i) for i in range(self.config.num_workers)]
        pids = swarm.get([w.ping.remote() for w in self.workers], timeout=self.config.call_timeout_s)
        self.result.worker_pids.update(pids)
        self.result.setup_s = time.perf_counter() - t0

    def _replace(self, slot: int, dead: Any, cause: BaseException) -> None:
        if self.workers[slot] is not dead:
            return  # already replaced (it had several calls in flight)
        if len(self.result.restarts) >= self.config.max_worker_restarts:
            raise RuntimeError(f"more than {self.config.max_worker_restarts} rollout workers died") from cause
        self.workers[slot] = self._start(slot)
        first_line = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        self.result.restarts.append({"iteration": self.iteration, "slot": slot, "cause": first_line})
        self.log(f"  rollout worker {slot} died ({first_line}); started a replacement, "
                 f"re-sending the current params")

    def close(self) -> None:
        for w in self.workers:
            try:
                swarm.kill(w)
            except Exception:  # already dead, or the cluster is gone
                pass
        self.workers = []

    # -- one batch of jobs -------------------------------------------------------------------------

    def run_jobs(self, jobs: list[Job]) -> list[Any]:
        """Every job's result, in job order, with the current params ref; consumed with ``wait`` as
        they finish; jobs of a worker that dies are re-run on the others and on its replacement."""
        results: list[Any] = [None] * len(jobs)
        todo = list(range(len(jobs)))[::-1]  # a stack: pop() takes the lowest job index first
        inflight: dict[Any, tuple[int, Any, int]] = {}  # ref -> (slot, handle, job index)
        load = [0] * len(self.workers)
        while todo or inflight:
            while todo:
                slot = min(range(len(self.workers)), key=lambda s: load[s])
                if load[slot] >= self.config.max_inflight_per_worker:
                    break
                j = todo.pop()
                handle = self.workers[slot]
                try:
                    ref = getattr(handle, jobs[j].method).remote(self._params_ref, *jobs[j].args)
                except ActorDiedError as e:  # known dead at submission: replace it, retry the job
                    todo.append(j)
                    self._replace(slot, handle, e)
                    continue
                self._refs_sent.add(self._params_ref)
                inflight[ref] = (slot, handle, j)
                load[slot] += 1
            ready, _ = swarm.wait(list(inflight), num_returns=1, timeout=self.config.call_timeout_s)
            if not ready:
                raise TimeoutError(f"no rollout result for {self.config.call_timeout_s} s")
            for ref in ready:
                slot, handle, j = inflight.pop(ref)
                load[slot] -= 1
                try:
                    out = swarm.get(ref)
                except ActorDiedError as e:
                    todo.append(j)
                    self._replace(slot, handle, e)
                    continue
                results[j] = out
                self._steps += int(out.get("steps", 0))
                self.result.worker_cpu_s += float(out.get("cpu_s", 0.0))
                self.result.params_writeable_seen.add(bool(out.get("params_writeable")))
                self.result.worker_pids.add(int(out.get("pid", 0)))
                if self.on_result is not None:
                    self.on_result(self, self.iteration)
        return results

    # -- training ------------------------------------------------------------------------------------

    def _broadcast(self) -> None:
        """The one ``put`` of this iteration's parameters."""
        self._params_ref = swarm.put(self.learner.params)
        self.result.params_puts += 1

    def _eval_jobs(self, count: int, base_seed: int, per_job: int | None = None) -> list[Job]:
        seeds = list(range(base_seed, base_seed + count))
        return [Job("evaluate", (seeds[s],))
                for s in chunks(count, per_job or self.config.eval_episodes_per_job)]

    def train(self) -> TrainResult:
        c = self.config
        if not self.workers:
            self.start_workers()
        res = self.result
        t0 = time.perf_counter()
        for it in range(1, c.iterations + 1):
            self.iteration = it
            self._broadcast()
            self._refs_sent = set()
            train_jobs = self.learner.jobs()
            # the evaluation episodes (one per job) go first: they are the longest, and a long job
            # started last would keep the iteration waiting on one worker while the others idle
            eval_jobs = self._eval_jobs(c.iter_eval_episodes, ITER_EVAL_SEED, per_job=1)
            out = self.run_jobs(eval_jobs + train_jobs)
            eval_out, train_out = out[:len(eval_jobs)], out[len(eval_jobs):]
            eval_return = float(np.mean(np.concatenate([r["returns"] for r in eval_out]))) \
                if eval_out else float("nan")
            solved = False
            if c.target_return is not None and eval_return >= c.target_return and not res.solved:
                final = self.run_jobs(self._eval_jobs(c.eval_episodes, FINAL_EVAL_SEED))
                final_return = float(np.mean(np.concatenate([r["returns"] for r in final])))
                res.final_eval_return = final_return
                self.log(f"  evaluation of iteration {it}'s policy on {c.eval_episodes} episodes: "
                         f"mean return {final_return:.1f}")
                if final_return >= c.target_return:
                    solved = True
                    res.solved, res.solved_iteration = True, it
                    res.solve_time_s = time.perf_counter() - t0
                    res.params = np.array(self.learner.params)
            res.refs_per_iteration.append(len(self._refs_sent))
            if solved and c.stop_on_solve:
                stats = _train_stats(self.learner, train_out)
            else:
                cpu0 = time.process_time()
                stats = self.learner.update(train_out)
                res.learner_cpu_s += time.process_time() - cpu0
                res.params = self.learner.params
            rec = IterationRecord(it, stats["mean_return"], stats["max_return"], eval_return, self._steps,
                                  time.perf_counter() - t0, len(res.restarts))
            res.records.append(rec)
            self.log(f"{rec.iteration:5d} {rec.mean_return:12.1f} {rec.eval_return:12.1f} "
                     f"{rec.steps:10d} {rec.wall_s:9.2f}")
            if self.on_iteration is not None:
                self.on_iteration(self, rec)
            if solved and c.stop_on_solve:
                break
        res.wall_s = time.perf_counter() - t0
        res.steps = self._steps
        return res


HEADER = f"{'iter':>5} {'mean return':>12} {'eval return':>12} {'env steps':>10} {'wall s':>9}"


def _train_stats(learner: Learner, results: list[Any]) -> dict[str, float]:
    """Mean and max return of the training episodes, without updating."""
    if results and "returns" in results[0]:
        r = np.concatenate([np.ravel(x["returns"]) for x in results])
    else:
        r = np.array([float(ep["rewards"].sum()) for x in results for ep in x["episodes"]])
    return {"mean_return": float(r.mean()), "max_return": float(r.max())}


def train(config: TrainConfig, log: Callable[[str], None] | None = None) -> TrainResult:
    """Start the workers, train, stop the workers."""
    trainer = Trainer(config, log=log)
    try:
        return trainer.train()
    finally:
        trainer.close()
