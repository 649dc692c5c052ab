"""Namespaced keys → bytes: the cluster's small KV (``swarm.experimental.internal_kv``)."""

from __future__ import annotations

from collections.abc import Callable

SEP = b"\x00"


def is_volatile(namespace: str) -> bool:
    """``_``-namespaces (metrics snapshots, debugger sessions) are rewritten often and worthless after a
    restart: they stay in memory only."""
    return namespace.startswith("_")


class KVTable:
    def __init__(self, on_change: Callable[[str, bytes, bytes | None], None] | None = None) -> None:
        self.data: dict[str, dict[bytes, bytes]] = {}
        self._on_change = on_change or (lambda ns, key, value: None)

    def load(self, rows: dict[bytes, object]) -> None:
        for stored_key, value in rows.items():
            ns, _, key = stored_key.partition(SEP)
            self.data.setdefault(ns.decode(), {})[key] = value  # type: ignore[assignment]

    @staticmethod
    def storage_key(namespace: str, key: bytes) -> bytes:
        return namespace.encode() + SEP + key

    def put(self, namespace: str, key: bytes, value: bytes, overwrite: bool = True) -> bool:
        table = self.data.setdefault(namespace, {})
        existed = key in table
        if existed and not overwrite:
            return True
        table[key] = value
        self._on_change(namespace, key, value)
        return existed

    def get(self, namespace: str, key: bytes) -> bytes | None:
        return self.data.get(namespace, {}).get(key)

    def multi_get(self, namespace: str, keys: list[bytes]) -> dict[bytes, bytes]:
        table = self.data.get(namespace, {})
        return {k: table[k] for k in keys if k in table}

    def delete(self, namespace: str, key: bytes, by_prefix: bool = False) -> int:
        table = self.data.get(namespace, {})
        doomed = [k for k in table if k.startswith(key)] if by_prefix else ([key] if key in table else [])
        for k in doomed:
            del table[k]
            self._on_change(namespace, k, None)
        return len(doomed)

    def keys(self, namespace: str, prefix: bytes = b"") -> list[bytes]:
        return [k for k in self.data.get(namespace, {}) if k.startswith(prefix)]

    def exists(self, namespace: str, key: bytes) -> bool:
        return key in self.data.get(namespace, {})
