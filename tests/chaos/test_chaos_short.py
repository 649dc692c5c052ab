"""The chaos test (``test_chaos.py``) in a short form that CI runs: 2,000 tasks, 4 actors and about
3 s of SIGKILLs (one every 100 ms). Run with ``-s`` to see tasks/s and the kills survived."""

from __future__ import annotations

import pytest
from test_chaos import run_chaos  # tests/chaos is on sys.path (pytest's rootdir-less import)


@pytest.mark.timeout(170)
def test_chaos_short(isolated, tmp_path):
    run_chaos(tmp_path, n_tasks=2000, n_actors=4, chaos_seconds=3.0, timeout=60)
