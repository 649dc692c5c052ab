"""DeploymentHandle calls: results, methods, composition with bind, responses passed as arguments,
await from asyncio, timeouts, load balancing over replicas and the max_ongoing_requests limit."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

import swarm  # noqa: E402
from swarm import serve  # noqa: E402
from swarm.exceptions import GetTimeoutError  # noqa: E402
from swarm.serve.exceptions import RayServeException  # noqa: E402
from swarm.serve.handle import DeploymentHandle, DeploymentResponse  # noqa: E402

NO_CPU = {"num_cpus": 0}
TIMEOUT = 30


@serve.deployment(ray_actor_options=NO_CPU)
class Adder:
    def __init__(self, increment: int) -> None:
        self.increment = increment

    def __call__(self, x: int) -> int:
        return x + self.increment

    async def slow(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "done"

    def fail(self) -> None:
        raise KeyError("no such key")


@serve.deployment(ray_actor_options=NO_CPU)
class Multiplier:
    def __init__(self, factor: int) -> None:
        self.factor = factor

    async def __call__(self, x: int) -> int:
        return x * self.factor


@serve.deployment(ray_actor_options=NO_CPU)
class Pipeline:
    """Composition: the bound deployments arrive as DeploymentHandles."""

    def __init__(self, adder: DeploymentHandle, multipliers: list) -> None:
        assert isinstance(adder, DeploymentHandle)
        self.adder = adder
        self.multipliers = multipliers

    async def __call__(self, x: int) -> list:
        added = await self.adder.remote(x)
        # a response passed straight into another call is resolved first
        return [await m.remote(self.adder.remote(added)) for m in self.multipliers]

    def sync_path(self, x: int) -> int:
        # sync methods run on a thread, so they may block on .result()
        return self.adder.remote(x).result(timeout_s=TIMEOUT)


@serve.deployment(num_replicas=2, max_ongoing_requests=3, ray_actor_options=NO_CPU)
class Tracked:
    def __init__(self) -> None:
        self.running = 0
        self.peak = 0

    async def __call__(self, seconds: float) -> tuple:
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await asyncio.sleep(seconds)
        finally:
            self.running -= 1
        return os.getpid(), serve.get_replica_context().replica_tag

    def peak_concurrency(self) -> int:
        return self.peak


@serve.deployment(ray_actor_options=NO_CPU)
def double(x: int) -> int:
    return 2 * x


def test_handle_calls_and_methods(serve_handles):
    handle = serve.run(Adder.bind(10), name="adder", route_prefix=None)
    assert handle.remote(1).result(timeout_s=TIMEOUT) == 11
    assert handle.slow.remote(0.01).result(timeout_s=TIMEOUT) == "done"
    assert handle.options(method_name="slow").remote(0.0).result(timeout_s=TIMEOUT) == "done"
    responses = [handle.remote(i) for i in range(50)]
    assert all(isinstance(r, DeploymentResponse) for r in responses)
    assert [r.result(timeout_s=TIMEOUT) for r in responses] == [i + 10 for i in range(50)]


def test_function_deployment_via_handle(serve_handles):
    handle = serve.run(double.bind(), name="double", route_prefix=None)
    assert handle.remote(21).result(timeout_s=TIMEOUT) == 42


def test_user_errors_keep_their_type(serve_handles):
    handle = serve.run(Adder.bind(0), name="adder", route_prefix=None)
    with pytest.raises(KeyError, match="no such key"):
        handle.fail.remote().result(timeout_s=TIMEOUT)
    with pytest.raises(AttributeError, match="no method 'nope'"):
        handle.nope.remote().result(timeout_s=TIMEOUT)


def test_result_timeout(serve_handles):
    handle = serve.run(Adder.bind(0), name="adder", route_prefix=None)
    response = handle.slow.remote(2.0)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        response.result(timeout_s=0.2)
    assert time.monotonic() - t0 < 1.5
    assert isinstance(GetTimeoutError("x"), TimeoutError)
    assert response.result(timeout_s=TIMEOUT) == "done"  # the request itself went on


def test_composition_with_bind(serve_handles):
    app = Pipeline.bind(Adder.bind(1), [Multiplier.bind(2), Multiplier.options(name="Tripler").bind(3)])
    handle = serve.run(app, name="pipeline", route_prefix=None)
    # x=1: added=2; adder(2)=3; [3*2, 3*3]
    assert handle.remote(1).result(timeout_s=TIMEOUT) == [6, 9]
    assert handle.sync_path.remote(5).result(timeout_s=TIMEOUT) == 6
    status = serve.status().applications["pipeline"]
    assert set(status.deployments) == {"Pipeline", "Adder", "Multiplier", "Tripler"}
    # handles to inner deployments, from the driver
    assert serve.get_deployment_handle("Tripler", "pipeline").remote(2).result(timeout_s=TIMEOUT) == 6
    assert serve.get_app_handle("pipeline").remote(0).result(timeout_s=TIMEOUT) == [4, 6]
    with pytest.raises(RayServeException):
        serve.get_app_handle("nope")
    with pytest.raises(RayServeException):
        serve.get_deployment_handle("Nope", "pipeline")


def test_await_responses_in_asyncio(serve_handles):
    handle = serve.run(Adder.bind(100), name="adder", route_prefix=None)

    async def main() -> list:
        with pytest.raises(RuntimeError, match="await"):
            handle.remote(0).result()
        return await asyncio.gather(*[handle.remote(i) for i in range(10)])
    assert asyncio.run(main()) == [100 + i for i in range(10)]


def test_handles_pickle_into_tasks(serve_handles):
    handle = serve.run(Adder.bind(7), name="adder", route_prefix=None)

    @swarm.remote(num_cpus=0)
    def call_through(h: DeploymentHandle, x: int) -> int:
        return h.remote(x).result(timeout_s=TIMEOUT)
    assert swarm.get(call_through.remote(handle, 3), timeout=TIMEOUT) == 10


def test_load_balancing_and_max_ongoing_requests(serve_handles):
    handle = serve.run(Tracked.bind(), name="tracked", route_prefix=None)
    # 24 concurrent requests, 2 replicas x 3 slots: the rest queue in the router
    results = [r.result(timeout_s=TIMEOUT) for r in [handle.remote(0.1) for _ in range(24)]]
    assert len({tag for _, tag in results}) == 2
    peaks = [handle.peak_concurrency.remote().result(timeout_s=TIMEOUT) for _ in range(20)]
    assert max(peaks) <= 3
    assert max(peaks) >= 2


def test_handles_from_many_threads(serve_handles):
    handle = serve.run(Adder.bind(1), name="adder", route_prefix=None)
    errors: list = []

    def worker(base: int) -> None:
        try:
            for i in range(20):
                assert handle.remote(base + i).result(timeout_s=TIMEOUT) == base + i + 1
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=worker, args=(k * 100,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert not errors
