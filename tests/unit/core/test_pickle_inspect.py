"""Unit tests for swarm.core.pickle_inspect."""

from __future__ import annotations

import functools
import socket
import threading
from pathlib import Path

import cloudpickle
import pytest

from swarm.core.pickle_inspect import describe_unpicklable, find_unpicklable


class Writer:
    def __init__(self) -> None:
        self.name = "w"
        self._lock = threading.RLock()

    def flush(self) -> None:
        pass


class Service:
    def __init__(self) -> None:
        self.config = {"retries": 3}
        self.writer = Writer()


class Slotted:
    __slots__ = ("ok", "__guard")

    def __init__(self) -> None:
        self.ok = 1
        self.__guard = threading.Lock()


class Node:
    def __init__(self) -> None:
        self.next: Node = self
        self.peers = [self]


class OddError(BaseException):
    pass


class HostileGetattr:
    """Every missing attribute lookup raises a non-Exception BaseException."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def __getattr__(self, name: str) -> object:
        raise OddError(name)


class HostileGetattribute:
    """Every attribute lookup at all raises."""

    def __getattribute__(self, name: str) -> object:
        raise RuntimeError(f"no {name} for you")


class BadReduce:
    def __reduce__(self) -> str | tuple[object, ...]:
        raise OddError("reduce exploded")


def test_nested_rlock_two_levels_deep() -> None:
    assert find_unpicklable((Service(),), "args") == ("args[0].writer._lock", "_thread.RLock")


def test_dict_with_open_file(tmp_path: Path) -> None:
    with open(tmp_path / "log.txt", "w") as fh:
        assert find_unpicklable({"level": 1, "log": fh}) == ("value['log']", "_io.TextIOWrapper")


def test_lambda_closing_over_lock_reports_closure_name() -> None:
    lock = threading.Lock()
    fn = lambda: lock.locked()  # noqa: E731
    assert find_unpicklable(fn, "func") == ("func.lock", "_thread.lock")


def test_list_with_one_socket() -> None:
    with socket.socket() as sock:
        assert find_unpicklable([1, "two", 3.0, sock, None]) == ("value[3]", "socket.socket")


def test_picklable_returns_none() -> None:
    assert find_unpicklable({"a": [1, 2, (3, 4)], "s": {"x"}, "f": len, "svc": Service}) is None
    assert find_unpicklable(functools.partial(max, 1, key=abs)) is None


def test_self_referencing_structures_terminate() -> None:
    loop: list[object] = []
    loop.append(loop)
    assert find_unpicklable(loop) is None

    d: dict[str, object] = {}
    d["self"] = d
    d["lock"] = threading.Lock()
    assert find_unpicklable(d) == ("value['lock']", "_thread.lock")

    node = Node()
    node.guard = threading.Lock()  # type: ignore[attr-defined]
    assert find_unpicklable(node) == ("value.guard", "_thread.lock")


def test_slots_are_walked_with_declared_names() -> None:
    assert find_unpicklable(Slotted()) == ("value.__guard", "_thread.lock")


def test_partial_args_and_bound_methods() -> None:
    lock = threading.RLock()
    assert find_unpicklable(functools.partial(print, 1, lock)) == ("value.args[1]", "_thread.RLock")
    assert find_unpicklable(functools.partial(print, sep=lock)) == ("value.keywords['sep']", "_thread.RLock")
    writer = Service().writer
    assert find_unpicklable(writer.flush) == ("value.__self__._lock", "_thread.RLock")
    assert find_unpicklable(writer.__repr__) == ("value.__self__._lock", "_thread.RLock")
    assert find_unpicklable([writer].append) == ("value.__self__[0]._lock", "_thread.RLock")


def test_globals_captured_by_value() -> None:
    namespace: dict[str, object] = {"LOCK": threading.Lock()}  # no __name__: pickled by value
    exec("def use():\n    return LOCK.locked()\n", namespace)
    assert find_unpicklable(namespace["use"]) == ("value.__globals__['LOCK']", "_thread.lock")


def test_hostile_getattr_does_not_crash() -> None:
    assert find_unpicklable(HostileGetattr()) == ("value.lock", "_thread.lock")


def test_hostile_getattribute_falls_back_to_root() -> None:
    obj = HostileGetattribute()
    assert find_unpicklable([obj], "args") == ("args[0]", f"{__name__}.HostileGetattribute")


def test_object_whose_reduce_raises_is_the_culprit() -> None:
    assert find_unpicklable({"x": BadReduce()}) == ("value['x']", f"{__name__}.BadReduce")


def test_depth_and_node_limits() -> None:
    deep: object = threading.Lock()
    for _ in range(20):
        deep = [deep]
    path, type_name = find_unpicklable(deep, max_depth=3)  # type: ignore[misc]
    assert path == "value[0][0][0]" and type_name == "list"
    wide = [*range(50), threading.Lock()]
    assert find_unpicklable(wide, max_nodes=10) == ("value", "list")


def test_describe_unpicklable_message() -> None:
    args = (Service(),)
    with pytest.raises(Exception) as info:
        cloudpickle.dumps(args, protocol=5)
    msg = describe_unpicklable(args, "args", info.value)
    assert "args[0].writer._lock: _thread.RLock" in msg
    assert "cannot pickle '_thread.RLock' object" in msg
    assert "inside the task" in msg
    assert "__reduce__" in msg and "__getstate__" in msg and "module-level" in msg


def test_describe_when_value_pickles() -> None:
    msg = describe_unpicklable([1, 2], "result", TypeError("flaky"))
    assert "could not be narrowed down" in msg and "flaky" in msg and "inside the task" in msg
