"""Unit tests for swarm.core.protocol: framing and the FrameReader."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings, strategies as st

from swarm.core import protocol as P
from swarm.core.protocol import FrameError, FrameReader

MESSAGES = [
    [P.PUSH_TASK, b"\x00" * 16, b"fn", None, "f", b"\x80\x05", [], 1, [b"r" * 16], [0, 1], "unix:x"],
    [P.TASK_DONE, b"t" * 16, [[b"o" * 16, P.VALUE_INLINE, b"payload"]], 0.25, []],
    [P.REQUEST_LEASE, 7, {"CPU": 1.0, "custom": 0.5}, "fname"],
    [P.LOG_LINES, [[1, "f pid=1", "héllo wörld"], [2, "g pid=2", ""]]],
    [P.SHUTDOWN],
    [P.ALLOC_REPLY, 3, -1, "x" * 70_000],       # larger than one recv
    [P.CLUSTER_INFO_REPLY, 1, {"total": {"CPU": 2.0}, 5: "int key"}],
]


def body_frame(body: bytes) -> bytes:
    return P.HEADER.pack(len(body)) + body


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: str(m[0]))
def test_round_trip(msg):
    assert FrameReader().feed(P.encode(msg)) == [msg]


def test_encode_tuple_comes_back_as_list():
    assert FrameReader().feed(P.encode((P.SHUTDOWN, 1, (2, 3)))) == [[P.SHUTDOWN, 1, [2, 3]]]


def test_frame_layout_is_little_endian_length_then_msgpack():
    msg = [P.HELLO, b"id", "unix:a"]
    data = P.encode(msg)
    assert int.from_bytes(data[:4], "little") == len(data) - 4
    assert msgpack.unpackb(data[4:], raw=False) == msg


@pytest.mark.parametrize("msg", MESSAGES[:5], ids=lambda m: str(m[0]))
def test_split_at_every_byte_boundary_reassembles(msg):
    data = P.encode(msg)
    for i in range(len(data) + 1):
        r = FrameReader()
        out = r.feed(data[:i])
        out += r.feed(data[i:])
        assert out == [msg], f"split at {i}"
        assert r.feed(b"") == []


def test_byte_by_byte_feed_of_several_frames():
    data = b"".join(P.encode(m) for m in MESSAGES[:5])
    r = FrameReader()
    out = []
    for i in range(len(data)):
        out += r.feed(data[i:i + 1])
    assert out == MESSAGES[:5]


def test_several_frames_in_one_feed():
    r = FrameReader()
    assert r.feed(P.encode_many(MESSAGES)) == MESSAGES
    assert r.feed(b"".join(P.encode(m) for m in MESSAGES)) == MESSAGES


def test_several_frames_and_a_partial_one():
    data = P.encode_many(MESSAGES[:3])
    tail = P.encode(MESSAGES[3])
    r = FrameReader()
    assert r.feed(data + tail[:5]) == MESSAGES[:3]
    assert r.feed(tail[5:]) == [MESSAGES[3]]


def test_encode_many_of_nothing_is_empty():
    assert P.encode_many([]) == b""
    assert FrameReader().feed(b"") == []


def test_oversized_length_raises_frame_error():
    with pytest.raises(FrameError):
        FrameReader().feed(P.HEADER.pack(P.MAX_FRAME_BYTES + 1))
    with pytest.raises(FrameError):
        FrameReader().feed(b"\xff\xff\xff\xff" + b"\x00" * 16)


def test_oversized_length_after_a_good_frame():
    with pytest.raises(FrameError):
        FrameReader().feed(P.encode([P.SHUTDOWN]) + P.HEADER.pack(P.MAX_FRAME_BYTES + 1))


def test_length_at_the_limit_just_waits_for_more():
    assert FrameReader().feed(P.HEADER.pack(P.MAX_FRAME_BYTES) + b"\x00" * 8) == []


@pytest.mark.parametrize("body", [
    b"\xc1",                        # a byte msgpack never uses
    b"\xc1\xc1\xc1\xc1\xc1",
    b"\x93\x01",                    # array of 3 with 1 element: truncated inside the frame
    b"\x91\x01\x01",                # one message followed by extra bytes in the same frame
    b"\xdd\xff\xff\xff\xff",        # array32 claiming 4 billion elements
    b"\x91\xc4\x10ab",              # bin8 longer than the frame
    b"",                            # empty frame
], ids=repr)
def test_garbage_raises_frame_error(body):
    with pytest.raises(FrameError):
        FrameReader().feed(body_frame(body))


@pytest.mark.parametrize("value", [
    5, "text", b"bytes", None, 1.5, True, {"a": 1}, {1: [2]}, [], ["str-kind"], [None], [1.0, 2],
    [True], [[1]], [b"\x01"],
], ids=repr)
def test_valid_msgpack_that_is_not_a_message_raises_frame_error(value):
    with pytest.raises(FrameError):
        FrameReader().feed(body_frame(msgpack.packb(value, use_bin_type=True)))


def test_bare_int_via_encode_raises_frame_error():
    with pytest.raises(FrameError):
        FrameReader().feed(P.encode(42))  # type: ignore[arg-type]


def _feed_only_frame_error(chunks: list[bytes]) -> None:
    r = FrameReader()
    for chunk in chunks:
        try:
            out = r.feed(chunk)
        except FrameError:
            return
        assert isinstance(out, list)
        for m in out:
            assert type(m) is list and m and type(m[0]) is int


@settings(max_examples=500, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_random_bytes_give_only_messages_or_frame_error(chunks):
    _feed_only_frame_error(chunks)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.binary(max_size=48), min_size=1, max_size=4), st.binary(max_size=8))
def test_random_framed_bodies_give_only_messages_or_frame_error(bodies, junk):
    # a correct length prefix, so the random body actually reaches the decoder
    _feed_only_frame_error([b"".join(body_frame(b) for b in bodies) + junk])


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=8) | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(msgpack_values)
def test_any_valid_msgpack_value_is_a_message_or_frame_error(value):
    frame = body_frame(msgpack.packb(value, use_bin_type=True))
    r = FrameReader()
    try:
        out = r.feed(frame)
    except FrameError:
        assert not (type(value) is list and value and type(value[0]) is int)
        return
    assert out == [value]
    assert type(value) is list and type(value[0]) is int


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 100), msgpack_values), max_size=6), st.data())
def test_random_messages_split_randomly_round_trip(msgs, data):
    msgs = [[k, v] for k, v in msgs]
    stream = P.encode_many(msgs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    r = FrameReader()
    out = []
    prev = 0
    for c in cuts + [len(stream)]:
        out += r.feed(stream[prev:c])
        prev = c
    assert out == msgs
