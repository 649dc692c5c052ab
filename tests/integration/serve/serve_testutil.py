"""Helpers of the swarm.serve tests: free ports, an HTTP client on the standard library (so the tests
need no HTTP client package), polling."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from typing import Any, Callable

HOST = "127.0.0.1"
HTTP_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class HTTPResponse:
    def __init__(self, status: int, body: bytes, headers: dict) -> None:
        self.status_code = status
        self.content = body
        self.headers = headers

    @property
    def text(self) -> str:
        return self.content.decode()

    def json(self) -> Any:
        return json.loads(self.content)


def http(url: str, method: str = "GET", body: bytes | None = None, json_body: Any = None,
         timeout: float = HTTP_TIMEOUT_S) -> HTTPResponse:
    """One HTTP request; 4xx and 5xx answers are returned, not raised."""
    headers = {}
    if json_body is not None:
        body = json.dumps(json_body).encode()
        headers["content-type"] = "application/json"
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return HTTPResponse(r.status, r.read(), {k.lower(): v for k, v in r.headers.items()})
    except urllib.error.HTTPError as e:
        return HTTPResponse(e.code, e.read(), {k.lower(): v for k, v in e.headers.items()})


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
