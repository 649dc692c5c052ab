"""Fault tolerance and memory (design section 5, issue 4), proven by killing real processes.

Retries are counted with *marker files*: a task appends a line (its pid) to a file under
``tmp_path`` on every attempt, so the number of lines is the number of attempts and the pids name the
processes that ran them. Tasks that must stay running while the test acts wait on a *gate file*
that the test creates when it is done, so nothing depends on the speed of the machine. Every ``get``
has a generous timeout, and no test asserts how long anything took.

Most tests share the session cluster (``cluster`` fixture, 2 CPUs); tests that need their own store
size, memory threshold or environment start one themselves (``isolated``) or run a driver script in
a subprocess (log capture).
"""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

import swarm
from swarm.exceptions import (
    ActorDiedError,
    ObjectStoreFullError,
    OutOfMemoryError,
    OwnerDiedError,
    TaskCancelledError,
    TaskUnschedulableError,
    WorkerCrashedError,
)

TIMEOUT = 60
SRC = str(Path(__file__).resolve().parents[2] / "src")


# -- helpers --------------------------------------------------------------------------------------
def wait_until(predicate, timeout: float = TIMEOUT, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return predicate()
        time.sleep(interval)


def lines(path) -> list[str]:
    try:
        with open(path) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def attempts(path) -> int:
    return len(lines(path))


def record(path, text: str | None = None) -> int:
    """Append one line (default: this process's pid) to a marker file; returns the new line count."""
    with open(path, "a") as f:
        f.write(f"{text if text is not None else os.getpid()}\n")
    return attempts(path)


def wait_for_line(path, text: str, timeout: float = TIMEOUT) -> bool:
    return wait_until(lambda: any(text in line for line in lines(path)), timeout)


def pid_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def run_driver(code: str, tmp_path, env: dict | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``code`` as a driver script in a fresh interpreter; returns its exit code and output."""
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(code))
    full_env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH"))
                                                         if p))
    full_env.update(env or {})
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=full_env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"driver script hung; stdout:\n{out}\nstderr:\n{err}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


# -- remote functions (module level: workers import them by reference) ------------------------------
@swarm.remote
def die(marker, how):
    """Dies on every attempt, the way ``how`` says, after a last word on stderr."""
    record(marker)
    sys.stderr.write(f"last words of attempt {attempts(marker)}: goodbye\n")
    sys.stderr.flush()
    if how == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif how == "exit":
        os._exit(7)
    elif how == "segfault":
        ctypes.string_at(0)
    return "survived"


@swarm.remote
def die_first(marker, n):
    """SIGKILLs its own worker on the first ``n`` attempts, then returns the attempt number."""
    k = record(marker)
    if k <= n:
        os.kill(os.getpid(), signal.SIGKILL)
    return k


class Flaky(Exception):
    pass


@swarm.remote
def fail_first(marker, n, exc_name):
    """Raises ``exc_name`` on the first ``n`` attempts, then returns the attempt number."""
    k = record(marker)
    if k <= n:
        raise {"ValueError": ValueError, "KeyError": KeyError, "Flaky": Flaky}[exc_name](f"attempt {k}")
    return k


@swarm.remote
def block(marker, gate, tag="task"):
    """Records ``start <tag> <pid>``, runs until ``gate`` exists, records how it ended."""
    record(marker, f"start {tag} {os.getpid()}")
    try:
        deadline = time.monotonic() + TIMEOUT
        while not os.path.exists(gate):
            if time.monotonic() > deadline:
                raise TimeoutError(f"gate {gate} never opened")
            time.sleep(0.01)
    except KeyboardInterrupt:
        record(marker, f"interrupted {tag}")
        raise
    record(marker, f"finished {tag}")
    return tag


@swarm.remote
def mark(marker, tag):
    record(marker, f"ran {tag}")
    return tag


@swarm.remote
def spawn_blocked_child(marker, gate):
    return swarm.get(block.remote(marker, gate, "child"))


@swarm.remote
def pid_of_worker():
    return os.getpid()


@swarm.remote
def put_and_return_nested(big):
    """Owns an object (``put`` here) and hands out only a ref nested in its return value."""
    value = np.arange(1_000_000) if big else "a small value"
    return [swarm.put(value)], os.getpid()


@swarm.remote
class Counter:
    def __init__(self, marker):
        self.n = 0
        record(marker)          # one line per constructor run: restarts are counted

    def incr(self):
        self.n += 1
        return self.n

    def pid(self):
        return os.getpid()

    def wait_gate(self, marker, gate):
        record(marker)
        while not os.path.exists(gate):
            time.sleep(0.01)
        return "done"

    def mark(self, marker, tag):
        record(marker, f"ran {tag}")
        return tag

    def pid_of_a_task(self):
        """The pid of a worker that ran a task this actor submitted (the driver never talks to it)."""
        return swarm.get(pid_of_worker.remote(), timeout=TIMEOUT)


@swarm.remote
def use_counter(handle):
    """Calls the actor from another process (a worker holding a borrowed handle)."""
    return swarm.get(handle.incr.remote(), timeout=TIMEOUT), swarm.get(handle.pid.remote(), timeout=TIMEOUT)


@swarm.remote
def create_actor_in_task(marker):
    """Creates an actor owned by this worker; returns its pid, this worker's pid and the handle."""
    actor = Counter.remote(marker)
    return swarm.get(actor.pid.remote(), timeout=TIMEOUT), os.getpid(), [actor]


def kill_and_wait(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: not pid_alive(pid), 10), f"pid {pid} survived SIGKILL"


# -- worker death: task retries --------------------------------------------------------------------
DEATHS = {"sigkill": "killed by signal 9 (SIGKILL)", "exit": "exited with code 7",
          "segfault": "killed by signal 11 (SIGSEGV)"}


@pytest.mark.parametrize("how", list(DEATHS))
def test_worker_death_retried_then_worker_crashed_error_names_task_pid_cause_and_stderr(
        cluster, tmp_path, how):
    marker = tmp_path / "attempts"
    with pytest.raises(WorkerCrashedError) as info:
        swarm.get(die.options(max_retries=2).remote(str(marker), how), timeout=TIMEOUT)
    pids = lines(marker)
    assert len(pids) == 3, "max_retries=2: the first run and two retries"
    assert len(set(pids)) == 3, "each attempt ran in a fresh worker process"
    msg = str(info.value)
    assert "die" in msg                           # which task
    assert f"pid {pids[-1]}" in msg               # which process (the last one to die)
    assert DEATHS[how] in msg                     # exit code or signal
    assert "last words of attempt 3: goodbye" in msg   # the last lines it wrote to stderr


def test_default_max_retries_is_three(cluster, tmp_path):
    marker = tmp_path / "attempts"
    with pytest.raises(WorkerCrashedError):
        swarm.get(die.remote(str(marker), "sigkill"), timeout=TIMEOUT)
    assert attempts(marker) == 4


def test_max_retries_zero_never_retries(cluster, tmp_path):
    marker = tmp_path / "attempts"
    with pytest.raises(WorkerCrashedError, match="SIGKILL"):
        swarm.get(die.options(max_retries=0).remote(str(marker), "sigkill"), timeout=TIMEOUT)
    assert attempts(marker) == 1


def test_task_survives_worker_deaths_within_its_retries(cluster, tmp_path):
    marker = tmp_path / "attempts"
    assert swarm.get(die_first.remote(str(marker), 3), timeout=TIMEOUT) == 4   # default: 3 retries
    assert len(set(lines(marker))) == 4


def test_max_retries_minus_one_retries_forever(cluster, tmp_path):
    marker = tmp_path / "attempts"
    assert swarm.get(die_first.options(max_retries=-1).remote(str(marker), 7), timeout=TIMEOUT) == 8
    assert attempts(marker) == 8


def test_worker_killed_from_outside_mid_task_is_retried(cluster, tmp_path):
    marker, gate = tmp_path / "log", tmp_path / "gate"
    ref = block.options(max_retries=1).remote(str(marker), str(gate))
    assert wait_for_line(marker, "start task")
    first_pid = int(lines(marker)[0].split()[2])
    kill_and_wait(first_pid)
    assert wait_until(lambda: len([x for x in lines(marker) if x.startswith("start")]) == 2)
    gate.touch()
    assert swarm.get(ref, timeout=TIMEOUT) == "task"
    starts = [x for x in lines(marker) if x.startswith("start")]
    assert int(starts[1].split()[2]) != first_pid


def test_application_errors_are_not_retried_by_default(cluster, tmp_path):
    marker = tmp_path / "attempts"
    with pytest.raises(ValueError, match="attempt 1"):
        swarm.get(fail_first.remote(str(marker), 5, "ValueError"), timeout=TIMEOUT)
    assert attempts(marker) == 1


def test_retry_exceptions_true_retries_application_errors(cluster, tmp_path):
    marker = tmp_path / "attempts"
    ref = fail_first.options(retry_exceptions=True).remote(str(marker), 2, "ValueError")
    assert swarm.get(ref, timeout=TIMEOUT) == 3
    assert attempts(marker) == 3


def test_retry_exceptions_stop_after_max_retries(cluster, tmp_path):
    marker = tmp_path / "attempts"
    ref = fail_first.options(retry_exceptions=True, max_retries=1).remote(str(marker), 5, "ValueError")
    with pytest.raises(ValueError, match="attempt 2"):
        swarm.get(ref, timeout=TIMEOUT)
    assert attempts(marker) == 2


def test_retry_exceptions_list_retries_only_the_listed_types(cluster, tmp_path):
    listed, other = tmp_path / "listed", tmp_path / "other"
    opts = {"retry_exceptions": [KeyError, Flaky], "max_retries": 5}
    assert swarm.get(fail_first.options(**opts).remote(str(listed), 3, "Flaky"), timeout=TIMEOUT) == 4
    assert attempts(listed) == 4
    with pytest.raises(ValueError, match="attempt 1"):       # not listed: surfaces at once
        swarm.get(fail_first.options(**opts).remote(str(other), 3, "ValueError"), timeout=TIMEOUT)
    assert attempts(other) == 1


# -- actors: restarts ------------------------------------------------------------------------------
def test_actor_restart_reruns_constructor_and_same_handle_keeps_working(cluster, tmp_path):
    ctor = tmp_path / "ctor"
    actor = Counter.options(max_restarts=1).remote(str(ctor))
    assert swarm.get([actor.incr.remote(), actor.incr.remote()], timeout=TIMEOUT) == [1, 2]
    pid1 = swarm.get(actor.pid.remote(), timeout=TIMEOUT)
    kill_and_wait(pid1)
    assert wait_until(lambda: attempts(ctor) == 2), "the constructor did not run again"
    pid2 = swarm.get(actor.pid.remote(), timeout=TIMEOUT)
    assert pid2 != pid1
    assert swarm.get(actor.incr.remote(), timeout=TIMEOUT) == 1     # fresh state: constructor re-run
    # restarts used up: the next death is final, and every call says why
    kill_and_wait(pid2)
    for _ in range(3):
        with pytest.raises(ActorDiedError, match="SIGKILL"):
            swarm.get(actor.incr.remote(), timeout=TIMEOUT)
    assert attempts(ctor) == 2


def test_restarted_actor_reachable_from_other_processes_holding_the_handle(cluster, tmp_path):
    actor = Counter.options(max_restarts=2).remote(str(tmp_path / "ctor"))
    n, pid1 = swarm.get(use_counter.remote(actor), timeout=TIMEOUT)
    assert n == 1
    kill_and_wait(pid1)
    assert wait_until(lambda: attempts(tmp_path / "ctor") == 2)
    n, pid2 = swarm.get(use_counter.remote(actor), timeout=TIMEOUT)
    assert (n, pid2 != pid1) == (1, True)
    # the task's process has talked to the old and the new incarnation; a third one it follows too
    kill_and_wait(pid2)
    assert wait_until(lambda: attempts(tmp_path / "ctor") == 3)
    n, pid3 = swarm.get(use_counter.remote(actor), timeout=TIMEOUT)
    assert n == 1 and pid3 not in (pid1, pid2)


def test_actor_max_restarts_minus_one_restarts_forever(cluster, tmp_path):
    ctor = tmp_path / "ctor"
    actor = Counter.options(max_restarts=-1).remote(str(ctor))
    pids = []
    for i in range(6):
        pid = swarm.get(actor.pid.remote(), timeout=TIMEOUT)
        pids.append(pid)
        kill_and_wait(pid)
        assert wait_until(lambda i=i: attempts(ctor) == i + 2), f"no restart after death {i + 1}"
    assert swarm.get(actor.incr.remote(), timeout=TIMEOUT) == 1
    assert len(set(pids)) == 6
    assert attempts(ctor) == 7


def test_call_in_flight_is_retried_with_max_task_retries(cluster, tmp_path):
    calls, gate = tmp_path / "calls", tmp_path / "gate"
    actor = Counter.options(max_restarts=1, max_task_retries=1).remote(str(tmp_path / "ctor"))
    pid = swarm.get(actor.pid.remote(), timeout=TIMEOUT)
    ref = actor.wait_gate.remote(str(calls), str(gate))
    assert wait_until(lambda: attempts(calls) == 1)
    kill_and_wait(pid)
    assert wait_until(lambda: attempts(calls) == 2), "the call in flight was not sent to the new actor"
    gate.touch()
    assert swarm.get(ref, timeout=TIMEOUT) == "done"
    assert lines(calls)[0] == str(pid) and lines(calls)[1] != str(pid)


def test_call_in_flight_fails_once_its_task_retries_are_used_up(cluster, tmp_path):
    calls, gate = tmp_path / "calls", tmp_path / "gate"
    ctor = tmp_path / "ctor"
    actor = Counter.options(max_restarts=-1, max_task_retries=1).remote(str(ctor))
    ref = actor.wait_gate.remote(str(calls), str(gate))
    try:
        for attempt in (1, 2):            # the call runs, its actor dies; again; then it gives up
            assert wait_until(lambda attempt=attempt: attempts(calls) == attempt)
            kill_and_wait(int(lines(calls)[-1]))
        with pytest.raises(ActorDiedError, match="SIGKILL"):
            swarm.get(ref, timeout=TIMEOUT)
    finally:
        gate.touch()
    assert attempts(calls) == 2
    assert wait_until(lambda: attempts(ctor) == 3)
    assert swarm.get(actor.incr.remote(), timeout=TIMEOUT) == 1     # the actor itself lives on


def test_call_in_flight_fails_with_cause_without_task_retries(cluster, tmp_path):
    calls, gate = tmp_path / "calls", tmp_path / "gate"
    actor = Counter.options(max_restarts=1).remote(str(tmp_path / "ctor"))
    pid = swarm.get(actor.pid.remote(), timeout=TIMEOUT)
    ref = actor.wait_gate.remote(str(calls), str(gate))
    assert wait_until(lambda: attempts(calls) == 1)
    kill_and_wait(pid)
    gate.touch()
    with pytest.raises(ActorDiedError) as info:
        swarm.get(ref, timeout=TIMEOUT)
    assert "SIGKILL" in str(info.value) and str(pid) in str(info.value)
    assert attempts(calls) == 1                                    # at most once: not re-run
    assert swarm.get(actor.incr.remote(), timeout=TIMEOUT) == 1     # but the actor was restarted


def test_actor_without_restarts_every_later_call_raises_actor_died(cluster, tmp_path):
    actor = Counter.remote(str(tmp_path / "ctor"))
    pid = swarm.get(actor.pid.remote(), timeout=TIMEOUT)
    kill_and_wait(pid)
    for _ in range(3):
        with pytest.raises(ActorDiedError) as info:
            swarm.get(actor.incr.remote(), timeout=TIMEOUT)
        assert "SIGKILL" in str(info.value) and str(pid) in str(info.value)
    assert attempts(tmp_path / "ctor") == 1


def test_kill_with_no_restart_false_allows_a_restart(cluster, tmp_path):
    ctor = tmp_path / "ctor"
    actor = Counter.options(max_restarts=1).remote(str(ctor))
    pid1 = swarm.get(actor.pid.remote(), timeout=TIMEOUT)
    swarm.kill(actor, no_restart=False)
    assert wait_until(lambda: attempts(ctor) == 2), "no restart after kill(no_restart=False)"
    assert swarm.get(actor.pid.remote(), timeout=TIMEOUT) != pid1
    swarm.kill(actor)                                   # default no_restart=True: final
    with pytest.raises(ActorDiedError, match="swarm.kill"):
        swarm.get(actor.pid.remote(), timeout=TIMEOUT)


def test_actor_restart_survives_death_of_the_worker_leased_for_it(isolated, tmp_path):
    swarm.init(num_cpus=1)
    actor = Counter.options(max_restarts=-1).remote(str(tmp_path / "ctor"))
    actor_pid = swarm.get(actor.pid.remote(), timeout=TIMEOUT)
    # the only idle worker, which the driver never talked to: a task submitted by the actor ran on it
    idle = psutil.Process(swarm.get(actor.pid_of_a_task.remote(), timeout=TIMEOUT))
    time.sleep(0.5)             # its lease goes back to the node manager (linger: 50 ms)
    idle.suspend()              # the restart gets this worker; the owner's handshake with it stalls ...
    try:
        kill_and_wait(actor_pid)
        time.sleep(1.0)
    finally:
        idle.kill()             # ... and it dies before the owner got through
    assert swarm.get(actor.pid.remote(), timeout=TIMEOUT) not in (actor_pid, idle.pid)


def test_actor_restart_survives_deaths_of_the_workers_leased_for_it_again_and_again(isolated, tmp_path):
    swarm.init(num_cpus=1)
    actor = Counter.options(max_restarts=-1).remote(str(tmp_path / "ctor"))
    for _ in range(6):
        actor_pid = swarm.get(actor.pid.remote(), timeout=TIMEOUT)
        idle = psutil.Process(swarm.get(actor.pid_of_a_task.remote(), timeout=TIMEOUT))
        time.sleep(0.5)
        idle.suspend()
        try:
            kill_and_wait(actor_pid)
            time.sleep(1.0)
        finally:
            idle.kill()
        assert swarm.get(actor.pid.remote(), timeout=TIMEOUT) not in (actor_pid, idle.pid)


def test_call_made_after_the_actor_died_runs_on_the_restarted_actor(isolated, tmp_path):
    swarm.init(num_cpus=1)
    ctor = tmp_path / "ctor"
    actor = Counter.options(max_restarts=1).remote(str(ctor))
    pid = swarm.get(actor.pid.remote(), timeout=TIMEOUT)
    node_manager = psutil.Process(swarm.api._node_proc.pid)
    node_manager.suspend()                  # widens the window: nobody hears of the death yet
    try:
        os.kill(pid, signal.SIGKILL)
        assert wait_until(lambda: psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, 10)
        time.sleep(0.2)                     # the leader is a zombie before its other threads are gone
        ref = actor.pid.remote()            # made after the death: it cannot have run anywhere
        time.sleep(0.2)
    finally:
        node_manager.resume()
    assert swarm.get(ref, timeout=TIMEOUT) != pid
    assert attempts(ctor) == 2


# -- cancellation -----------------------------------------------------------------------------------
def _occupy_both_cpus(marker, gate) -> list:
    refs = [block.remote(str(marker), str(gate), f"blocker{i}") for i in range(2)]
    assert wait_for_line(marker, "start blocker0") and wait_for_line(marker, "start blocker1")
    return refs


def test_cancel_queued_task_drops_it(cluster, tmp_path):
    marker, gate = tmp_path / "log", tmp_path / "gate"
    try:
        blockers = _occupy_both_cpus(marker, gate)
        queued = mark.remote(str(marker), "queued")
        swarm.cancel(queued)
        with pytest.raises(TaskCancelledError):
            swarm.get(queued, timeout=TIMEOUT)
    finally:
        gate.touch()
    assert swarm.get(blockers, timeout=TIMEOUT) == ["blocker0", "blocker1"]
    assert swarm.get(mark.remote(str(marker), "after"), timeout=TIMEOUT) == "after"
    assert "ran queued" not in lines(marker)


def test_cancel_running_task_raises_keyboard_interrupt_in_it(cluster, tmp_path):
    marker, gate = tmp_path / "log", tmp_path / "gate"
    try:
        ref = block.remote(str(marker), str(gate))
        assert wait_for_line(marker, "start task")
        swarm.cancel(ref)
        with pytest.raises(TaskCancelledError):
            swarm.get(ref, timeout=TIMEOUT)
        assert wait_for_line(marker, "interrupted task")
    finally:
        gate.touch()
    pid = int(lines(marker)[0].split()[2])
    assert pid_alive(pid), "a plain cancel must not kill the worker"
    assert "finished task" not in lines(marker)


def test_cancel_force_kills_the_worker(cluster, tmp_path):
    marker, gate = tmp_path / "log", tmp_path / "gate"
    try:
        ref = block.remote(str(marker), str(gate))
        assert wait_for_line(marker, "start task")
        pid = int(lines(marker)[0].split()[2])
        swarm.cancel(ref, force=True)
        with pytest.raises(TaskCancelledError):
            swarm.get(ref, timeout=TIMEOUT)
        assert wait_until(lambda: not pid_alive(pid), 10)
    finally:
        gate.touch()
    assert [x for x in lines(marker) if x.startswith("start")] == [f"start task {pid}"]   # not retried
    assert swarm.get(mark.remote(str(marker), "after"), timeout=TIMEOUT) == "after"


def test_cancel_recursive_cancels_the_tasks_it_submitted(cluster, tmp_path):
    marker, gate = tmp_path / "log", tmp_path / "gate"
    try:
        ref = spawn_blocked_child.remote(str(marker), str(gate))
        assert wait_for_line(marker, "start child")
        swarm.cancel(ref)                           # recursive=True is the default
        with pytest.raises(TaskCancelledError):
            swarm.get(ref, timeout=TIMEOUT)
        assert wait_for_line(marker, "interrupted child")
    finally:
        gate.touch()
    assert "finished child" not in lines(marker)


def test_cancel_not_recursive_leaves_the_children_running(cluster, tmp_path):
    marker, gate = tmp_path / "log", tmp_path / "gate"
    try:
        ref = spawn_blocked_child.remote(str(marker), str(gate))
        assert wait_for_line(marker, "start child")
        swarm.cancel(ref, recursive=False)
        with pytest.raises(TaskCancelledError):
            swarm.get(ref, timeout=TIMEOUT)
    finally:
        gate.touch()
    assert wait_for_line(marker, "finished child")
    assert "interrupted child" not in lines(marker)


def test_cancel_actor_call_that_has_not_started_removes_it(cluster, tmp_path):
    marker, gate = tmp_path / "log", tmp_path / "gate"
    actor = Counter.remote(str(tmp_path / "ctor"))
    try:
        running = actor.wait_gate.remote(str(marker), str(gate))
        assert wait_until(lambda: attempts(marker) == 1)
        queued = actor.mark.remote(str(marker), "queued")
        swarm.cancel(queued)
    finally:
        gate.touch()
    with pytest.raises(TaskCancelledError):
        swarm.get(queued, timeout=TIMEOUT)
    assert swarm.get(running, timeout=TIMEOUT) == "done"
    assert swarm.get(actor.mark.remote(str(marker), "after"), timeout=TIMEOUT) == "after"
    assert "ran queued" not in lines(marker) and "ran after" in lines(marker)


def test_cancelled_actor_call_fails_at_once_while_the_actor_is_busy(cluster, tmp_path):
    marker, gate = tmp_path / "log", tmp_path / "gate"
    actor = Counter.remote(str(tmp_path / "ctor"))
    try:
        actor.wait_gate.remote(str(marker), str(gate))
        assert wait_until(lambda: attempts(marker) == 1)
        queued = actor.mark.remote(str(marker), "queued")
        swarm.cancel(queued)
        with pytest.raises(TaskCancelledError):
            swarm.get(queued, timeout=20)    # the actor stays busy: the gate opens only afterwards
    finally:
        gate.touch()


# -- owner death -------------------------------------------------------------------------------------
@pytest.mark.parametrize("big", [False, True], ids=["inline", "shared-memory"])
def test_objects_of_a_dead_owner_raise_owner_died(cluster, big):
    [inner], owner_pid = swarm.get(put_and_return_nested.remote(big), timeout=TIMEOUT)
    kill_and_wait(owner_pid)      # the worker that ran the task (workers live on between tasks)
    with pytest.raises(OwnerDiedError):
        swarm.get(inner, timeout=TIMEOUT)


def test_actors_of_a_dead_owner_are_killed(cluster, tmp_path):
    actor_pid, owner_pid, [handle] = swarm.get(create_actor_in_task.remote(str(tmp_path / "ctor")),
                                               timeout=TIMEOUT)
    # the driver holds a handle, so the actor stays up while its owner lives ...
    assert swarm.get(handle.pid.remote(), timeout=TIMEOUT) == actor_pid
    assert pid_alive(actor_pid)
    kill_and_wait(owner_pid)
    # ... and goes with it
    assert wait_until(lambda: not pid_alive(actor_pid), 10), "the dead owner's actor is still running"
    with pytest.raises(ActorDiedError, match="owner"):
        swarm.get(handle.pid.remote(), timeout=TIMEOUT)


# -- spilling ---------------------------------------------------------------------------------------
STORE = 300 * 2**20
BLOCK = 100 * 2**20


def _block(i: int) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 2**63 - 1, size=BLOCK // 8, dtype=np.int64)


@swarm.remote
def make_block(i):
    return _block(i)


def test_spilling_three_times_the_store_reads_back_bit_exact(isolated):
    swarm.init(num_cpus=2, object_store_memory=STORE)
    n = 9                                     # 3x the capacity
    refs = [swarm.put(_block(i)) for i in range(n)]
    refs += [make_block.remote(i) for i in range(n, n + 3)]   # task returns spill too
    swarm.wait(refs, num_returns=len(refs), timeout=TIMEOUT)
    info = swarm.api._cluster_info()
    store = info["object_store"]
    assert store["spilled"] > 0 and store["spilled_bytes"] > 0
    assert store["used"] <= store["capacity"] == STORE
    spill_dir = Path(info["session_dir"]) / "spill"
    assert spill_dir.is_dir() and any(spill_dir.iterdir()), "nothing on disk under the session dir"
    for i, ref in enumerate(refs):
        value = swarm.get(ref, timeout=TIMEOUT)
        assert value.dtype == np.int64 and np.array_equal(value, _block(i)), f"object {i} changed"
        del value
    store = swarm.api._cluster_info()["object_store"]
    assert store["restored"] > 0
    # read twice: what was restored may have been spilled again, and comes back again
    for i in (0, n - 1):
        assert np.array_equal(swarm.get(refs[i], timeout=TIMEOUT), _block(i))


def test_object_larger_than_the_store_raises_store_full(isolated):
    swarm.init(num_cpus=1, object_store_memory=STORE)
    with pytest.raises(ObjectStoreFullError, match="object_store_memory"):
        swarm.put(np.zeros(STORE + 2**20, dtype=np.uint8))
    assert swarm.get(swarm.put(b"still works"), timeout=TIMEOUT) == b"still works"


def test_producer_blocked_by_pinned_objects_waits_for_room(isolated):
    swarm.init(num_cpus=1, object_store_memory=STORE)
    pinned = [swarm.get(swarm.put(np.full(BLOCK, i, dtype=np.uint8)), timeout=TIMEOUT) for i in (1, 2)]
    released = threading.Event()

    def release() -> None:
        time.sleep(1.0)
        pinned.clear()            # the readers' views go: the pins go, room appears
        gc.collect()
        released.set()

    threading.Thread(target=release, daemon=True).start()
    ref = swarm.put(np.full(BLOCK, 3, dtype=np.uint8))       # must wait, not fail
    assert released.is_set()
    assert (swarm.get(ref, timeout=TIMEOUT) == 3).all()


def test_producer_blocked_by_pinned_objects_fails_after_the_configured_wait(tmp_path):
    proc = run_driver("""
        import numpy as np, swarm
        from swarm.exceptions import ObjectStoreFullError
        swarm.init(num_cpus=1, object_store_memory=300 * 2**20)
        N = 100 * 2**20
        pinned = [swarm.get(swarm.put(np.full(N, i, dtype=np.uint8))) for i in (1, 2)]
        try:
            swarm.put(np.full(N, 3, dtype=np.uint8))
            print("PUT SUCCEEDED")
        except ObjectStoreFullError as e:
            print("STORE FULL:", e)
        swarm.shutdown()
    """, tmp_path, env={"SWARM_OBJECT_STORE_FULL_TIMEOUT_S": "2"})
    assert proc.returncode == 0, proc.stderr
    assert "STORE FULL:" in proc.stdout, proc.stdout
    assert "pinned by a reader" in proc.stdout and "object_store_memory" in proc.stdout


# -- out of memory ----------------------------------------------------------------------------------
@swarm.remote
def hog(marker, gib):
    """Allocates and touches ``gib`` GiB, then holds it (the memory monitor should kill it)."""
    record(marker)
    chunks = [np.ones(2**28 // 8) for _ in range(int(gib * 4))]     # 256 MiB each, touched
    time.sleep(TIMEOUT)
    return len(chunks)


def test_memory_monitor_kills_the_hog_retries_then_raises_out_of_memory(isolated, tmp_path):
    vm = psutil.virtual_memory()
    if vm.available < 8 * 2**30:
        pytest.skip("needs 8 GiB of free memory")
    used = 1.0 - vm.available / vm.total
    threshold = used + 2**30 / vm.total        # 1 GiB above what the node uses now
    swarm.init(num_cpus=2, _memory_usage_threshold=threshold)
    marker = tmp_path / "attempts"
    with pytest.raises(OutOfMemoryError) as info:
        swarm.get(hog.remote(str(marker), 3), timeout=4 * TIMEOUT)
    pids = lines(marker)
    assert len(pids) == 4, "SWARM_TASK_OOM_RETRIES defaults to 3 retries"
    msg = str(info.value)
    assert "hog" in msg
    assert f"pid {pids[-1]}" in msg                          # the process ...
    assert "GiB" in msg                                      # ... its memory
    assert f"{threshold:.0%}" in msg                         # the threshold
    assert "Top users" in msg
    assert swarm.get(pid_of_worker.remote(), timeout=TIMEOUT) > 0     # the node carries on


# -- hang diagnosis ---------------------------------------------------------------------------------
HANG_DRIVER = """
    import os, sys, threading, time
    import swarm
    swarm.init(num_cpus=2)
    gate = os.path.join(sys.argv[1], "gate")

    @swarm.remote
    def hold(gate):
        while not os.path.exists(gate):
            time.sleep(0.01)
        return os.getpid()

    @swarm.remote(num_cpus=2)
    def needs_two():
        return "ran"

    holders = [hold.remote(gate) for _ in range(2)]
    while len(swarm.api._cluster_info()["leases"]) < 2:   # both CPUs held
        time.sleep(0.01)
    ref = needs_two.remote()
    threading.Timer(6.0, lambda: open(gate, "w").close()).start()   # long after the warning
    print("RESULT", {call})
    print("HOLDERS", *swarm.get(holders))
    swarm.shutdown()
"""


@pytest.mark.parametrize("call", ["get", "wait"])
def test_slow_get_or_wait_says_what_the_task_waits_for(tmp_path, call):
    expr = "swarm.get(ref)" if call == "get" else "swarm.wait([ref])[0] == [ref]"
    proc = run_driver(HANG_DRIVER.replace("{call}", expr), tmp_path, env={"SWARM_GET_WARN_AFTER_S": "2"})
    assert proc.returncode == 0, proc.stderr
    assert ("RESULT ran" if call == "get" else "RESULT True") in proc.stdout
    pids = proc.stdout.split("HOLDERS")[1].split()
    err = proc.stderr
    assert "queued: needs 2 CPU" in err, err
    assert "the node has 2 CPU" in err and "0 CPU free" in err, err
    assert "held by hold (pid" in err and all(f"hold (pid {p})" in err for p in pids), err


def test_slow_get_names_the_argument_still_being_computed(tmp_path):
    proc = run_driver("""
        import os, sys, threading, time
        import swarm
        swarm.init(num_cpus=2)
        gate = os.path.join(sys.argv[1], "gate")

        @swarm.remote
        def slow_input(gate):
            while not os.path.exists(gate):
                time.sleep(0.01)
            return 1

        @swarm.remote
        def consumer(x):
            return x + 1

        ref = consumer.remote(slow_input.remote(gate))
        threading.Timer(6.0, lambda: open(gate, "w").close()).start()
        print("RESULT", swarm.get(ref))
        swarm.shutdown()
    """, tmp_path, env={"SWARM_GET_WARN_AFTER_S": "2"})
    assert proc.returncode == 0, proc.stderr
    assert "RESULT 2" in proc.stdout
    assert "task consumer" in proc.stderr and "waiting for its arguments" in proc.stderr, proc.stderr
    assert "task slow_input" in proc.stderr and "running" in proc.stderr, proc.stderr


def test_infeasible_request_fails_at_once(cluster):
    with pytest.raises(TaskUnschedulableError, match="3 CPU"):
        swarm.get(pid_of_worker.options(num_cpus=3).remote(), timeout=TIMEOUT)
    with pytest.raises(TaskUnschedulableError, match="no_such_resource"):
        swarm.get(pid_of_worker.options(resources={"no_such_resource": 1}).remote(), timeout=TIMEOUT)


# -- bugs found by the chaos test (tests/chaos), reduced -------------------------------------------
def test_worker_killed_while_starting_does_not_stall_the_node(isolated):
    swarm.init(num_cpus=1)
    nm = psutil.Process(swarm.api._node_proc.pid)
    ref = _sleepy.options(max_retries=-1).remote()
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:         # SIGKILL every worker, also ones still starting
        for child in nm.children():
            try:
                child.kill()
            except psutil.Error:
                pass
        time.sleep(0.002)
    assert swarm.get(ref, timeout=30) == "done"


@swarm.remote
def _sleepy():
    time.sleep(0.3)
    return "done"


@swarm.remote
class _Gate:
    def wait(self, gate):
        while not os.path.exists(gate):
            time.sleep(0.01)


@swarm.remote
def _blocks_on_actor(gate_actor, gate):
    """Blocks in get (its worker hands back the tasks queued behind it); with None it returns."""
    return gate_actor and swarm.get(gate_actor.wait.remote(gate))


@swarm.remote
def _pipelined(x, delay):
    time.sleep(delay)
    return x, os.getpid()


def test_tasks_handed_back_by_a_blocked_worker_run_when_pushed_to_it_again(isolated, tmp_path):
    swarm.init(num_cpus=1)
    gate = tmp_path / "gate"
    gate_actor = _Gate.remote()
    # _pipelined is short: from now on the owner queues several on one worker at once
    warm = swarm.get([_pipelined.remote(i, 0) for i in range(200)], timeout=TIMEOUT)
    for pid in {p for _, p in warm}:       # the next worker has never been sent _pipelined
        kill_and_wait(pid)
    swarm.get(_blocks_on_actor.remote(None, None), timeout=TIMEOUT)   # lease it (the lease lingers)
    # the blocker goes to that worker with the first _pipelined (and its function) queued behind it;
    # blocked, the worker hands that one back; once unblocked it is sent more, without the function
    refs = [_blocks_on_actor.remote(gate_actor, str(gate))] + [_pipelined.remote(i, 0.01) for i in range(300)]
    threading.Timer(0.5, gate.touch).start()
    assert [x for x, _ in swarm.get(refs[1:], timeout=TIMEOUT)] == list(range(300))
