"""The cluster's small key-value store, kept by the control store on the head (as Ray's
``ray.experimental.internal_kv``). Reachable from the driver and from inside tasks and actors on any
node; each call is one request to the head (relayed by the local node manager).

Keys are ``str`` or ``bytes``, values ``bytes`` (``str`` is encoded as UTF-8). Namespaces separate
users of the store; those starting with ``_`` are volatile (kept in memory only), the others are written
to the head's storage — with ``swarm start --head --storage redis://...`` they survive a head restart.
While the head is away a call waits for it (up to the request deadline) rather than failing at once."""

from __future__ import annotations

from typing import Any

DEFAULT_NAMESPACE = "default"


def _b(value: Any, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"internal_kv {what} must be bytes or str, not {type(value).__name__}")


def _ns(namespace: str | bytes | None) -> str:
    if namespace is None:
        return DEFAULT_NAMESPACE
    return namespace.decode() if isinstance(namespace, bytes) else str(namespace)


def _call(op: str, args: list) -> Any:
    from swarm import api
    w = api._require_worker()
    if w.mode == "local":
        return _local_call(op, args)
    return w.control_call(op, args)


_local_store: Any = None


def _local_call(op: str, args: list) -> Any:
    """local_mode: a process-local store with the same behaviour."""
    global _local_store
    if _local_store is None:
        from swarm.control.store import ControlStore
        _local_store = ControlStore()
    return _local_store.handle(op, args)


def kv_put(key: str | bytes, value: str | bytes, *, namespace: str | None = None,
           overwrite: bool = True) -> bool:
    """Store ``value`` under ``key``; returns True when the key already existed (then, with
    ``overwrite=False``, the old value is kept)."""
    return bool(_call("kv_put", [_ns(namespace), _b(key, "keys"), _b(value, "values"), bool(overwrite)]))


def kv_get(key: str | bytes, *, namespace: str | None = None) -> bytes | None:
    return _call("kv_get", [_ns(namespace), _b(key, "keys")])


def kv_multi_get(keys: list, *, namespace: str | None = None) -> dict[bytes, bytes]:
    """The values of those keys that exist, in one request."""
    return _call("kv_multi_get", [_ns(namespace), [_b(k, "keys") for k in keys]])


def kv_del(key: str | bytes, *, namespace: str | None = None, del_by_prefix: bool = False) -> int:
    """Delete ``key`` (or, with ``del_by_prefix``, every key starting with it); returns how many went."""
    return int(_call("kv_del", [_ns(namespace), _b(key, "keys"), bool(del_by_prefix)]))


def kv_list(prefix: str | bytes = b"", *, namespace: str | None = None) -> list[bytes]:
    """The keys starting with ``prefix``."""
    return list(_call("kv_list", [_ns(namespace), _b(prefix, "prefixes")]))


def kv_exists(key: str | bytes, *, namespace: str | None = None) -> bool:
    return bool(_call("kv_exists", [_ns(namespace), _b(key, "keys")]))


# Ray's names
def _internal_kv_put(key: Any, value: Any, overwrite: bool = True, *, namespace: Any = None) -> bool:
    return kv_put(key, value, namespace=namespace, overwrite=overwrite)


def _internal_kv_get(key: Any, *, namespace: Any = None) -> bytes | None:
    return kv_get(key, namespace=namespace)


def _internal_kv_del(key: Any, *, del_by_prefix: bool = False, namespace: Any = None) -> int:
    return kv_del(key, namespace=namespace, del_by_prefix=del_by_prefix)


def _internal_kv_list(prefix: Any, *, namespace: Any = None) -> list[bytes]:
    return kv_list(prefix, namespace=namespace)


def _internal_kv_exists(key: Any, *, namespace: Any = None) -> bool:
    return kv_exists(key, namespace=namespace)


def _internal_kv_initialized() -> bool:
    from swarm import api
    return api.is_initialized()
