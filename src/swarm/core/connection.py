"""Authenticated, framed connections between swarm processes.

    client                                   server
      │ ◀── MAGIC, version, server nonce ────── │   (fixed-size, nothing parsed but these bytes)
      │ ── MAGIC, version, HMAC(token, server nonce), client nonce ──▶ │
      │ ◀── HMAC(token, client nonce) ───────── │   mutual: a fake server is caught too
      │ ◀════════ frames (protocol.py) ═══════▶ │

A peer that fails the handshake is dropped before any frame is read, so nothing it sent is ever
decoded or unpickled. Unix sockets use the Linux abstract namespace (no file to leak); TCP is used
between machines.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import select
import socket
import struct
import threading
from typing import Any, Callable

from swarm.core import protocol
from swarm.exceptions import AuthenticationError, ProtocolVersionError

log = logging.getLogger(__name__)

MAGIC = b"SWRM"
_HELLO = struct.Struct("<4sH32s")          # magic, version, nonce
_PROOF = struct.Struct("<4sH32s32s")       # magic, version, hmac, nonce
HANDSHAKE_TIMEOUT_S = 10.0
RECV_BYTES = 1 << 18


def _mac(token: bytes, nonce: bytes) -> bytes:
    return hmac.new(token, nonce, hashlib.sha256).digest()


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("peer closed the connection during the handshake")
        buf += chunk
    return buf


def parse_address(address: str) -> tuple[int, Any]:
    """'unix:NAME' (abstract namespace) or 'tcp:HOST:PORT' -> (family, sockaddr)."""
    if address.startswith("unix:"):
        return socket.AF_UNIX, "\0" + address[5:]
    if address.startswith("tcp:"):
        host, _, port = address[4:].rpartition(":")
        return socket.AF_INET, (host, int(port))
    raise ValueError(f"not a swarm address: {address!r} (expected 'unix:NAME' or 'tcp:HOST:PORT')")


def listen(address: str) -> socket.socket:
    family, sockaddr = parse_address(address)
    sock = socket.socket(family, socket.SOCK_STREAM)
    if family == socket.AF_INET:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(sockaddr)
    sock.listen(1024)
    return sock


def _tune(sock: socket.socket) -> None:
    if sock.family == socket.AF_INET:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def client_handshake(sock: socket.socket, token: bytes) -> None:
    sock.settimeout(HANDSHAKE_TIMEOUT_S)
    magic, version, server_nonce = _HELLO.unpack(_recv_exact(sock, _HELLO.size))
    if magic != MAGIC:
        raise ConnectionError("the peer is not a swarm process (bad greeting)")
    if version != protocol.PROTOCOL_VERSION:
        raise ProtocolVersionError(
            f"protocol version mismatch: this process speaks version {protocol.PROTOCOL_VERSION}, the "
            f"peer speaks version {version}; install the same swarm version on every node")
    my_nonce = os.urandom(32)
    sock.sendall(_PROOF.pack(MAGIC, protocol.PROTOCOL_VERSION, _mac(token, server_nonce), my_nonce))
    try:
        proof = _recv_exact(sock, 32)
    except ConnectionError:
        raise AuthenticationError(
            "the cluster rejected this connection: the cluster token is wrong. Pass the token the "
            "head node printed (SWARM_TOKEN or --token-file).") from None
    if not hmac.compare_digest(proof, _mac(token, my_nonce)):
        raise AuthenticationError("the peer does not know the cluster token; refusing to talk to it")
    sock.settimeout(None)


class ServerHandshake:
    """The server side of the handshake without blocking: ``greeting()`` to send first, then feed what
    arrives until ``done``; ``ok`` says whether the client proved it knows the token."""

    def __init__(self, token: bytes) -> None:
        self.token = token
        self.nonce = os.urandom(32)
        self.buf = b""
        self.done = False
        self.ok = False
        self.reply = b""

    def greeting(self) -> bytes:
        return _HELLO.pack(MAGIC, protocol.PROTOCOL_VERSION, self.nonce)

    def feed(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) < _PROOF.size:
            return
        self.done = True
        magic, version, proof, client_nonce = _PROOF.unpack(self.buf[:_PROOF.size])
        if magic != MAGIC or version != protocol.PROTOCOL_VERSION:
            log.warning("dropped a connection: bad greeting or protocol version %s (ours: %s)", version,
                        protocol.PROTOCOL_VERSION)
        elif not hmac.compare_digest(proof, _mac(self.token, self.nonce)):
            log.warning("dropped a connection that failed authentication (wrong cluster token)")
        elif len(self.buf) > _PROOF.size:
            log.warning("dropped a connection that sent data before authenticating")
        else:
            self.ok = True
            self.reply = _mac(self.token, client_nonce)


def server_handshake(sock: socket.socket, token: bytes) -> bool:
    """True when the client proved it knows the token. On failure the caller closes the socket."""
    sock.settimeout(HANDSHAKE_TIMEOUT_S)
    nonce = os.urandom(32)
    try:
        sock.sendall(_HELLO.pack(MAGIC, protocol.PROTOCOL_VERSION, nonce))
        magic, version, proof, client_nonce = _PROOF.unpack(_recv_exact(sock, _PROOF.size))
    except (OSError, ConnectionError, struct.error):
        return False
    if magic != MAGIC or version != protocol.PROTOCOL_VERSION:
        log.warning("dropped a connection: bad greeting or protocol version %s", version)
        return False
    if not hmac.compare_digest(proof, _mac(token, nonce)):
        log.warning("dropped a connection that failed authentication (wrong cluster token)")
        return False
    try:
        sock.sendall(_mac(token, client_nonce))
    except OSError:
        return False
    sock.settimeout(None)
    return True


def connect(address: str, token: bytes, timeout: float = 10.0) -> socket.socket:
    family, sockaddr = parse_address(address)
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(sockaddr)
    except OSError as e:
        sock.close()
        raise ConnectionError(f"cannot connect to swarm at {address}: {e}") from None
    _tune(sock)
    try:
        client_handshake(sock, token)
    except BaseException:
        sock.close()
        raise
    return sock


class Connection:
    """A framed, authenticated socket shared by threads: any thread sends, one reader thread reads."""

    __slots__ = ("sock", "peer_id", "peer_address", "_send_lock", "closed", "_reader", "name")

    def __init__(self, sock: socket.socket, name: str = "") -> None:
        self.sock = sock
        self.peer_id: bytes | None = None
        self.peer_address: str | None = None
        self._send_lock = threading.Lock()
        self.closed = False
        self._reader: threading.Thread | None = None
        self.name = name

    def send(self, msg: list | tuple) -> None:
        data = protocol.encode(msg)
        with self._send_lock:
            self.sock.sendall(data)

    def send_many(self, msgs: list) -> None:
        if msgs:
            data = protocol.encode_many(msgs)
            with self._send_lock:
                self.sock.sendall(data)

    def peer_closed(self) -> bool:
        """True when the peer has hung up (its end-of-stream is waiting here, unread or not)."""
        if self.closed:
            return True
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
            if readable:
                return self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except (OSError, ValueError):
            return True
        return False

    def start_reader(self, on_messages: Callable[[Connection, list], None],
                     on_close: Callable[[Connection], None]) -> None:
        self._reader = threading.Thread(target=self._read_loop, args=(on_messages, on_close),
                                        name=f"swarm-reader-{self.name}", daemon=True)
        self._reader.start()

    def _read_loop(self, on_messages: Callable, on_close: Callable) -> None:
        reader = protocol.FrameReader()
        recv = self.sock.recv
        try:
            while True:
                data = recv(RECV_BYTES)
                if not data:
                    break
                msgs = reader.feed(data)
                if msgs:
                    on_messages(self, msgs)
        except (OSError, protocol.FrameError) as e:
            if not self.closed:
                log.debug("connection %s closed: %s", self.name, e)
        except Exception:
            log.exception("error handling messages on %s", self.name)
        finally:
            self.closed = True
            try:
                self.sock.close()
            except OSError:
                pass
            on_close(self)

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    def join_reader(self, timeout: float | None = None) -> None:
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout)
