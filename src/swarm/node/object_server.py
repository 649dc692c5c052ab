"""Serves this node's shared-memory objects to other nodes (a child process of the node manager).

    reader on node B ──FETCH(object id)──▶ object server on node A ──PIN──▶ node manager A
                     ◀── [OBJECT_DATA, size] + raw bytes (sendfile from the arena: no copy) ──
    owner ──RELEASE──▶ object server ──▶ node manager A (the primary copy may go)

One thread per connection, so several transfers run at once; the node manager's single thread never
blocks on a network transfer. The reader writes the bytes straight into its own node's arena.
"""

from __future__ import annotations

import socket
import threading

from swarm.core import connection, protocol as P


class NodeManagerLink:
    """Synchronous requests to the node manager over the inherited control socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()
        self.reader = P.FrameReader()
        self.pending: list = []
        self.next_id = 0

    def call(self, build: object) -> list:
        with self.lock:
            self.next_id += 1
            req_id = self.next_id
            self.sock.sendall(P.encode(build(req_id)))  # type: ignore[operator]
            while True:
                for m in self.pending:
                    if m[1] == req_id:
                        self.pending.remove(m)
                        return m
                data = self.sock.recv(1 << 16)
                if not data:
                    raise ConnectionError("the node manager is gone")
                self.pending.extend(self.reader.feed(data))

    def send(self, msg: list) -> None:
        with self.lock:
            self.sock.sendall(P.encode(msg))


def serve(conn_sock: socket.socket, token: bytes, arena_fd: int, nm: NodeManagerLink) -> None:
    try:
        if not connection.server_handshake(conn_sock, token):
            return
        arena = open(arena_fd, "rb", buffering=0, closefd=False)
        reader = P.FrameReader()
        while True:
            data = conn_sock.recv(1 << 16)
            if not data:
                return
            for msg in reader.feed(data):
                if msg[0] == P.FETCH_OBJECT:
                    oid = msg[1]
                    reply = nm.call(lambda r, oid=oid: [P.PIN, r, oid])
                    if reply[2] < 0:
                        conn_sock.sendall(P.encode([P.OBJECT_DATA, -1, reply[4] if len(reply) > 4 else ""]))
                        continue
                    offset, size = reply[2], reply[3]
                    try:
                        conn_sock.sendall(P.encode([P.OBJECT_DATA, size, ""]))
                        conn_sock.sendfile(arena, offset, size)
                    finally:
                        nm.send([P.UNPIN, [oid]])
                elif msg[0] == P.RELEASE:
                    nm.send(msg)
    except (OSError, ConnectionError, P.FrameError):
        return
    finally:
        conn_sock.close()


def run_object_server(opts: dict) -> None:
    nm = NodeManagerLink(socket.socket(fileno=opts["ctl_fd"]))
    listener = socket.socket(fileno=opts["listen_fd"])
    token = opts["token"]
    while True:
        try:
            sock, _ = listener.accept()
        except OSError:
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=serve, args=(sock, token, opts["arena_fd"], nm), daemon=True).start()
