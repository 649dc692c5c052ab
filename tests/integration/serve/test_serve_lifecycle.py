"""Lifecycle: serve.status / delete / shutdown, redeploying an app (new code, new config),
user_config, options(), route conflicts, back-pressure, and Serve started again after shutdown."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

from serve_testutil import http, wait_until  # noqa: E402

import swarm  # noqa: E402
from swarm import serve  # noqa: E402
from swarm.serve.exceptions import BackPressureError, DeploymentUnavailableError  # noqa: E402

NO_CPU = {"num_cpus": 0}
TIMEOUT = 30


@serve.deployment(ray_actor_options=NO_CPU)
class Versioned:
    def __init__(self, version: str) -> None:
        self.version = version
        self.threshold = None

    def reconfigure(self, config: dict) -> None:
        self.threshold = config["threshold"]

    async def __call__(self, request=None) -> dict:
        return {"version": self.version, "threshold": self.threshold}


@serve.deployment(max_ongoing_requests=1, max_queued_requests=2, ray_actor_options=NO_CPU)
class OneAtATime:
    async def __call__(self, request) -> str:
        await asyncio.sleep(0.5)
        return "ok"


def test_status_delete_and_shutdown(serve_url):
    serve.run(Versioned.options(num_replicas=2).bind("v1"), name="a", route_prefix="/a")
    serve.run(Versioned.bind("b1"), name="b", route_prefix="/b")
    st = serve.status()
    assert set(st.applications) == {"a", "b"}
    a = st.applications["a"]
    assert a.status == "RUNNING" and a.route_prefix == "/a"
    assert a.deployments["Versioned"].status == "HEALTHY"
    assert a.deployments["Versioned"].replica_states == {"RUNNING": 2}
    assert st.proxies and all(p == "HEALTHY" for p in st.proxies.values())
    handle_a = serve.get_app_handle("a")

    serve.delete("a")
    assert set(serve.status().applications) == {"b"}
    assert http(f"{serve_url}/a").status_code == 404
    assert http(f"{serve_url}/b").json()["version"] == "b1"
    with pytest.raises(DeploymentUnavailableError):
        handle_a.remote().result(timeout_s=TIMEOUT)
    serve.delete("no-such-app")  # a no-op

    serve.shutdown()
    assert serve.status().applications == {}
    with pytest.raises(OSError):
        http(f"{serve_url}/b", timeout=5)
    serve.shutdown()  # twice is fine


def test_redeploy_new_code_and_user_config(serve_url):
    serve.run(Versioned.options(user_config={"threshold": 1}).bind("v1"), name="app", route_prefix="/app")
    assert http(f"{serve_url}/app").json() == {"version": "v1", "threshold": 1}
    # config only: live replicas are reconfigured in place
    serve.run(Versioned.options(user_config={"threshold": 2}).bind("v1"), name="app", route_prefix="/app")
    assert wait_until(lambda: http(f"{serve_url}/app").json()["threshold"] == 2, timeout=TIMEOUT)
    # new constructor arguments: new replicas replace the old ones
    serve.run(Versioned.options(user_config={"threshold": 3}).bind("v2"), name="app", route_prefix="/app")
    assert http(f"{serve_url}/app").json() == {"version": "v2", "threshold": 3}
    assert wait_until(lambda: serve.status().applications["app"].deployments["Versioned"].replica_states
                      == {"RUNNING": 1}, timeout=TIMEOUT)


def test_route_prefix_conflict_and_validation(serve_url):
    serve.run(Versioned.bind("x"), name="x", route_prefix="/same")
    with pytest.raises(ValueError, match="already used by application 'x'"):
        serve.run(Versioned.bind("y"), name="y", route_prefix="/same")
    with pytest.raises(ValueError, match="route_prefix"):
        serve.run(Versioned.bind("z"), name="z", route_prefix="no-slash")


def test_backpressure_beyond_max_queued_requests(serve_url):
    serve.run(OneAtATime.bind(), name="narrow", route_prefix="/narrow")
    with ThreadPoolExecutor(6) as pool:
        codes = sorted(r.status_code for r in pool.map(lambda _: http(f"{serve_url}/narrow"), range(6)))
    assert 200 in codes and 503 in codes   # one runs, two wait, the rest are turned away
    handle = serve.get_app_handle("narrow")
    responses = [handle.remote(None) for _ in range(6)]
    errors = []
    for r in responses:
        try:
            r.result(timeout_s=TIMEOUT)
        except BackPressureError as e:
            errors.append(e)
    assert errors and "max_queued_requests=2" in str(errors[0])


def test_options_and_deployment_attributes():
    d = Versioned.options(name="V", num_replicas=3, max_ongoing_requests=7,
                          ray_actor_options={"num_cpus": 0.5})
    assert (d.name, d.num_replicas, d.max_ongoing_requests) == ("V", 3, 7)
    assert d.ray_actor_options == {"num_cpus": 0.5}
    assert Versioned.name == "Versioned" and Versioned.num_replicas == 1
    with pytest.raises(RuntimeError, match="bind"):
        Versioned("v")
    with pytest.raises(TypeError, match="unknown deployment options"):
        Versioned.options(num_replica=2)
    with pytest.raises(ValueError, match="ray_actor_options"):
        Versioned.options(ray_actor_options={"max_concurrency": 4})
    with pytest.raises(TypeError, match="bind"):
        serve.run(Versioned)  # a Deployment, not an Application


def test_serve_starts_again_after_shutdown(cluster):
    for attempt in range(2):
        serve.start(proxy_location="Disabled")
        handle = serve.run(Versioned.bind(f"run{attempt}"), name="again", route_prefix=None)
        assert handle.remote().result(timeout_s=TIMEOUT)["version"] == f"run{attempt}"
        t0 = time.monotonic()
        serve.shutdown()
        assert time.monotonic() - t0 < 15
    assert not serve.status().applications
    assert swarm.is_initialized()
