"""The head's control store: KV, actor directory, node records and task history behind one request
interface (``handle``), with persistent tables written behind to the storage. Pure state: the node
manager feeds it messages and sends what it returns."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from swarm.control.kv import KVTable, is_volatile
from swarm.control.storage import MemoryStorage, RedisStorage
from swarm.control.task_log import TaskLog


class Record(dict):
    """An actor's directory entry: every change marks it for the next storage flush."""

    __slots__ = ("_key", "_changed")

    def __init__(self, key: bytes, data: dict, changed: Callable[[bytes], None]) -> None:
        super().__init__(data)
        self._key = key
        self._changed = changed

    def __setitem__(self, k: str, v: Any) -> None:
        super().__setitem__(k, v)
        self._changed(self._key)

    def update(self, *args: Any, **kw: Any) -> None:  # type: ignore[override]
        super().update(*args, **kw)
        self._changed(self._key)

    def setdefault(self, k: str, default: Any = None) -> Any:  # type: ignore[override]
        if k not in self:
            self[k] = default
        return self[k]


class ActorTable(dict):
    """actor id → Record; inserting a plain dict wraps it."""

    def __init__(self, changed: Callable[[bytes], None]) -> None:
        super().__init__()
        self._changed = changed

    def __setitem__(self, key: bytes, value: dict) -> None:
        super().__setitem__(key, value if isinstance(value, Record) else Record(key, value, self._changed))
        self._changed(key)

    def setdefault(self, key: bytes, default: Any = None) -> Any:  # type: ignore[override]
        if key not in self:
            self[key] = default if default is not None else {}
        return self[key]


class ControlStore:
    def __init__(self, storage: MemoryStorage | RedisStorage | None = None, task_events_max: int = 100_000):
        self.storage = storage or MemoryStorage()
        persistent = self.storage.persistent
        self._dirty_actors: set[bytes] = set()
        self.kv = KVTable(self._kv_changed if persistent else None)
        self.actors = ActorTable(self._dirty_actors.add if persistent else (lambda key: None))
        self.tasks = TaskLog(task_events_max)

    # -- persistence ---------------------------------------------------------------------------------
    def load(self) -> tuple[list[dict], dict[tuple[str, str], bytes]]:
        """Read the persistent tables back (a restarted head): returns the node records and the names of
        the actors that are not dead."""
        tables = self.storage.load()
        self.kv.load(tables["kv"])
        names: dict[tuple[str, str], bytes] = {}
        for actor_id, stored in tables["actors"].items():
            info: dict = stored  # type: ignore[assignment]
            dict.__setitem__(self.actors, actor_id, Record(actor_id, info, self.actors._changed))
            if info.get("name") and info.get("state") != "DEAD":
                names[(info["namespace"], info["name"])] = actor_id
        return list(tables["nodes"].values()), names  # type: ignore[arg-type]

    def _kv_changed(self, namespace: str, key: bytes, value: bytes | None) -> None:
        if is_volatile(namespace):
            return
        skey = KVTable.storage_key(namespace, key)
        if value is None:
            self.storage.delete("kv", skey)
        else:
            self.storage.put("kv", skey, value)

    def node_changed(self, record: dict) -> None:
        if self.storage.persistent:
            self.storage.put("nodes", record["node_id"].encode(), record)

    def flush(self) -> None:
        if not self.storage.persistent:
            return
        if self._dirty_actors:
            for actor_id in self._dirty_actors:
                info = self.actors.get(actor_id)
                if info is None:
                    self.storage.delete("actors", actor_id)
                else:
                    self.storage.put("actors", actor_id, dict(info))
            self._dirty_actors.clear()
        self.storage.flush()

    # -- requests ------------------------------------------------------------------------------------
    def handle(self, op: str, args: list) -> Any:
        """One CONTROL request → its reply value (raises ValueError for a malformed one)."""
        if op == "kv_put":
            ns, key, value, overwrite = args
            return self.kv.put(ns, key, value, overwrite)
        if op == "kv_get":
            return self.kv.get(args[0], args[1])
        if op == "kv_multi_get":
            return self.kv.multi_get(args[0], list(args[1]))
        if op == "kv_del":
            return self.kv.delete(args[0], args[1], bool(args[2]))
        if op == "kv_list":
            return self.kv.keys(args[0], args[1])
        if op == "kv_exists":
            return self.kv.exists(args[0], args[1])
        if op == "list_tasks":
            return self.tasks.list(args[0], int(args[1]), int(args[2]) if len(args) > 2 else 0)
        if op == "get_task":
            return self.tasks.get(args[0])
        if op == "summarize_tasks":
            return self.tasks.summary()
        if op == "list_actors":
            return [dict(a) for a in self.actors.values()]
        raise ValueError(f"unknown control-store request {op!r}")

    def task_events(self, owner: bytes, finished: list, live: dict | None) -> None:
        if finished:
            self.tasks.add_finished(finished)
        if live is not None:
            self.tasks.set_live(owner, live.get("rows") or [], live.get("counts"))

    def close(self) -> None:
        self.flush()
        self.storage.close()
