"""`make demo` runs examples/demo.py: it must finish, check its own results and report what the
cluster recorded."""

from __future__ import annotations

import pathlib
import subprocess
import sys

DEMO = pathlib.Path(__file__).resolve().parents[2] / "examples" / "demo.py"


def test_demo_runs_and_checks_its_results(isolated):
    proc = subprocess.run([sys.executable, str(DEMO)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "all results correct" in out
    assert "(e) what the cluster recorded" in out and "count_primes_local" in out
