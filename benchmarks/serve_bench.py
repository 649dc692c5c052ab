"""swarm.serve vs plain uvicorn: requests/s and p50/p99 latency of one trivial handler over HTTP.

    python benchmarks/serve_bench.py [--requests 2000] [--concurrency 16] [--replicas 2]

The same handler (``handler`` below) is served twice: by a swarm.serve deployment with
``--replicas`` replicas behind Serve's proxy, and by plain uvicorn + Starlette in a child process.
The load is bounded: ``--requests`` requests from ``--concurrency`` asyncio workers (one keep-alive
connection each), loopback only, after a warm-up. Needs uvicorn and starlette.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time

HOST = "127.0.0.1"


async def handler(request) -> str:  # the handler both servers run
    return "ok"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
               request: bytes) -> tuple[int, bytes]:
    """One HTTP/1.1 keep-alive GET on an open connection (a minimal client: the load generator must cost
    far less CPU than the servers it measures, which httpx's async client does not on 2 cores)."""
    writer.write(request)
    status = int((await reader.readline()).split()[1])
    length, chunked = 0, False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if not chunked:
        return status, await reader.readexactly(length)
    body = b""
    while True:
        size = int((await reader.readline()).strip(), 16)
        chunk = await reader.readexactly(size + 2)
        if size == 0:
            return status, body
        body += chunk[:-2]


async def _load(port: int, requests: int, concurrency: int) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    errors = 0
    remaining = requests
    request = f"GET / HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()

    async def worker() -> None:
        nonlocal remaining, errors
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while remaining > 0:
                remaining -= 1
                t0 = time.perf_counter()
                status, body = await _get(reader, writer, request)
                latencies.append(time.perf_counter() - t0)
                if status != 200 or body != b"ok":
                    errors += 1
        finally:
            writer.close()
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start, latencies, errors


def measure(port: int, requests: int, concurrency: int) -> dict:
    asyncio.run(_load(port, min(200, requests), concurrency))  # warm-up: connections, caches, replicas
    elapsed, lat, errors = asyncio.run(_load(port, requests, concurrency))
    lat.sort()
    return {"rps": len(lat) / elapsed, "p50": statistics.median(lat) * 1e3,
            "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3, "errors": errors}


def wait_listening(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {HOST}:{port} after {timeout} s")


def bench_serve(args: argparse.Namespace) -> dict:
    import swarm
    from swarm import serve

    @serve.deployment(num_replicas=args.replicas, max_ongoing_requests=100, ray_actor_options={"num_cpus": 0})
    class Trivial:
        async def __call__(self, request):
            return await handler(request)

    swarm.init(num_cpus=2)
    port = free_port()
    try:
        serve.start(http_options={"host": HOST, "port": port})
        serve.run(Trivial.bind(), name="bench", route_prefix="/")
        return measure(port, args.requests, args.concurrency)
    finally:
        serve.shutdown()
        swarm.shutdown()


def serve_plain(port: int) -> None:
    """Child process: the same handler on plain uvicorn + Starlette."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def endpoint(request):
        return PlainTextResponse(await handler(request))
    uvicorn.run(Starlette(routes=[Route("/", endpoint)]), host=HOST, port=port, log_level="warning",
                access_log=False)


def bench_plain(args: argparse.Namespace) -> dict:
    port = free_port()
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve-plain", str(port)])
    try:
        wait_listening(port)
        return measure(port, args.requests, args.concurrency)
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--serve-plain", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_plain:
        serve_plain(args.serve_plain)
        return
    rows = [(f"swarm.serve ({args.replicas} replicas)", bench_serve(args)),
            ("plain uvicorn", bench_plain(args))]
    print(f"{args.requests} requests, {args.concurrency} concurrent, loopback, handler returns 'ok'")
    print(f"{'server':<26}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    for name, r in rows:
        print(f"{name:<26}{r['rps']:>10.0f}{r['p50']:>10.2f}{r['p99']:>10.2f}{r['errors']:>8}")


if __name__ == "__main__":
    main()
