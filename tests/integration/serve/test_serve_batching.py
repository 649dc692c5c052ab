"""``@serve.batch``: concurrent requests (over HTTP and through handles) reach the handler as lists;
the batching queue itself is also tested on a plain event loop, without a cluster."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

from serve_testutil import http  # noqa: E402

from swarm import serve  # noqa: E402

NO_CPU = {"num_cpus": 0}
TIMEOUT = 30


@serve.deployment(max_ongoing_requests=32, ray_actor_options=NO_CPU)
class BatchedSquare:
    def __init__(self) -> None:
        self.batch_sizes: list[int] = []

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.25)
    async def square(self, xs: list) -> list:
        self.batch_sizes.append(len(xs))
        return [x * x for x in xs]

    async def __call__(self, request) -> dict:
        x = int(request.query_params["x"])
        return {"x": x, "square": await self.square(x)}

    def sizes(self) -> list:
        return self.batch_sizes


def test_batching_groups_concurrent_http_requests(serve_url):
    serve.run(BatchedSquare.bind(), name="batched", route_prefix="/square")
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda x: http(f"{serve_url}/square?x={x}"), range(16)))
    assert all(r.status_code == 200 for r in results)
    assert [r.json() for r in results] == [{"x": x, "square": x * x} for x in range(16)]
    sizes = serve.get_app_handle("batched").sizes.remote().result(timeout_s=TIMEOUT)
    assert sum(sizes) == 16
    assert max(sizes) > 1
    assert max(sizes) <= 8


def test_batching_through_handles(serve_handles):
    handle = serve.run(BatchedSquare.bind(), name="batched", route_prefix=None)
    responses = [handle.square.remote(x) for x in range(20)]
    assert [r.result(timeout_s=TIMEOUT) for r in responses] == [x * x for x in range(20)]
    sizes = handle.sizes.remote().result(timeout_s=TIMEOUT)
    assert sum(sizes) == 20 and max(sizes) == 8


# -- the queue alone -------------------------------------------------------------------------------

def test_batch_respects_size_and_timeout():
    seen: list[list] = []

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.05)
    async def handler(items: list) -> list:
        seen.append(list(items))
        return [i + 1 for i in items]

    async def main() -> list:
        return await asyncio.gather(*[handler(i) for i in range(10)])
    assert asyncio.run(main()) == [i + 1 for i in range(10)]
    assert [len(b) for b in seen] == [4, 4, 2]
    assert [i for b in seen for i in b] == list(range(10))


def test_batch_errors_reach_every_caller():
    @serve.batch(max_batch_size=3, batch_wait_timeout_s=0.01)
    async def wrong_length(items: list) -> list:
        return items[:-1]

    @serve.batch(max_batch_size=3, batch_wait_timeout_s=0.01)
    async def raises(items: list) -> list:
        raise ValueError("bad batch")

    async def main() -> tuple:
        a = await asyncio.gather(*[wrong_length(i) for i in range(3)], return_exceptions=True)
        b = await asyncio.gather(*[raises(i) for i in range(3)], return_exceptions=True)
        return a, b
    a, b = asyncio.run(main())
    assert all(isinstance(e, TypeError) and "must return a list of 3" in str(e) for e in a)
    assert all(isinstance(e, ValueError) for e in b)


def test_batch_rejects_sync_functions_and_bad_options():
    with pytest.raises(TypeError, match="async"):
        @serve.batch
        def not_async(items):
            return items
    with pytest.raises(ValueError):
        serve.batch(max_batch_size=0)
