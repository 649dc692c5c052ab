"""Who may use the dashboard: the cluster token, as a bearer header or a login cookie.

    request ──▶ TokenAuth (ASGI middleware)
                 ├─ /login (GET or POST) and GET /static/*: always let through (the login form and its CSS;
                 │  the static files are the same code for everyone and hold no cluster data)
                 ├─ GET/HEAD and the dashboard listens on loopback only: let through
                 ├─ "Authorization: Bearer <cluster token>": let through
                 ├─ cookie swarm_dashboard=<session value>: let through
                 └─ otherwise: 401 JSON for the API and /metrics, a redirect to /login for pages

The cookie never holds the cluster token itself (the token lets its holder run code on the cluster):
it holds an HMAC of a fixed label under the token, which proves the holder knew the token and is
worthless anywhere else. Every comparison is ``hmac.compare_digest``. Requests that change anything
(any method but GET/HEAD, e.g. submitting a job) need the token even on loopback: any local user, or
a web page the user visits, can reach a loopback port.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from typing import Any
from urllib.parse import quote

COOKIE_NAME = "swarm_dashboard"
READ_METHODS = ("GET", "HEAD")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def session_value(token: str) -> str:
    return hmac.new(token.encode(), b"swarm-dashboard-session-v1", hashlib.sha256).hexdigest()


class TokenAuth:
    """ASGI middleware enforcing the rules in the module docstring."""

    def __init__(self, app: Any, *, token: str | None, open_reads: bool) -> None:
        self.app = app
        self.token = token
        self.open_reads = open_reads
        self._session = session_value(token) if token else None

    def check_token(self, candidate: str) -> bool:
        return self.token is not None and hmac.compare_digest(candidate.encode(), self.token.encode())

    def _authorized(self, headers: dict[bytes, bytes]) -> bool:
        auth = headers.get(b"authorization", b"").decode("latin-1")
        if auth[:7].lower() == "bearer " and self.check_token(auth[7:].strip()):
            return True
        for part in headers.get(b"cookie", b"").decode("latin-1").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE_NAME and self._session is not None and \
                    hmac.compare_digest(value.encode(), self._session.encode()):
                return True
        return False

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] == "/login" or \
                (scope["path"].startswith("/static/") and scope["method"] in READ_METHODS):
            await self.app(scope, receive, send)
            return
        if scope["method"] in READ_METHODS and self.open_reads:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if self._authorized(headers):
            await self.app(scope, receive, send)
            return
        await self._deny(scope, headers, send)

    async def _deny(self, scope: dict, headers: dict[bytes, bytes], send: Any) -> None:
        wants_page = scope["method"] in READ_METHODS and b"text/html" in headers.get(b"accept", b"") \
            and not scope["path"].startswith("/api/")
        if wants_page:
            query = scope.get("query_string") or b""
            target = scope["path"] + ("?" + query.decode("latin-1") if query else "")
            await send({"type": "http.response.start", "status": 303,
                        "headers": [(b"location", f"/login?next={quote(target, safe='')}".encode()),
                                    (b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        if self.token is None:
            why = "this dashboard was started without a cluster token, so it accepts only read requests"
        elif scope["method"] not in READ_METHODS:
            why = "requests that change anything need the cluster token"
        else:
            why = "this dashboard listens beyond loopback, so every request needs the cluster token"
        body = json.dumps({"error": f"unauthorized: {why}: send 'Authorization: Bearer <token>' (the token "
                                    f"is in the file `swarm start --head` printed) or log in at /login"})
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"),
                                (b"www-authenticate", b'Bearer realm="swarm dashboard"'),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body.encode()})
