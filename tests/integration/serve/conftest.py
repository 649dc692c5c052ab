"""Fixtures of the swarm.serve tests: Serve started for one test, with its HTTP proxy on a free
loopback port or without a proxy. (Each test module skips itself when uvicorn/starlette are missing.)"""

from __future__ import annotations

import pytest
from serve_testutil import HOST, free_port

from swarm import serve


@pytest.fixture
def serve_url(cluster):
    """Serve running with its proxy on a free port; yields the base URL. Shut down after the test."""
    port = free_port()
    serve.start(http_options={"host": HOST, "port": port})
    try:
        yield f"http://{HOST}:{port}"
    finally:
        serve.shutdown()


@pytest.fixture
def serve_handles(cluster):
    """Serve running without an HTTP proxy (handle-only tests)."""
    serve.start(proxy_location="Disabled")
    try:
        yield
    finally:
        serve.shutdown()
