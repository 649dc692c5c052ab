"""Where the control store's persistent tables live: nowhere (memory) or a Redis server.

Writes are buffered (``put``/``delete``) and sent together by ``flush`` — one pipelined round trip per
node-manager loop turn, so a burst of actor registrations costs one Redis call, not one each."""

from __future__ import annotations

import hashlib
import logging
import time

import msgpack

from swarm.exceptions import SwarmError

log = logging.getLogger(__name__)

TABLES = ("kv", "actors", "nodes", "meta")
RETRY_S = 5.0


class MemoryStorage:
    """The default: nothing survives the head."""

    persistent = False
    url = "memory"

    def load(self) -> dict[str, dict[bytes, object]]:
        return {t: {} for t in TABLES}

    def put(self, table: str, key: bytes, value: object) -> None:
        pass

    def delete(self, table: str, key: bytes) -> None:
        pass

    def flush(self) -> bool:
        return True

    def check_token(self, token: bytes) -> None:
        pass

    def close(self) -> None:
        pass


class RedisStorage:
    """Tables as Redis hashes ``<prefix>:<table>`` (field = key, value = msgpack)."""

    persistent = True

    def __init__(self, url: str, prefix: str = "swarm", timeout_s: float = 5.0) -> None:
        try:
            import redis
        except ImportError:
            raise SwarmError("--storage redis://... needs the Redis client: "
                             "pip install 'swarm[redis]'") from None
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise SwarmError(f"unsupported storage {url!r}: use redis://HOST:PORT/DB (or leave it out "
                             f"to keep the control store in memory)")
        self.url = url
        self.prefix = prefix
        self._pending: dict[tuple[str, bytes], bytes | None] = {}
        self._retry_at = 0.0   # after a failed write: the node manager's loop must not stall on Redis
        try:
            self.client = redis.Redis.from_url(url, socket_timeout=timeout_s,
                                               socket_connect_timeout=timeout_s)
            self.client.ping()
        except Exception as e:
            raise SwarmError(f"cannot reach the Redis server at {url}: {e}; start it (e.g. `redis-server "
                             f"--port 6379`) or fix the --storage address") from None

    def _key(self, table: str) -> str:
        return f"{self.prefix}:{table}"

    def load(self) -> dict[str, dict[bytes, object]]:
        out: dict[str, dict[bytes, object]] = {}
        for t in TABLES:
            raw: dict = self.client.hgetall(self._key(t))  # type: ignore[assignment]
            out[t] = {k: msgpack.unpackb(v, raw=False, strict_map_key=False) for k, v in raw.items()}
        return out

    def put(self, table: str, key: bytes, value: object) -> None:
        self._pending[(table, key)] = msgpack.packb(value, use_bin_type=True)

    def delete(self, table: str, key: bytes) -> None:
        self._pending[(table, key)] = None

    def flush(self) -> bool:
        """Send what changed; False (and keep it for the next try) when Redis does not answer."""
        if not self._pending:
            return True
        if time.monotonic() < self._retry_at:
            return False
        pending, self._pending = self._pending, {}
        try:
            pipe = self.client.pipeline(transaction=True)
            for (table, key), value in pending.items():
                if value is None:
                    pipe.hdel(self._key(table), key)
                else:
                    pipe.hset(self._key(table), key, value)
            pipe.execute()
            return True
        except Exception as e:
            log.error("could not write the control store to %s (retrying in %.0f s): %s", self.url,
                      RETRY_S, e)
            self._retry_at = time.monotonic() + RETRY_S
            for k, v in pending.items():
                self._pending.setdefault(k, v)
            return False

    def check_token(self, token: bytes) -> None:
        """A storage holds one cluster: a head started with another token must not take it over."""
        mark = hashlib.sha256(b"swarm-cluster-token:" + token).hexdigest()
        known = self.client.hget(self._key("meta"), b"token")
        if known is None:
            self.client.hset(self._key("meta"), b"token", msgpack.packb(mark))
        elif msgpack.unpackb(known) != mark:
            raise SwarmError(f"the control store at {self.url} belongs to a cluster with another token; "
                             f"start the head with that cluster's token (SWARM_TOKEN or --token-file), or "
                             f"use another Redis database")

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:
            pass


def open_storage(url: str | None) -> MemoryStorage | RedisStorage:
    if not url or url == "memory":
        return MemoryStorage()
    return RedisStorage(url)
