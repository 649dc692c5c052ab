"""Failures: a killed replica is replaced and requests succeed after; a request in flight on a
replica that dies gets a clean 503 (never a hang); constructor errors fail serve.run with the cause;
a taken port fails serve.start."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

from serve_testutil import HOST, http, wait_until  # noqa: E402

import swarm  # noqa: E402
from swarm import serve  # noqa: E402
from swarm.exceptions import ActorDiedError  # noqa: E402
from swarm.serve.exceptions import RayServeException  # noqa: E402

NO_CPU = {"num_cpus": 0}
TIMEOUT = 30


@serve.deployment(max_ongoing_requests=10, ray_actor_options=NO_CPU)
class Fragile:
    async def __call__(self, request) -> str:
        if request.url.path.endswith("/die"):
            os._exit(1)
        await asyncio.sleep(float(request.query_params.get("sleep", 0)))
        return serve.get_replica_context().replica_tag

    async def whoami(self, sleep: float = 0.0) -> str:
        await asyncio.sleep(sleep)
        return serve.get_replica_context().replica_id.actor_name


@serve.deployment(ray_actor_options=NO_CPU)
class BrokenInit:
    def __init__(self) -> None:
        raise ValueError("cannot load the model weights")


def test_killed_replica_is_replaced(serve_handles):
    handle = serve.run(Fragile.options(num_replicas=2).bind(), name="fragile", route_prefix=None)
    names = {handle.whoami.remote().result(timeout_s=TIMEOUT) for _ in range(20)}
    assert len(names) == 2
    victim = sorted(names)[0]
    in_flight = [handle.whoami.remote(3.0) for _ in range(4)]   # some of them land on the victim
    time.sleep(0.3)
    swarm.kill(swarm.get_actor(victim, namespace="serve"))
    t0 = time.monotonic()
    outcomes = []
    for r in in_flight:
        try:
            outcomes.append(r.result(timeout_s=TIMEOUT))
        except ActorDiedError as e:
            outcomes.append(e)
    died = [o for o in outcomes if isinstance(o, ActorDiedError)]
    assert died, outcomes
    assert "died while handling request" in str(died[0])
    assert all(o != victim for o in outcomes if isinstance(o, str))

    def replaced() -> bool:
        return serve.status().applications["fragile"].deployments["Fragile"].replica_states == {"RUNNING": 2}
    assert wait_until(replaced, timeout=TIMEOUT)
    names_after = {handle.whoami.remote().result(timeout_s=TIMEOUT) for _ in range(30)}
    assert len(names_after) == 2 and victim not in names_after
    assert time.monotonic() - t0 < TIMEOUT


def test_replica_dying_in_a_request_gives_503_and_is_replaced(serve_url):
    serve.run(Fragile.bind(), name="fragile", route_prefix="/f")
    first = http(f"{serve_url}/f").text
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(http, f"{serve_url}/f?sleep=60")   # in flight on the same replica
        time.sleep(0.5)
        t0 = time.monotonic()
        r = http(f"{serve_url}/f/die")
        assert r.status_code == 503
        assert "died while handling request" in r.text and "exited with code 1" in r.text
        slow_r = slow.result(timeout=TIMEOUT)
        assert slow_r.status_code == 503                       # the in-flight one fails cleanly too
        assert time.monotonic() - t0 < 10
    assert wait_until(lambda: http(f"{serve_url}/f").status_code == 200, timeout=TIMEOUT)
    after = [http(f"{serve_url}/f") for _ in range(10)]
    assert all(a.status_code == 200 and a.text != first for a in after)


def test_constructor_error_fails_run_with_the_cause(serve_handles):
    with pytest.raises(RuntimeError, match="cannot load the model weights"):
        serve.run(BrokenInit.bind(), name="broken", route_prefix=None)
    app = serve.status().applications["broken"]
    assert app.status == "DEPLOY_FAILED"
    assert "cannot load the model weights" in app.deployments["BrokenInit"].message
    serve.delete("broken")
    assert "broken" not in serve.status().applications


def test_taken_port_fails_start(cluster):
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(RayServeException, match=f"cannot listen on {HOST}:{port}"):
            serve.start(http_options={"host": HOST, "port": port})
    assert serve.status().applications == {}
    serve.shutdown()


@serve.deployment(health_check_period_s=0.1, health_check_timeout_s=5, ray_actor_options=NO_CPU)
class SelfChecking:
    def __init__(self) -> None:
        self.healthy = True

    def check_health(self) -> None:
        if not self.healthy:
            raise RuntimeError("lost the GPU")

    def break_me(self) -> None:
        self.healthy = False

    def tag(self) -> str:
        return serve.get_replica_context().replica_tag


def test_failing_check_health_replaces_the_replica(serve_handles):
    handle = serve.run(SelfChecking.bind(), name="checked", route_prefix=None)
    before = handle.tag.remote().result(timeout_s=TIMEOUT)
    handle.break_me.remote().result(timeout_s=TIMEOUT)

    def replaced() -> bool:
        try:
            return handle.tag.remote().result(timeout_s=TIMEOUT) != before
        except ActorDiedError:  # a call that raced the replacement
            return False
    assert wait_until(replaced, timeout=TIMEOUT)
    assert wait_until(lambda: serve.status().applications["checked"].status == "RUNNING", timeout=TIMEOUT)


def test_dead_proxy_is_restarted_on_the_same_port(serve_url):
    serve.run(Fragile.bind(), name="fragile", route_prefix="/f")
    assert http(f"{serve_url}/f").status_code == 200
    swarm.kill(swarm.get_actor("SERVE_PROXY_ACTOR", namespace="serve"))

    def answers() -> bool:
        try:
            return http(f"{serve_url}/f", timeout=2).status_code == 200
        except OSError:
            return False
    assert wait_until(answers, timeout=TIMEOUT)
