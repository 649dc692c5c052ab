"""Autoscaling: a deployment grows under load and shrinks after, between min and max replicas
(through the controller's view in ``serve.status()``), and scales up from zero on queued requests."""

from __future__ import annotations

import asyncio
import threading

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

from serve_testutil import wait_until  # noqa: E402

from swarm import serve  # noqa: E402

NO_CPU = {"num_cpus": 0}
TIMEOUT = 30
FAST_SCALING = {"target_ongoing_requests": 1, "upscale_delay_s": 0.0, "downscale_delay_s": 1.0,
                "look_back_period_s": 0.5, "metrics_interval_s": 0.1}


@serve.deployment(max_ongoing_requests=10, ray_actor_options=NO_CPU,
                  autoscaling_config={"min_replicas": 1, "max_replicas": 2, **FAST_SCALING})
class Slow:
    async def __call__(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return serve.get_replica_context().replica_tag


def _replicas(app: str, deployment: str) -> dict:
    apps = serve.status().applications
    return apps[app].deployments[deployment].replica_states if app in apps else {}


def test_autoscaling_adds_a_replica_under_load_and_removes_it_after(serve_handles):
    handle = serve.run(Slow.bind(), name="auto", route_prefix=None)
    assert _replicas("auto", "Slow") == {"RUNNING": 1}
    stop = threading.Event()
    served_by: set = set()

    def load() -> None:  # keeps 6 requests in flight until told to stop
        while not stop.is_set():
            for r in [handle.remote(0.2) for _ in range(6)]:
                served_by.add(r.result(timeout_s=TIMEOUT))
    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        assert wait_until(lambda: _replicas("auto", "Slow").get("RUNNING") == 2, timeout=TIMEOUT), \
            _replicas("auto", "Slow")
        assert wait_until(lambda: len(served_by) == 2, timeout=TIMEOUT)
        assert serve.status().applications["auto"].status == "RUNNING"
    finally:
        stop.set()
        for t in threads:
            t.join(TIMEOUT)
    assert wait_until(lambda: _replicas("auto", "Slow") == {"RUNNING": 1}, timeout=TIMEOUT), \
        _replicas("auto", "Slow")
    assert handle.remote(0.0).result(timeout_s=TIMEOUT)


def test_scale_from_zero_on_queued_requests(serve_handles):
    app = Slow.options(name="Lazy", autoscaling_config={"min_replicas": 0, "max_replicas": 1,
                                                        **FAST_SCALING}).bind()
    handle = serve.run(app, name="lazy", route_prefix=None)
    assert _replicas("lazy", "Lazy") == {}
    assert handle.remote(0.0).result(timeout_s=TIMEOUT)  # queued at the handle until a replica exists
    assert _replicas("lazy", "Lazy") == {"RUNNING": 1}
    assert wait_until(lambda: _replicas("lazy", "Lazy") == {}, timeout=TIMEOUT)
