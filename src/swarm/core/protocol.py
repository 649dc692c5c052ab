"""Wire protocol: message kinds, framing, and the version every peer checks.

A frame is a 4-byte little-endian length followed by a msgpack array ``[kind, *fields]``. User data
only ever appears inside fields as pickled bytes; nothing is unpickled before the peer has proved it
knows the cluster token (see ``connection.py``).

    owner ──PUSH_TASK──▶ worker ──TASK_DONE──▶ owner          (per task; batched on the wire)
    borrower ──GET_OBJECT──▶ owner ──OBJECT_VALUE──▶ borrower
    any core worker ──REQUEST_LEASE / RETURN_LEASE / ALLOC / SEAL / PIN / RELEASE──▶ node manager
"""

from __future__ import annotations

import struct

import msgpack

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 1 << 30

HEADER = struct.Struct("<I")

# --- core worker <-> core worker -------------------------------------------------------------------
PUSH_TASK = 1         # [kind, task_id, fn_id, fn_blob|None, fn_name, args_blob, resolved_args, n_returns,
                      #  gpu_ids, owner_addr]
TASK_DONE = 2         # [kind, task_id, returns: [VALUE, ...], exec_s, contained: [[object_id, owner]]]
GET_OBJECT = 3        # [kind, object_id]
OBJECT_VALUE = 4      # [kind, object_id, value]
REF_UPDATE = 5        # [kind, adds: [object_id], removes: [object_id]]
HELLO = 6             # [kind, worker_id, address]
TASKS_RETURNED = 7    # [kind, [task_id, ...]]  a blocked worker hands back tasks it has not started
RECLAIM_TASKS = 73    # [kind]  owner -> worker: hand back my tasks you have not started (TASKS_RETURNED)
RETURN_REFS_HELD = 8  # [kind, task_id]  the owner now holds the refs nested in that task's returns
CREATE_ACTOR = 9      # [kind, actor_id, class_id, class_blob, class_name, args_blob, resolved_args, options,
                      #  gpu_ids, owner_addr]
ACTOR_TASK = 10       # [kind, task_id, actor_id, method, args_blob, resolved_args, num_returns, caller_addr]
ACTOR_EXIT = 11       # [kind, actor_id]  no handle is left: exit after the calls already queued
CANCEL_TASK = 12      # [kind, task_id, force, recursive]

# --- core worker <-> node manager ------------------------------------------------------------------
REQUEST_LEASE = 20    # [kind, req_id, shape: {resource: amount}, fn_name]
LEASE_GRANTED = 21    # [kind, req_id, worker_id, worker_addr, gpu_ids]
LEASE_FAILED = 22     # [kind, req_id, message]
RETURN_LEASE = 23     # [kind, worker_id]
CANCEL_LEASE_REQUESTS = 24  # [kind, [req_id, ...]]
WORKER_BLOCKED = 25   # [kind]
WORKER_UNBLOCKED = 26  # [kind]
ALLOC = 27            # [kind, req_id, size]
ALLOC_REPLY = 28      # [kind, req_id, offset | -1, message]
SEAL = 29             # [kind, object_id, offset, size]     the sender holds the primary pin
PIN = 30              # [kind, req_id, object_id]
PIN_REPLY = 31        # [kind, req_id, offset | -1, size]
UNPIN = 32            # [kind, [object_id, ...]]
RELEASE = 33          # [kind, [object_id, ...]]            primary pins dropped by the owner
CLUSTER_INFO = 34     # [kind, req_id]
CLUSTER_INFO_REPLY = 35  # [kind, req_id, info]
LOG_LINES = 36        # [kind, [[stream, prefix, line], ...]]
WORKER_DIED = 37      # [kind, worker_id, cause]
REGISTER_DRIVER = 38  # [kind, worker_id, address, pid]
WORKER_READY = 39     # [kind, worker_id, pid]              worker -> node manager at start
SHUTDOWN = 40         # [kind]
ACTOR_BIND = 41       # [kind, actor_id, worker_id, info]    an actor now lives in that leased worker
GET_ACTOR = 42        # [kind, req_id, actor_id | None, name, namespace, wait_alive]
ACTOR_INFO = 43       # [kind, req_id, info | None]
REGISTER_ACTOR = 44   # [kind, req_id, actor_id, info]  claims info["name"] -> ACTOR_INFO (None = claimed)
KILL_ACTOR = 45       # [kind, actor_id, cause]
ACTOR_DEAD = 46       # [kind, actor_id, cause]               the actor is dead (constructor failed, exit)
REGISTER_NODE = 49    # [kind, node_id, address, total, node_ip]      node manager -> head
HEARTBEAT = 50        # [kind, node_id, available]
NODE_VIEW = 51        # [kind, [node, ...]]                         head -> node managers
NODE_DIED = 52        # [kind, node_id, cause, object_server_address]  head -> everyone
NODE_REJECTED = 53    # [kind, message]                             head -> a node it declared dead
LEASE_SPILLBACK = 54  # [kind, req_id, node_manager_address]        try that node instead
LEASE_WARNING = 55    # [kind, req_id, message]                     queued: no node fits it right now
ACTOR_EXITED = 56     # [kind, actor_id, cause, no_restart]        node manager -> head
CLIENT_GONE = 57      # [kind, worker_id]                          node manager -> head
FETCH_OBJECT = 58     # [kind, object_id]               reader -> another node's object server
OBJECT_DATA = 59      # [kind, size | -1, message] then ``size`` raw bytes
SEAL_COPY = 60        # [kind, req_id, object_id, offset, size]  a pulled copy, pinned for the sender
RESERVE_BUNDLE = 61   # [kind, req_id, pg_id, index, shape]  -> PIN_REPLY-style [kind, req_id, ok, message]
RELEASE_BUNDLES = 62  # [kind, pg_id]
BUNDLE_REPLY = 63     # [kind, req_id, ok, message]
WAIT_EDGES = 64       # [kind, actor_id, worker_id, [awaited actor ids]]   an actor blocked in get (head)
DEADLOCK = 65         # [kind, worker_id, message]                  head -> the blocked actors' workers
LIST_ACTORS = 66      # [kind, req_id] -> LIST_OBJECTS_REPLY [kind, req_id, [actor info, ...]] (head)
CONTROL = 67          # [kind, req_id, op, args]  a control-store request (head; other nodes relay it)
CONTROL_REPLY = 68    # [kind, req_id, ok, result | error text]
TASK_EVENTS = 69      # [kind, owner_id, [finished row, ...], [live row, ...] | None]   owner -> head
# worker logs (node/log_service.py): any node manager answers about its own workers and log files
LIST_WORKERS = 70     # [kind, req_id] -> LOGS_REPLY with {node_id, workers: [...], files: [{name, size}]}
READ_LOG = 71         # [kind, req_id, file name, offset, max_bytes, task_id hex | None, inside_task]
LOGS_REPLY = 72       # [kind, req_id, result | None, error text]  (READ_LOG: {data, offset, size, live, ...})
LIST_OBJECTS = 47     # [kind, req_id]
LIST_OBJECTS_REPLY = 48  # [kind, req_id, [object description, ...]]

# Values in messages: [VALUE_INLINE, pickled] | [VALUE_SHM, offset, size] | [VALUE_ERROR, pickled]
VALUE_INLINE = 0
VALUE_SHM = 1
VALUE_ERROR = 2

_packb = msgpack.Packer(use_bin_type=True).pack


def encode(msg: list | tuple) -> bytes:
    body = _packb(msg)
    return HEADER.pack(len(body)) + body


def encode_many(msgs: list) -> bytes:
    out = []
    for m in msgs:
        body = _packb(m)
        out.append(HEADER.pack(len(body)))
        out.append(body)
    return b"".join(out)


def decode(body: bytes | memoryview) -> list:
    return msgpack.unpackb(body, raw=False, use_list=True, strict_map_key=False)


class FrameError(Exception):
    """A frame that cannot be a valid message: the connection is closed, nothing else happens."""


class FrameReader:
    """Splits a byte stream into frames; feed it what ``recv`` returns, take whole messages out."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list:
        buf = self._buf
        buf += data
        msgs = []
        pos = 0
        n = len(buf)
        unpack_header = HEADER.unpack_from
        mv = memoryview(buf)
        try:
            while n - pos >= 4:
                (size,) = unpack_header(buf, pos)
                if size > MAX_FRAME_BYTES:
                    raise FrameError(f"frame of {size} bytes exceeds the limit of {MAX_FRAME_BYTES}")
                end = pos + 4 + size
                if end > n:
                    break
                try:
                    msg = decode(mv[pos + 4:end])
                except Exception as e:  # corrupted frame: never guess, drop the peer
                    raise FrameError(f"undecodable frame: {e}") from None
                if type(msg) is not list or not msg or type(msg[0]) is not int:
                    raise FrameError("frame is not a message")
                msgs.append(msg)
                pos = end
        finally:
            mv.release()
        if pos:
            del buf[:pos]
        return msgs
