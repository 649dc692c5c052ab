"""Progress bars fed from tasks reach the driver as one bar per description, and ``as_completed`` yields
refs as they finish.

The bar tests run a driver script in a subprocess so its real stderr (where bars are drawn) can be read.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import swarm
import swarm.experimental
from swarm.exceptions import GetTimeoutError
from swarm.util import as_completed

SRC = str(Path(__file__).resolve().parents[2] / "src")
MAGIC = "__swarm_tqdm__"

DRIVER = textwrap.dedent("""
    import sys, time
    import swarm
    from swarm.experimental.tqdm import tqdm
    from swarm.util import as_completed

    swarm.init(num_cpus=4)

    @swarm.remote(num_cpus=0)
    class Barrier:
        # every task's bar is open before any task makes progress, so the bars are all in the group
        # at once however the tasks are scheduled
        def __init__(self, n):
            self.n, self.arrived = n, 0
        def arrive(self):
            self.arrived += 1
        def ready(self):
            return self.arrived >= self.n

    @swarm.remote
    def work(i, barrier):
        bar = tqdm(total=25, desc="work")
        swarm.get(barrier.arrive.remote())
        while not swarm.get(barrier.ready.remote()):
            time.sleep(0.01)
        for _ in range(25):
            time.sleep(0.004)
            bar.update(1)
        bar.close()
        print(f"plain line from task {i}")
        return i

    @swarm.remote
    def square(x):
        return x * x

    if sys.argv[1] == "tasks":
        barrier = Barrier.remote(4)
        refs = [work.remote(i, barrier) for i in range(4)]
        sys.stdout.write(f"WORK {sorted(swarm.get(refs))}\\n")   # one write: forwarded lines cannot split it
    else:   # a bar in the driver, over refs as they complete
        squares = [square.remote(i) for i in range(8)]
        got = [swarm.get(r) for r in tqdm(as_completed(squares), total=len(squares), desc="collect")]
        sys.stdout.write(f"SQUARES {sorted(got)}\\n")
""")


def _run_driver(tmp_path: Path, what: str, extra_path: str | None = None) -> subprocess.CompletedProcess:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (extra_path, SRC, env.get("PYTHONPATH")) if p)
    # bytes, decoded here: text mode would turn the carriage returns of bar redraws into newlines
    proc = subprocess.run([sys.executable, str(script), what], env=env, capture_output=True, timeout=120,
                          cwd=tmp_path)
    proc.stdout, proc.stderr = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 0, proc.stderr
    assert MAGIC not in proc.stdout and MAGIC not in proc.stderr   # bar states are drawn, never printed
    return proc


def _bar_lines(stderr: str, desc: str) -> list[str]:
    """Each finished bar is one line of the output; within it, redraws are separated by carriage returns.
    Returns the final state of every line that shows the bar ``desc``."""
    out = []
    for line in stderr.split("\n"):
        states = [s for s in line.split("\r") if s.startswith(f"{desc}:")]
        if states:
            out.append(states[-1])
    return out


def test_bars_from_many_tasks_render_as_one_aggregated_bar(tmp_path: Path) -> None:
    pytest.importorskip("tqdm")
    proc = _run_driver(tmp_path, "tasks")
    assert "WORK [0, 1, 2, 3]" in proc.stdout
    # four tasks' bars of 25 with the same description: one bar (one line), reaching 100
    work = _bar_lines(proc.stderr, "work")
    assert len(work) == 1, proc.stderr
    assert "100/100" in work[0] and "100%" in work[0], proc.stderr
    # what tasks print still reaches the driver, prefixed with where it came from
    for i in range(4):
        assert re.search(rf"^\(work pid=\d+\) plain line from task {i}$", proc.stdout, re.M), proc.stdout


def test_driver_bar_over_as_completed(tmp_path: Path) -> None:
    pytest.importorskip("tqdm")
    proc = _run_driver(tmp_path, "driver")
    assert "SQUARES [0, 1, 4, 9, 16, 25, 36, 49]" in proc.stdout
    collect = _bar_lines(proc.stderr, "collect")
    assert len(collect) == 1 and "8/8" in collect[0], proc.stderr


def test_bars_are_plain_text_without_the_tqdm_package(tmp_path: Path) -> None:
    hide = tmp_path / "no_tqdm"
    hide.mkdir()
    (hide / "tqdm.py").write_text("raise ImportError('tqdm is hidden by this test')\n")
    proc = _run_driver(tmp_path, "tasks", extra_path=str(hide))
    assert "WORK [0, 1, 2, 3]" in proc.stdout
    work = [line for line in proc.stderr.splitlines() if line.startswith("work:")]
    assert work and work[-1] == "work: 100% 100/100 it", proc.stderr
    assert sum("100/100" in line for line in work) == 1, proc.stderr


def test_tqdm_rejects_arguments_it_does_not_support() -> None:
    from swarm.experimental.tqdm import tqdm
    with pytest.raises(TypeError, match="unsupported argument.*bogus"):
        tqdm(range(3), bogus=1)
    # tqdm's display options are accepted and ignored
    with tqdm(range(3), desc="quiet", disable=True, leave=False, ncols=80) as bar:
        assert list(bar) == [0, 1, 2]
    assert bar.n == 3


@swarm.remote
def _wait_for_file(path: str) -> str:
    import time
    while not os.path.exists(path):
        time.sleep(0.01)
    return "slow"


@swarm.remote
def _quick(i: int) -> int:
    return i


def test_as_completed_yields_refs_as_they_finish(cluster, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    slow = _wait_for_file.remote(str(gate))
    fast = [_quick.remote(i) for i in range(3)]
    it = as_completed([slow] + fast)
    first = [next(it) for _ in range(3)]
    assert set(first) == set(fast)       # the slow one cannot be ready before its gate opens
    gate.touch()
    assert next(it) == slow
    assert swarm.get(slow) == "slow"
    with pytest.raises(StopIteration):
        next(it)


def test_as_completed_timeout_raises_get_timeout_error(cluster, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    slow = _wait_for_file.remote(str(gate))
    done = _quick.remote(7)
    got = []
    with pytest.raises(GetTimeoutError, match="1 of 2 refs were still not ready") as info:
        for ref in swarm.experimental.as_completed([slow, done], timeout=0.5):
            got.append(ref)
    assert got == [done]
    assert isinstance(info.value, TimeoutError)
    gate.touch()
    assert swarm.get(slow) == "slow"


def test_as_completed_many_refs_each_once(cluster) -> None:
    refs = [_quick.remote(i) for i in range(2000)]
    seen = list(as_completed(refs))
    assert len(seen) == len(refs) and set(seen) == set(refs)
    assert sorted(swarm.get(seen)) == list(range(2000))


def test_as_completed_bad_input(cluster) -> None:
    ref = _quick.remote(1)
    with pytest.raises(TypeError, match="element 1 is a int"):
        list(as_completed([ref, 5]))
    with pytest.raises(ValueError, match="same ObjectRef more than once"):
        list(as_completed([ref, ref]))
    assert list(as_completed([])) == []
