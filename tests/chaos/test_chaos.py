"""Chaos: a workload of tasks in chains and fan-outs plus stateful actors, while a chaos thread
SIGKILLs a random worker process of the cluster every 100 ms (issue 4).

What must hold:
- every result is correct (tasks use ``max_retries=-1``; actors ``max_restarts=-1`` and
  ``max_task_retries=-1``);
- no side effect is applied twice by one actor incarnation: each call to a ``Ledger`` actor appends
  its sequence number to the incarnation's state and returns ``(incarnation, seq, count)``; within
  one incarnation the counts must be 1, 2, 3, ... and the sequence numbers consecutive. Actors that
  were never restarted (one constructor run, one pid throughout) must hold exactly every call once,
  in order. A restarted actor lost its state by design: only its last incarnation is compared;
- nothing hangs: every ``get`` has a timeout;
- after ``shutdown()`` no process the driver started is left and nothing new is in ``/dev/shm``.

The size is ``SWARM_CHAOS_TASKS`` (default 20,000); ``SWARM_CHAOS_SEED`` picks the victims.
``test_chaos_short.py`` runs the same code small enough for CI. Run with ``-s`` to see tasks/s with
and without chaos and the number of kills survived.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import threading
import time

import numpy as np
import psutil
import pytest

import swarm

CHAOS_TASKS = int(os.environ.get("SWARM_CHAOS_TASKS", "20000"))
SEED = int(os.environ.get("SWARM_CHAOS_SEED", str(random.randrange(1 << 30))))
KILL_INTERVAL_S = 0.1
TIMEOUT = 300                # on every get: a hang fails the test instead of stalling it
WORK_S = 0.0015              # each task sleeps this long: a short task, long enough to be killed in
CHAIN = 20                   # tasks per chain
FAN = 16                     # leaves per fan-out (plus its source and its reduce)
NESTED = 8                   # children a nested task submits itself
ROUNDS = 10
SHM = "/dev/shm"


# -- the workload -----------------------------------------------------------------------------------
@swarm.remote(max_retries=-1)
def inc(x):
    time.sleep(WORK_S)
    return x + 1


@swarm.remote(max_retries=-1)
def source(i, big):
    time.sleep(WORK_S)
    if big:                                     # 400 KB: goes through the shared-memory store
        return np.full(50_000, i, dtype=np.int64)
    return i


@swarm.remote(max_retries=-1)
def leaf(src, j):
    time.sleep(WORK_S)
    first = int(src[0]) if isinstance(src, np.ndarray) else src
    return first * 1000 + j


@swarm.remote(max_retries=-1)
def reduce_sum(*xs):
    time.sleep(WORK_S)
    return sum(xs)


@swarm.remote(max_retries=-1)
def nested(i, k):
    """A fan-out submitted by a worker: that worker owns the children's results."""
    return sum(swarm.get([leaf.remote(i, j) for j in range(k)], timeout=TIMEOUT))


@swarm.remote
class Ledger:
    def __init__(self, marker):
        self.incarnation = os.urandom(6).hex()
        self.seqs = []
        with open(marker, "a") as f:               # one line per constructor run
            f.write(f"{os.getpid()} {self.incarnation}\n")

    def apply(self, seq):
        self.seqs.append(seq)
        return self.incarnation, os.getpid(), seq, len(self.seqs)

    def state(self):
        return self.incarnation, os.getpid(), list(self.seqs)


class Workload:
    """``n_tasks`` tasks in ``ROUNDS`` rounds (chains, fan-outs, nested fan-outs; each round's results
    are checked before the next starts) with calls to every actor spread over the rounds."""

    def __init__(self, n_tasks: int, n_actors: int, marker_dir, timeout: float = TIMEOUT) -> None:
        self.timeout = timeout
        self.per_round = max(n_tasks // ROUNDS, CHAIN + FAN + 2 + NESTED + 1)
        self.markers = [marker_dir / f"ledger{i}" for i in range(n_actors)]
        self.actors = [Ledger.options(max_restarts=-1, max_task_retries=-1).remote(str(m))
                       for m in self.markers]
        swarm.get([a.state.remote() for a in self.actors], timeout=timeout)   # all up
        self.tasks = 0
        self.calls: list[list] = [[] for _ in self.actors]    # per actor: refs of apply(seq), in order

    def run(self) -> float:
        """Runs the rounds; returns the wall time they took."""
        t0 = time.perf_counter()
        for _ in range(ROUNDS):
            self._round()
        self.replies = [swarm.get(refs, timeout=self.timeout) for refs in self.calls]
        return time.perf_counter() - t0

    def _call_actors(self) -> None:
        for a, refs in zip(self.actors, self.calls, strict=True):
            refs.append(a.apply.remote(len(refs)))

    def _round(self) -> None:
        n = self.per_round
        n_chains = max(1, n // 3 // CHAIN)
        n_fans = max(1, n // 3 // (FAN + 2))
        n_nested = max(1, (n - n_chains * CHAIN - n_fans * (FAN + 2)) // (NESTED + 1))
        chains = []
        for c in range(n_chains):
            ref = c
            for _ in range(CHAIN):
                ref = inc.remote(ref)
            chains.append(ref)
            if c % 4 == 0:
                self._call_actors()
        fans = []
        for g in range(n_fans):
            src = source.remote(g, g % 4 == 0)
            fans.append(reduce_sum.remote(*[leaf.remote(src, j) for j in range(FAN)]))
            if g % 4 == 0:
                self._call_actors()
        nests = [nested.remote(i, NESTED) for i in range(n_nested)]
        self.tasks += n_chains * CHAIN + n_fans * (FAN + 2) + n_nested * (NESTED + 1)
        assert swarm.get(chains, timeout=self.timeout) == [c + CHAIN for c in range(n_chains)]
        assert swarm.get(fans, timeout=self.timeout) == [sum(g * 1000 + j for j in range(FAN))
                                                    for g in range(n_fans)]
        assert swarm.get(nests, timeout=self.timeout) == [sum(i * 1000 + j for j in range(NESTED))
                                                     for i in range(n_nested)]

    def check_actors(self) -> tuple[int, int]:
        """Asserts the actor invariants; returns (actors never restarted, restarts in total)."""
        states = swarm.get([a.state.remote() for a in self.actors], timeout=self.timeout)
        untouched = restarts = 0
        for i, (replies, (_, pid, seqs)) in enumerate(zip(self.replies, states, strict=True)):
            n = len(replies)
            assert [seq for _, _, seq, _ in replies] == list(range(n)), f"actor {i}: wrong replies"
            by_incarnation = collections.defaultdict(list)
            for inc_id, _, seq, count in replies:
                by_incarnation[inc_id].append((seq, count))
            for inc_id, got in by_incarnation.items():
                seqs_seen = [s for s, _ in got]
                counts = [c for _, c in got]
                assert seqs_seen == list(range(seqs_seen[0], seqs_seen[0] + len(got))), \
                    f"actor {i} incarnation {inc_id}: calls skipped or reordered: {seqs_seen[:20]}"
                assert counts == list(range(counts[0], counts[0] + len(got))), \
                    f"actor {i} incarnation {inc_id}: a call was applied twice: {counts[:20]}"
            # the last incarnation holds a gapless, duplicate-free tail of the calls
            assert seqs == list(range(n - len(seqs), n)), f"actor {i}: state {seqs[:20]}... of {n}"
            ctor_runs = open(self.markers[i]).read().splitlines()
            restarts += len(ctor_runs) - 1
            if len(ctor_runs) == 1 and {p for _, p, _, _ in replies} <= {pid}:
                untouched += 1      # never restarted: every call exactly once, in order
                assert seqs == list(range(n)), f"actor {i} (never restarted): state {seqs[:20]}..."
        return untouched, restarts


# -- chaos ------------------------------------------------------------------------------------------
class Chaos:
    """Every ``KILL_INTERVAL_S``, SIGKILL a random process the driver started, except the node manager
    (the only one whose parent is the driver and whose command line names swarm.node.node_manager;
    workers are forked from it, so they share its command line)."""

    def __init__(self, seed: int, max_seconds: float | None) -> None:
        self.rng = random.Random(seed)
        self.max_seconds = max_seconds
        self.kills: list[int] = []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="chaos", daemon=True)
        self.me = psutil.Process()

    def _victims(self) -> list[psutil.Process]:
        out = []
        for p in self.me.children(recursive=True):
            try:
                if p.ppid() == self.me.pid and any("swarm.node.node_manager" in a for a in p.cmdline()):
                    continue
                out.append(p)
            except psutil.Error:
                pass
        return out

    def _run(self) -> None:
        deadline = None if self.max_seconds is None else time.monotonic() + self.max_seconds
        while not self.stop_event.is_set() and (deadline is None or time.monotonic() < deadline):
            victims = self._victims()
            if victims:
                victim = self.rng.choice(victims)
                try:
                    victim.send_signal(signal.SIGKILL)
                    self.kills.append(victim.pid)
                except psutil.Error:
                    pass
            self.stop_event.wait(KILL_INTERVAL_S)

    def __enter__(self) -> Chaos:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        self.thread.join(10)


# -- the test ---------------------------------------------------------------------------------------
def _shm() -> set[str]:
    try:
        return set(os.listdir(SHM))
    except FileNotFoundError:
        return set()


def _wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _node_summary() -> str:
    try:
        info = swarm.api._cluster_info()
    except Exception as e:  # the node manager itself may be the problem
        return f"no answer from the node manager ({e})"
    demand = collections.Counter(_fmt_shape(d) for d in info["demand"])
    leases = collections.Counter(x["fn_name"] + (" (blocked)" if x["blocked"] else "")
                                 for x in info["leases"])
    return (f"{info['num_workers']} workers, available {_fmt_shape(info['available'])}; queued lease "
            f"requests: {dict(demand)}; leases: {dict(leases)}")


def _fmt_shape(shape: dict) -> str:
    return ", ".join(f"{v:g} {k}" for k, v in sorted(shape.items()) if k != "object_store_memory") or "{}"


def run_chaos(tmp_path, n_tasks: int, n_actors: int, chaos_seconds: float | None,
              timeout: float = TIMEOUT) -> dict:
    """The whole scenario; ``chaos_seconds=None`` kills for as long as the workload runs; ``timeout``
    bounds every get of the driver."""
    me = psutil.Process()
    shm_before = _shm()
    swarm.init(num_cpus=2)
    session_dir = swarm.api._cluster_info()["session_dir"]
    try:
        for name in ("warm", "calm", "chaos"):
            (tmp_path / name).mkdir()
        Workload(ROUNDS * 60, 1, tmp_path / "warm", timeout).run()     # workers up, functions shipped

        calm = Workload(n_tasks, n_actors, tmp_path / "calm", timeout)
        calm_s = calm.run()
        calm_untouched, calm_restarts = calm.check_actors()
        assert (calm_untouched, calm_restarts) == (n_actors, 0), "an actor restarted without chaos"
        del calm

        work = Workload(n_tasks, n_actors, tmp_path / "chaos", timeout)
        with Chaos(SEED, chaos_seconds) as chaos:
            try:
                chaos_s = work.run()
            except Exception as e:    # say what the node looked like when it failed
                raise AssertionError(f"{type(e).__name__}: {e}\nafter {len(chaos.kills)} kills; the node: "
                                     f"{_node_summary()}") from e
        untouched, restarts = work.check_actors()
        tasks = work.tasks
        del work
    finally:
        swarm.shutdown()
    stats = {"tasks": tasks, "calm_tasks_per_s": tasks / calm_s, "chaos_tasks_per_s": tasks / chaos_s,
             "kills": len(chaos.kills), "actor_restarts": restarts, "actors_never_restarted": untouched,
             "seed": SEED}
    print(f"\nchaos: {tasks} tasks + {n_actors} actors (seed {SEED}): "
          f"{stats['calm_tasks_per_s']:.0f} tasks/s without chaos, {stats['chaos_tasks_per_s']:.0f} tasks/s "
          f"with a SIGKILL every {KILL_INTERVAL_S * 1000:.0f} ms; {len(chaos.kills)} kills survived "
          f"({restarts} actor restarts, {untouched}/{n_actors} actors never restarted)")
    assert chaos.kills, "the chaos thread killed nothing"
    # nothing left running, nothing left in shared memory or on disk
    assert _wait_until(lambda: not _running_children(me), 10), \
        f"left running after shutdown(): {_running_children(me)}"
    leaked = {n for n in _shm() - shm_before if not n.startswith("sem.mp-")}   # (Python's, not swarm's)
    assert not leaked, f"left in {SHM}: {sorted(leaked)}"
    assert _wait_until(lambda: not os.path.exists(session_dir), 10), f"{session_dir} was not removed"
    return stats


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_chaos(isolated, tmp_path):
    run_chaos(tmp_path, CHAOS_TASKS, n_actors=8, chaos_seconds=None)


def _running_children(proc: psutil.Process) -> list:
    """Descendants still running (a zombie has exited: only its exit status is left to collect)."""
    out = []
    for child in proc.children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                out.append(child)
        except psutil.Error:
            pass
    return out
