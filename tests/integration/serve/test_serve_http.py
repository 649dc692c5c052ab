"""HTTP through Serve's ingress (uvicorn in the proxy actor) to class and function deployments:
Starlette requests in ``__call__``, return-value conversion, route prefixes, errors, FastAPI."""

from __future__ import annotations

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

from serve_testutil import HOST, free_port, http  # noqa: E402

from swarm import serve  # noqa: E402

NO_CPU = {"num_cpus": 0}


@serve.deployment(num_replicas=2, ray_actor_options=NO_CPU)
class Greeter:
    def __init__(self, greeting: str) -> None:
        self.greeting = greeting

    async def __call__(self, request):
        if request.method == "POST":
            payload = await request.json()
            return {"greeting": self.greeting, "echo": payload, "path": request.url.path}
        return f"{self.greeting}, {request.query_params.get('name', 'world')}!"


@serve.deployment(ray_actor_options=NO_CPU)
def path_of(request):
    # a sync function: runs on the replica's thread pool, gets a Starlette Request too
    return {"path": request.url.path, "root_path": request.scope["root_path"], "method": request.method}


@serve.deployment(ray_actor_options=NO_CPU)
class Failing:
    def __call__(self, request):
        raise ValueError("the model rejected the input")


@serve.deployment(ray_actor_options=NO_CPU)
class Sleepy:
    async def __call__(self, request):
        import asyncio
        await asyncio.sleep(float(request.query_params["s"]))
        return "awake"


@serve.deployment(ray_actor_options=NO_CPU)
class Teapot:
    async def __call__(self, request):
        from starlette.responses import PlainTextResponse
        return PlainTextResponse("short and stout", status_code=418, headers={"x-kind": "teapot"})


def test_class_deployment_over_http(serve_url):
    serve.run(Greeter.bind("Hello"), name="greeter", route_prefix="/greet")
    r = http(f"{serve_url}/greet?name=swarm")
    assert r.status_code == 200
    assert r.text == "Hello, swarm!"
    assert r.headers["content-type"].startswith("text/plain")
    assert r.headers.get("x-request-id")
    r = http(f"{serve_url}/greet/sub", method="POST", json_body={"x": [1, 2]})
    assert r.status_code == 200
    assert r.json() == {"greeting": "Hello", "echo": {"x": [1, 2]}, "path": "/greet/sub"}


def test_function_deployment_over_http(serve_url):
    serve.run(path_of.bind(), name="fn", route_prefix="/fn")
    r = http(f"{serve_url}/fn/a/b")
    assert r.status_code == 200
    assert r.json() == {"path": "/fn/a/b", "root_path": "/fn", "method": "GET"}
    assert r.headers["content-type"] == "application/json"


def test_routes_404_and_builtin_endpoints(serve_url):
    serve.run(path_of.bind(), name="a", route_prefix="/a")
    serve.run(Greeter.bind("Hey"), name="root", route_prefix="/")
    assert http(f"{serve_url}/a/x").json()["path"] == "/a/x"   # longest prefix wins
    assert http(f"{serve_url}/ab").text == "Hey, world!"        # "/a" is not a prefix of "/ab"
    assert http(f"{serve_url}/-/healthz").text == "success"
    assert http(f"{serve_url}/-/routes").json() == {"/a": "a", "/": "root"}
    serve.delete("root")
    r = http(f"{serve_url}/elsewhere")
    assert r.status_code == 404
    assert "not found" in r.text and "/a" in r.text


def test_user_error_is_a_500_with_the_message(serve_url):
    serve.run(Failing.bind(), name="failing", route_prefix="/fail")
    r = http(f"{serve_url}/fail")
    assert r.status_code == 500
    assert "the model rejected the input" in r.text
    assert "Failing" in r.text


def test_starlette_response_passes_through(serve_url):
    serve.run(Teapot.bind(), name="teapot", route_prefix="/tea")
    r = http(f"{serve_url}/tea")
    assert r.status_code == 418
    assert r.text == "short and stout"
    assert r.headers["x-kind"] == "teapot"


def test_app_without_route_prefix_is_not_served_over_http(serve_url):
    handle = serve.run(Greeter.bind("Hi"), name="private", route_prefix=None)
    assert http(f"{serve_url}/").status_code == 404
    assert handle.options(method_name="__call__") is not None


def test_fastapi_ingress(serve_url):
    fastapi = pytest.importorskip("fastapi")
    app = fastapi.FastAPI()

    @serve.deployment(ray_actor_options=NO_CPU)
    @serve.ingress(app)
    class Counter:
        def __init__(self, start: int) -> None:
            self.count = start

        @app.get("/value")
        def value(self):
            return {"count": self.count}

        @app.post("/add/{n}")
        async def add(self, n: int):
            self.count += n
            return {"count": self.count}

    @app.get("/plain/{x}")
    def plain(x: int):
        return {"x": x}

    serve.run(Counter.bind(10), name="counter", route_prefix="/counter")
    assert http(f"{serve_url}/counter/value").json() == {"count": 10}
    assert http(f"{serve_url}/counter/add/5", method="POST").json() == {"count": 15}
    assert http(f"{serve_url}/counter/value").json() == {"count": 15}
    assert http(f"{serve_url}/counter/plain/7").json() == {"x": 7}
    assert http(f"{serve_url}/counter/add/notanint", method="POST").status_code == 422
    assert http(f"{serve_url}/counter/missing").status_code == 404


def test_request_timeout_gives_408(cluster):
    port = free_port()
    serve.start(http_options={"host": HOST, "port": port, "request_timeout_s": 0.5})
    try:
        serve.run(Sleepy.bind(), name="sleepy", route_prefix="/")
        assert http(f"http://{HOST}:{port}/?s=0").text == "awake"
        r = http(f"http://{HOST}:{port}/?s=2")
        assert r.status_code == 408
        assert "timed out after 0.5 s" in r.text
    finally:
        serve.shutdown()
