"""Shared fixtures: one local cluster for the whole session (2 CPUs, 1 logical GPU, a custom
resource), restarted only by tests that need their own configuration."""

from __future__ import annotations

import pytest

import swarm

DEFAULT_CLUSTER = {"num_cpus": 2, "num_gpus": 1, "resources": {"custom": 1}}


def _own_local_cluster() -> bool:
    return swarm.is_initialized() and swarm.api._node_proc is not None


@pytest.fixture
def cluster():
    """The shared local cluster (started on first use)."""
    if swarm.is_initialized() and not _own_local_cluster():
        swarm.shutdown()   # attached to some other cluster (e.g. the multi-node tests'): not this one
    if not swarm.is_initialized():
        swarm.init(**DEFAULT_CLUSTER)
    yield
    if not swarm.is_initialized():  # a test shut it down: bring it back for the next one
        swarm.init(**DEFAULT_CLUSTER)


@pytest.fixture
def isolated():
    """No cluster running: the test calls init() itself; anything it starts is stopped after."""
    if swarm.is_initialized():
        swarm.shutdown()
    yield
    if swarm.is_initialized():
        swarm.shutdown()


@pytest.fixture(scope="session", autouse=True)
def _shutdown_at_end():
    yield
    swarm.shutdown()
