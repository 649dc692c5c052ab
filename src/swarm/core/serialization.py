"""Turning values into bytes and back, in band (small values) or laid out in shared memory.

Pickle protocol 5 with out-of-band buffers: a numpy array (or anything exposing ``PickleBuffer``s)
serializes to a small in-band pickle plus raw buffers. In shared memory the layout is

    [header: magic, n_buffers, inband_len, buffer lengths...][inband pickle][buffer 0][buffer 1]...

each part 64-byte aligned, so a reader maps the region read-only and hands ``pickle.loads`` memoryviews
of it: ``get`` of a 1 GB array is a read-only view, not a copy.

ObjectRefs found inside a value while it is pickled are collected (``contained_refs``): the owner of
the outer value keeps them alive as long as the outer value lives.
"""

from __future__ import annotations

import pickle
import struct
import threading
import types
from typing import Any

import cloudpickle

from swarm.exceptions import SerializationError

_MAGIC = 0x53574D31  # "SWM1"
_HEAD = struct.Struct("<IIQ")
_LEN = struct.Struct("<Q")
ALIGN = 64

_SIMPLE = (type(None), bool, int, float, str, bytes)
_state = threading.local()


def _pad(n: int) -> int:
    return (n + ALIGN - 1) & ~(ALIGN - 1)


def record_contained_ref(ref: Any) -> None:
    """Called by ObjectRef.__reduce__: remember refs nested in the value being serialized."""
    refs = getattr(_state, "refs", None)
    if refs is not None:
        refs.append(ref)


class Serialized:
    __slots__ = ("inband", "buffers", "contained_refs", "total")

    def __init__(self, inband: bytes, buffers: list, contained_refs: list) -> None:
        self.inband = inband
        self.buffers = buffers
        self.contained_refs = contained_refs
        self.total = len(inband) + sum(b.raw().nbytes for b in buffers) if buffers else len(inband)

    def shm_size(self) -> int:
        n = _pad(_HEAD.size + _LEN.size * len(self.buffers)) + _pad(len(self.inband))
        for b in self.buffers:
            n += _pad(b.raw().nbytes)
        return n

    def write_to(self, mv: memoryview) -> None:
        """Lay the value out in ``mv`` (a writable view of at least ``shm_size()`` bytes)."""
        raws = [b.raw() for b in self.buffers]
        header = _HEAD.pack(_MAGIC, len(raws), len(self.inband)) + b"".join(
            _LEN.pack(r.nbytes) for r in raws)
        mv[:len(header)] = header
        pos = _pad(len(header))
        mv[pos:pos + len(self.inband)] = self.inband
        pos += _pad(len(self.inband))
        for r in raws:
            n = r.nbytes
            mv[pos:pos + n] = r.cast("B") if r.format != "B" or r.ndim != 1 else r
            pos += _pad(n)


def _is_simple(value: Any) -> bool:
    t = type(value)
    if t in _SIMPLE:
        return True
    if t is tuple or t is list:
        return len(value) < 16 and all(type(v) in _SIMPLE for v in value)
    return False


def serialize(value: Any, what: str = "value") -> Serialized:
    """Pickle ``value``; raises SerializationError naming the unpicklable attribute's path."""
    if _is_simple(value):
        return Serialized(pickle.dumps(value, 5), [], [])
    refs: list = []
    buffers: list = []
    outer = getattr(_state, "refs", None)
    _state.refs = refs
    try:
        inband = cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    except Exception as e:
        from swarm.core.pickle_inspect import describe_unpicklable
        raise SerializationError(describe_unpicklable(value, what, e)) from None
    finally:
        _state.refs = outer
    return Serialized(inband, buffers, refs)


def inline_bytes(s: Serialized, value: Any) -> bytes:
    """The value as one in-band pickle (for small values that had out-of-band buffers)."""
    if not s.buffers:
        return s.inband
    return cloudpickle.dumps(value, protocol=5)


def loads(data: bytes | memoryview) -> Any:
    return pickle.loads(data)


def loads_shm(mv: memoryview) -> Any:
    """Rebuild a value laid out by ``Serialized.write_to``; buffers are views of ``mv``."""
    magic, n, inband_len = _HEAD.unpack_from(mv, 0)
    if magic != _MAGIC:
        raise ValueError("corrupted object in shared memory (bad magic)")
    lens = [_LEN.unpack_from(mv, _HEAD.size + i * _LEN.size)[0] for i in range(n)]
    pos = _pad(_HEAD.size + _LEN.size * n)
    inband = mv[pos:pos + inband_len]
    pos += _pad(inband_len)
    bufs = []
    for ln in lens:
        bufs.append(mv[pos:pos + ln])
        pos += _pad(ln)
    return pickle.loads(inband, buffers=bufs)


def dumps_function(fn: Any, name: str) -> bytes:
    """A function or class, pickled once (by value when it is not importable). cloudpickle names the
    code it ships ``<dynamic-code>``; the real file is restored on load so remote tracebacks and pdb
    show file, line and source."""
    try:
        filename = _source_file(fn)
        return cloudpickle.dumps(_WithFilename(fn, filename) if filename else fn, protocol=5)
    except Exception as e:
        from swarm.core.pickle_inspect import describe_unpicklable
        raise SerializationError(describe_unpicklable(fn, name, e)) from None


_DYNAMIC = "<dynamic-code>"


def _code_objects_of(obj: Any) -> list:
    """The functions whose code a shipped function or class carries (methods, static/class methods,
    properties)."""
    if isinstance(obj, types.FunctionType):
        return [obj]
    out: list = []
    if isinstance(obj, type):
        for value in vars(obj).values():
            if isinstance(value, staticmethod | classmethod):
                value = value.__func__
            if isinstance(value, property):
                out.extend(f for f in (value.fget, value.fset, value.fdel)
                           if isinstance(f, types.FunctionType))
            elif isinstance(value, types.FunctionType):
                out.append(value)
    return out


def _source_file(obj: Any) -> str | None:
    for f in _code_objects_of(obj):
        name = f.__code__.co_filename
        if name and not name.startswith("<"):
            return name
    return None


def _refile(code: types.CodeType, filename: str) -> types.CodeType:
    consts = tuple(_refile(c, filename) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    return code.replace(co_filename=filename, co_consts=consts)


def _restore_filename(obj: Any, filename: str) -> Any:
    for f in _code_objects_of(obj):
        if f.__code__.co_filename == _DYNAMIC:
            f.__code__ = _refile(f.__code__, filename)
    return obj


class _WithFilename:
    """Pickles as ``_restore_filename(obj, filename)``: the object comes back with its code's file."""

    def __init__(self, obj: Any, filename: str) -> None:
        self.obj = obj
        self.filename = filename

    def __reduce__(self) -> tuple:
        return _restore_filename, (self.obj, self.filename)
