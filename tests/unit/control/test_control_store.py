"""The control store without processes: KV semantics, the task history ring and its queries, actor
records written behind to storage, and the Redis backend against a real redis-server."""

from __future__ import annotations

import socket

import pytest

from swarm.control.storage import MemoryStorage, RedisStorage, open_storage
from swarm.control.store import ControlStore
from swarm.control.task_log import TaskLog
from swarm.exceptions import SwarmError


def row(i: int, state: str = "FINISHED", name: str = "f") -> list:
    return [i.to_bytes(4, "big"), name, state, 1.0, 0.01, 100, "n1", "w1", None,
            "boom" if state == "FAILED" else None, b"owner"]


def test_kv_put_get_overwrite_prefix_delete_and_namespaces():
    s = ControlStore()
    assert s.handle("kv_put", ["a", b"k1", b"v1", True]) is False
    assert s.handle("kv_put", ["a", b"k1", b"v2", False]) is True        # existed: kept
    assert s.handle("kv_get", ["a", b"k1"]) == b"v1"
    assert s.handle("kv_get", ["b", b"k1"]) is None                      # namespaces are separate
    s.handle("kv_put", ["a", b"k2", b"x", True])
    s.handle("kv_put", ["a", b"other", b"y", True])
    assert sorted(s.handle("kv_list", ["a", b"k"])) == [b"k1", b"k2"]
    assert s.handle("kv_multi_get", ["a", [b"k2", b"nope"]]) == {b"k2": b"x"}
    assert s.handle("kv_del", ["a", b"k", True]) == 2
    assert s.handle("kv_exists", ["a", b"other"]) is True
    with pytest.raises(ValueError, match="unknown control-store request"):
        s.handle("kv_frobnicate", [])


def test_task_ring_is_bounded_and_indexed():
    log = TaskLog(max_events=100)
    log.add_finished([row(i, "FAILED" if i % 10 == 0 else "FINISHED") for i in range(250)])
    assert len(log.ring) == 100 and len(log.by_id) == 100
    newest = log.list(None, 3)
    assert [r["task_id"] for r in newest] == [i.to_bytes(4, "big").hex() for i in (249, 248, 247)]
    failed = log.list([("state", "=", "FAILED")], 100)
    # only failures still in the ring, newest first, with their error
    assert [r["task_id"] for r in failed] == [i.to_bytes(4, "big").hex() for i in range(240, 149, -10)]
    assert failed[0]["error"] == "boom"
    assert log.get((5).to_bytes(4, "big").hex()) is None                 # pushed out
    assert log.get((201).to_bytes(4, "big").hex())["state"] == "FINISHED"
    assert log.summary() == {"f": {"FINISHED": 225, "FAILED": 25}}      # totals since start


def test_live_rows_come_first_and_go_with_their_owner():
    log = TaskLog(max_events=10)
    log.add_finished([row(1)])
    log.set_live(b"o1", [{"task_id": "aa", "name": "g", "state": "PENDING", "detail": "waiting for CPU"}],
                 [["g", "PENDING", 7]])
    rows = log.list(None, 10)
    assert rows[0]["detail"] == "waiting for CPU" and rows[1]["state"] == "FINISHED"
    assert log.list([("state", "=", "PENDING")], 10) == rows[:1]
    assert log.summary()["g"] == {"PENDING": 7}
    log.owner_gone(b"o1")
    assert log.list([("state", "=", "PENDING")], 10) == []


def test_actor_changes_are_written_behind_once_per_flush():
    class Recording(MemoryStorage):
        persistent = True

        def __init__(self) -> None:
            self.puts: list = []
            self.flushes = 0

        def put(self, table, key, value):
            self.puts.append((table, key, dict(value) if isinstance(value, dict) else value))

        def flush(self):
            self.flushes += 1
            return True

    storage = Recording()
    s = ControlStore(storage)
    s.actors[b"a1"] = {"state": "PENDING", "name": "x"}
    a = s.actors[b"a1"]
    a["state"] = "ALIVE"
    a.update(pid=42)
    s.handle("kv_put", ["_volatile", b"k", b"v", True])
    s.handle("kv_put", ["jobs", b"j1", b"{}", True])
    s.flush()
    actor_puts = [p for p in storage.puts if p[0] == "actors"]
    assert actor_puts == [("actors", b"a1", {"state": "ALIVE", "name": "x", "pid": 42})]
    assert [p[:2] for p in storage.puts if p[0] == "kv"] == [("kv", b"jobs\x00j1")]
    assert storage.flushes == 1


def test_unknown_storage_scheme_is_refused():
    with pytest.raises(SwarmError, match="unsupported storage"):
        open_storage("mysql://localhost/x")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def redis_url(start_redis):
    port = free_port()
    proc = start_redis(port)
    yield f"redis://127.0.0.1:{port}/3"
    proc.terminate()
    proc.wait(10)


def test_redis_storage_round_trip(redis_url):
    first = ControlStore(RedisStorage(redis_url))
    first.storage.check_token(b"secret")
    first.handle("kv_put", ["app", b"model", b"\x00\x01binary", True])
    first.handle("kv_put", ["_tmp", b"gone", b"x", True])
    first.actors[b"\x01actor"] = {"state": "ALIVE", "name": "svc", "namespace": "default", "pid": 7}
    first.node_changed({"node_id": "n1", "address": "tcp:1.2.3.4:5", "alive": True, "is_head": False})
    first.close()

    second = ControlStore(RedisStorage(redis_url))
    second.storage.check_token(b"secret")
    nodes, names = second.load()
    assert second.handle("kv_get", ["app", b"model"]) == b"\x00\x01binary"
    assert second.handle("kv_get", ["_tmp", b"gone"]) is None
    assert second.actors[b"\x01actor"]["pid"] == 7
    assert names == {("default", "svc"): b"\x01actor"}
    assert nodes == [{"node_id": "n1", "address": "tcp:1.2.3.4:5", "alive": True, "is_head": False}]
    second.handle("kv_del", ["app", b"model", False])
    second.close()
    third = ControlStore(RedisStorage(redis_url))
    third.load()
    assert third.handle("kv_get", ["app", b"model"]) is None
    with pytest.raises(SwarmError, match="another token"):
        third.storage.check_token(b"not-the-secret")
    third.close()


def test_unreachable_redis_is_a_clear_error():
    port = free_port()
    with pytest.raises(SwarmError, match=f"cannot reach the Redis server at redis://127.0.0.1:{port}/0"):
        RedisStorage(f"redis://127.0.0.1:{port}/0", timeout_s=1.0)


def test_writes_survive_a_redis_outage(monkeypatch, start_redis):
    import swarm.control.storage as storage_mod
    monkeypatch.setattr(storage_mod, "RETRY_S", 0.0)
    port = free_port()
    server = start_redis(port)
    store = ControlStore(RedisStorage(f"redis://127.0.0.1:{port}/0", timeout_s=1.0))
    server.terminate()
    server.wait(10)
    store.handle("kv_put", ["app", b"k", b"v", True])
    store.flush()                                   # Redis is down: kept, not lost
    assert store.storage._pending                   # type: ignore[union-attr]
    server = start_redis(port)
    try:
        store.flush()
        assert not store.storage._pending           # type: ignore[union-attr]
        again = ControlStore(RedisStorage(f"redis://127.0.0.1:{port}/0"))
        again.load()
        assert again.handle("kv_get", ["app", b"k"]) == b"v"
    finally:
        server.terminate()
        server.wait(10)


def test_pages_skip_their_offset():
    log = TaskLog(max_events=100)
    log.add_finished([row(i, "FAILED" if i % 2 else "FINISHED") for i in range(50)])
    ids = [r["task_id"] for r in log.list(None, 100)]
    assert [r["task_id"] for r in log.list(None, 10, offset=20)] == ids[20:30]
    failed = [r["task_id"] for r in log.list([("state", "=", "FAILED")], 100)]
    assert [r["task_id"] for r in log.list([("state", "=", "FAILED")], 5, offset=5)] == failed[5:10]
    assert [r["task_id"] for r in log.list([("name", "!=", "g")], 5, offset=45)] == ids[45:50]
