"""The node manager: one single-threaded process per node.

    drivers / workers ──(authenticated socket)──▶ ┌──────────── node manager ────────────┐
                                                  │ selector loop (this thread only)      │
    REQUEST_LEASE, RETURN_LEASE ─────────────────▶│  LeaseScheduler (resources.py)        │──fork──▶ workers
    ALLOC, SEAL, PIN, UNPIN, RELEASE ────────────▶│  Allocator over one memfd (arena.py)  │
    worker stdout/stderr pipes ──────────────────▶│  log files + LOG_LINES to drivers     │
    SIGCHLD (wakeup fd) ─────────────────────────▶│  reaps workers, WORKER_DIED to owner  │
                                                  └───────────────────────────────────────┘

It never runs user code and never sits on the per-task path: owners push tasks straight to the
workers it leases them. Being single-threaded is what makes forking workers from it safe.
"""

from __future__ import annotations

import collections
import gc
import importlib
import itertools
import json
import logging
import mmap
import os
import selectors
import shutil
import signal
import socket
import sys
import time
from typing import Any

import psutil

from swarm._config import CONFIG
from swarm.control.storage import MemoryStorage, open_storage
from swarm.control.store import ControlStore
from swarm.core import connection, protocol as P
from swarm.exceptions import SwarmError
from swarm.node import cluster, process
from swarm.node.actor_directory import ActorDirectory
from swarm.node.arena import Allocator, create_memfd
from swarm.node.log_service import LogService, actor_marker_line
from swarm.node.membership import Membership, node_record
from swarm.node.resources import Grant, Infeasible, LeaseRequest, LeaseScheduler, StartWorker

log = logging.getLogger("swarm.node")

TAG = "\x1e"          # a worker writes TAG + name [+ "\x1f" + task id] + "\n" before output of a new task
STDERR_TAIL_LINES = 20


class Client:
    """One connected core worker (a driver, or a worker's control channel)."""

    __slots__ = ("sock", "reader", "worker_id", "is_driver", "pins", "unsealed", "log_to_driver", "pid",
                 "node_id", "is_head_link")

    def __init__(self, sock: socket.socket, worker_id: bytes | None = None) -> None:
        self.sock = sock
        self.reader = P.FrameReader()
        self.worker_id = worker_id
        self.is_driver = False
        self.pins: collections.Counter[bytes] = collections.Counter()
        self.unsealed: set[int] = set()
        self.log_to_driver = True
        self.pid = 0
        self.node_id: str | None = None      # set on the head for a connected node manager
        self.is_head_link = False             # set on a node manager for its link to the head


class Worker:
    __slots__ = ("worker_id", "pid", "address", "client", "out_fd", "err_fd", "files", "partial",
                 "tag", "stderr_tail", "ready", "idle_since", "killed_reason", "actor_id", "oom",
                 "no_restart", "detached")

    def __init__(self, worker_id: bytes, pid: int, address: str) -> None:
        self.worker_id = worker_id
        self.pid = pid
        self.address = address
        self.client: Client | None = None
        self.out_fd = -1
        self.err_fd = -1
        self.files: dict[int, Any] = {}
        self.partial: dict[int, bytes] = {1: b"", 2: b""}
        self.tag: dict[int, str] = {1: "worker", 2: "worker"}
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self.ready = False
        self.idle_since = time.monotonic()
        self.killed_reason: str | None = None
        self.actor_id: bytes | None = None
        self.oom = False
        self.no_restart = False
        self.detached = False


class StoredObject:
    __slots__ = ("offset", "size", "owner", "primary", "pins", "spilled", "last_access", "copy")

    def __init__(self, offset: int, size: int, owner: bytes) -> None:
        self.offset = offset
        self.size = size
        self.owner = owner
        self.primary = True
        self.pins = 0
        self.spilled: str | None = None      # path of its copy on disk while not in memory
        self.last_access = time.monotonic()
        self.copy = False                    # pulled from another node: a cache, evicted first


class NodeManager:
    def __init__(self, opts: dict) -> None:
        self.opts = opts
        self.session_dir: str = opts["session_dir"]
        self.token = bytes.fromhex(opts["token"])
        self.node_id: str = opts["node_id"]
        self.address: str = opts["address"]
        self.exit_with_driver: bool = opts.get("exit_with_driver", True)
        total = {"CPU": float(opts["num_cpus"])}
        if opts.get("num_gpus"):
            total["GPU"] = float(opts["num_gpus"])
        total.update({k: float(v) for k, v in (opts.get("resources") or {}).items()})
        self.num_cpus = int(opts["num_cpus"])
        capacity = int(opts["object_store_memory"])
        total["object_store_memory"] = float(capacity)
        self.scheduler = LeaseScheduler({k: v for k, v in total.items() if k != "object_store_memory"})
        self.total_resources = total
        self.arena_fd = create_memfd(capacity)
        self.allocator = Allocator(capacity)
        self.arena_map = mmap.mmap(self.arena_fd, max(capacity, 1))
        self.spill_dir = os.path.join(self.session_dir, "spill")
        self.spilled_bytes = 0
        self.spill_count = 0
        self.restore_count = 0
        self.objects: dict[bytes, StoredObject] = {}
        self.sel = selectors.DefaultSelector()
        self.clients: dict[socket.socket, Client] = {}
        self.by_worker_id: dict[bytes, Client] = {}
        self.workers: dict[bytes, Worker] = {}
        self.workers_by_pid: dict[int, Worker] = {}
        self.pipe_owner: dict[int, tuple[Worker, int]] = {}
        self.running = True
        self.oom_cooldown_until = 0.0
        self.had_driver = False
        self.worker_counter = 0
        self.is_head = bool(opts.get("head", True))
        self.bundle_holders: dict[str, Client] = {}   # placement group -> who reserved it here
        self.handshakes: dict[socket.socket, tuple] = {}   # connections still proving the token
        storage = open_storage(opts.get("storage")) if self.is_head else MemoryStorage()
        self.control = ControlStore(storage, int(opts.get("task_events_max", CONFIG.task_events_max)))
        self.actors = self.control.actors      # the actor directory (complete on the head only)
        self.directory = ActorDirectory(self, self.actors)
        self.cluster = Membership(self)
        self.process = psutil.Process()
        self.lease_latency = LatencyHistogram()    # lease request → grant, reported with the node's stats
        self.relays: dict[int, tuple[Client, int]] = {}
        self.relay_ids = itertools.count(1)
        self.logs_dir = os.path.join(self.session_dir, "logs")
        os.makedirs(self.logs_dir, exist_ok=True)
        self.log_service = LogService(self)   # LIST_WORKERS / READ_LOG, task markers in worker logs

    # -- start / stop ---------------------------------------------------------------------------
    def start(self) -> None:
        self.listener = connection.listen(self.address)
        self.listener.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ, ("accept", self.listener))
        self.tcp_listener = None
        self.tcp_address: str | None = None
        if self.opts.get("tcp_port") is not None:
            ip = self.opts.get("node_ip") or "127.0.0.1"
            self.tcp_listener = connection.listen(f"tcp:{ip}:{self.opts['tcp_port']}")
            self.tcp_listener.setblocking(False)
            self.tcp_address = f"tcp:{ip}:{self.tcp_listener.getsockname()[1]}"
            self.sel.register(self.tcp_listener, selectors.EVENT_READ, ("accept", self.tcp_listener))
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, lambda *_: self._stop("SIGTERM"))
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.sel.register(self.wake_r, selectors.EVENT_READ, ("wake", None))
        self.transfer_address: str | None = None
        if self.tcp_address is not None:
            self._start_object_server()
        if self.is_head:
            if self.control.storage.persistent:
                self.cluster.load_control_store()
            me = cluster.NodeEntry(self.node_id, self.tcp_address or self.address, self._total_public(),
                                   dict(self.scheduler.available), self.opts.get("node_ip") or "127.0.0.1",
                                   is_head=True, transfer_address=self.transfer_address)
            self.cluster.node_table.register(me)
            self.control.node_changed(node_record(me))
        else:
            self.cluster.connect_head()
        gc.freeze()
        for _ in range(self.num_cpus):
            self.scheduler.starting += 1
            self._start_worker()

    # -- cluster ------------------------------------------------------------------------------------
    def _total_public(self) -> dict:
        total = dict(self.total_resources)
        total.update({k: v for k, v in self.scheduler.total.items() if "_group_" in k})
        return total

    def _stop(self, why: str) -> None:
        log.info("node manager stopping: %s", why)
        self.running = False

    def run(self) -> None:
        # What every worker runs, imported here once the node is up (the first workers, forked at start,
        # import it themselves meanwhile): workers forked later share it instead of each importing it
        # after the fork — 40+ ms of every later worker's, and so every actor's, start (asyncio: 25 ms).
        for module in WORKER_MODULES:
            importlib.import_module(module)
        gc.freeze()
        next_tick = time.monotonic() + 1.0
        mem_interval = self.opts.get("memory_monitor_interval_s", CONFIG.memory_monitor_interval_s)
        next_mem = time.monotonic() + mem_interval if mem_interval > 0 else float("inf")
        while self.running:
            timeout = max(0.0, min(next_tick, next_mem) - time.monotonic())
            for key, _ in self.sel.select(timeout):
                what, obj = key.data
                try:
                    if what == "client":
                        self._on_client_readable(obj)
                    elif what == "pipe":
                        self._on_pipe(key.fd)
                    elif what == "accept":
                        self._accept(obj)
                    elif what == "handshake":
                        self._on_handshake_readable(obj)
                    elif what == "wake":
                        self._on_wake()
                except Exception:
                    log.exception("node manager error handling %s", what)
            if time.monotonic() >= next_mem:
                next_mem = time.monotonic() + mem_interval
                try:
                    self._check_memory()
                except Exception:
                    log.exception("memory monitor failed")
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + self.opts.get("heartbeat_s", CONFIG.heartbeat_s)
                self._reap_idle_workers()
                self._expire_handshakes()
                try:
                    self.cluster.tick()
                except Exception:
                    log.exception("cluster bookkeeping failed")
            self.control.flush()
        self.teardown()

    def teardown(self) -> None:
        try:
            self.control.close()
        except Exception:
            log.exception("could not write the control store")
        if getattr(self, "object_server_pid", None):
            try:
                os.kill(self.object_server_pid, signal.SIGKILL)
            except OSError:
                pass
        for w in list(self.workers.values()):
            try:
                os.killpg(w.pid, signal.SIGKILL)
            except OSError:
                pass
        deadline = time.monotonic() + 5.0
        while self.workers_by_pid and time.monotonic() < deadline:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            dead = self.workers_by_pid.pop(pid, None)
            if dead is not None:
                self._close_worker_pipes(dead)
        for c in list(self.clients.values()):
            try:
                c.sock.close()
            except OSError:
                pass
        for lsock in (self.listener, self.tcp_listener):
            try:
                if lsock is not None:
                    lsock.close()
            except OSError:
                pass
        if self.opts.get("node_file"):
            try:
                os.unlink(self.opts["node_file"])
            except OSError:
                pass
        self.arena_map.close()
        os.close(self.arena_fd)
        if not CONFIG.keep_session_dir and not self.opts.get("keep_session_dir"):
            shutil.rmtree(self.session_dir, ignore_errors=True)

    # -- workers ----------------------------------------------------------------------------------
    def _start_worker(self) -> None:
        self.worker_counter += 1
        worker_id = os.urandom(8)
        if self.tcp_address is not None:   # a cluster: owners on other nodes push tasks to it
            lsock = connection.listen(f"tcp:{self.opts.get('node_ip') or '127.0.0.1'}:0")
            address = f"tcp:{self.opts.get('node_ip') or '127.0.0.1'}:{lsock.getsockname()[1]}"
        else:
            address = f"unix:swarm-{self.node_id}-{worker_id.hex()}"
            lsock = connection.listen(address)
        nm_end, w_end = process.socketpair()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        opts = {"worker_id": worker_id, "address": address, "node_id": self.node_id,
                "arena_fd": self.arena_fd, "ctl_fd": w_end.fileno(), "listen_fd": lsock.fileno(),
                "token": self.token, "session_dir": self.session_dir,
                "capacity": self.allocator.capacity, "transfer_address": self.transfer_address,
                "preload": self.opts.get("preload") or []}

        def child_main() -> None:
            from swarm.core.worker_main import run_worker
            run_worker(opts)

        pid = process.fork_worker(child_main, {self.arena_fd, w_end.fileno(), lsock.fileno()},
                                  out_w, err_w, os.getpid())
        lsock.close()
        w_end.close()
        os.close(out_w)
        os.close(err_w)
        w = Worker(worker_id, pid, address)
        w.out_fd, w.err_fd = out_r, err_r
        base = os.path.join(self.logs_dir, f"worker-{worker_id.hex()}-{pid}")
        w.files = {1: open(base + ".out", "ab"), 2: open(base + ".err", "ab")}
        for fd, stream in ((out_r, 1), (err_r, 2)):
            os.set_blocking(fd, False)
            self.pipe_owner[fd] = (w, stream)
            self.sel.register(fd, selectors.EVENT_READ, ("pipe", None))
        client = Client(nm_end, worker_id)
        client.pid = pid
        w.client = client
        nm_end.setblocking(True)
        self.clients[nm_end] = client
        self.by_worker_id[worker_id] = client
        self.sel.register(nm_end, selectors.EVENT_READ, ("client", client))
        self.workers[worker_id] = w
        self.workers_by_pid[pid] = w

    def _check_memory(self) -> None:
        """Past the threshold, kill the worker using the most memory (its task is retried, bounded)."""
        if time.monotonic() < self.oom_cooldown_until:
            return
        vm = psutil.virtual_memory()
        used = 1.0 - vm.available / vm.total
        threshold = self.opts.get("memory_usage_threshold", CONFIG.memory_usage_threshold)
        if used < threshold:
            return
        usage = []
        for w in self.workers.values():
            try:
                usage.append((psutil.Process(w.pid).memory_info().rss, w))
            except psutil.Error:
                pass
        if not usage:
            return
        usage.sort(key=lambda t: -t[0])
        rss, victim = usage[0]
        top = ", ".join(f"pid {w.pid} ({self._worker_label(w)}): {r / 2**30:.2f} GiB"
                        for r, w in usage[:5])
        reason = (f"out of memory: the node used {used:.0%} of its {vm.total / 2**30:.1f} GiB of memory, "
                  f"past "
                  f"the threshold of {threshold:.0%}; the worker using the most, pid {victim.pid} "
                  f"({self._worker_label(victim)}), held {rss / 2**30:.2f} GiB and was killed. Top "
                  f"users: {top}. Use less memory per task, run fewer at once (num_cpus=...), or raise "
                  f"memory_usage_threshold")
        log.warning(reason)
        self._kill(victim, reason)
        victim.oom = True
        self.oom_cooldown_until = time.monotonic() + 1.0

    def _worker_label(self, w: Worker) -> str:
        lease = self.scheduler.leases.get(w.worker_id)
        if w.actor_id is not None:
            return f"actor {self.actors.get(w.actor_id, {}).get('class_name', '?')}"
        return f"task {lease[0].fn_name}" if lease else "idle"

    def _start_object_server(self) -> None:
        ip = self.opts.get("node_ip") or "127.0.0.1"
        lsock = connection.listen(f"tcp:{ip}:0")
        self.transfer_address = f"tcp:{ip}:{lsock.getsockname()[1]}"
        nm_end, child_end = process.socketpair()
        out_fd = os.open(os.path.join(self.logs_dir, "object_server.log"),
                         os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        opts = {"ctl_fd": child_end.fileno(), "listen_fd": lsock.fileno(), "arena_fd": self.arena_fd,
                "token": self.token}

        def child_main() -> None:
            from swarm.node.object_server import run_object_server
            run_object_server(opts)

        pid = process.fork_worker(child_main, {self.arena_fd, child_end.fileno(), lsock.fileno()}, out_fd,
                                  out_fd, os.getpid())
        os.close(out_fd)
        lsock.close()
        child_end.close()
        client = Client(nm_end)
        client.pid = pid
        self.clients[nm_end] = client
        self.sel.register(nm_end, selectors.EVENT_READ, ("client", client))
        self.object_server_pid = pid

    def _reap_idle_workers(self) -> None:
        idle = self.scheduler.idle_workers
        excess = len(self.workers) - self.num_cpus
        now = time.monotonic()
        for wid in list(idle):
            if excess <= 0:
                break
            w = self.workers.get(wid)
            if w and now - w.idle_since > CONFIG.idle_worker_timeout_s:
                idle.remove(wid)
                w.killed_reason = "idle"
                try:
                    os.killpg(w.pid, signal.SIGKILL)
                except OSError:
                    pass
                excess -= 1

    def _on_wake(self) -> None:
        try:
            while os.read(self.wake_r, 4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            w = self.workers_by_pid.pop(pid, None)
            if w is not None:
                self._worker_exited(w, status)

    def _worker_exited(self, w: Worker, status: int) -> None:
        # drain what it wrote last: the cause of death is often there
        for fd in (w.out_fd, w.err_fd):
            if fd in self.pipe_owner:
                self._on_pipe(fd, final=True)
        self._close_worker_pipes(w)
        text, code, sig = process.describe_exit(status)
        self.workers.pop(w.worker_id, None)
        actor_cause = self.directory.worker_died(w, text) if w.actor_id is not None else None
        self.log_service.worker_exited(w, text)
        if w.client is not None:
            self._drop_client(w.client)
        if not w.ready:
            self.scheduler.starting = max(0, self.scheduler.starting - 1)
        lease_req, actions = self.scheduler.worker_died(w.worker_id)
        if lease_req is not None and w.killed_reason != "idle":
            tail = "\n".join(w.stderr_tail)
            cause = {"text": text, "exit_code": code, "signal": sig, "pid": w.pid,
                     "stderr_tail": tail, "reason": w.killed_reason, "oom": w.oom}
            if actor_cause is not None:
                cause["text"] = actor_cause
                cause["no_restart"] = w.no_restart
            holder = lease_req.client
            if isinstance(holder, Client):
                self._send(holder, [P.WORKER_DIED, w.worker_id, cause])
        self._apply(actions)

    def _close_worker_pipes(self, w: Worker) -> None:
        for fd in (w.out_fd, w.err_fd):
            if fd in self.pipe_owner:
                del self.pipe_owner[fd]
                try:
                    self.sel.unregister(fd)
                except (KeyError, ValueError):
                    pass
                os.close(fd)
        for f in w.files.values():
            f.close()
        w.files = {}

    # -- worker output ----------------------------------------------------------------------------
    def _on_pipe(self, fd: int, final: bool = False) -> None:
        owner = self.pipe_owner.get(fd)
        if owner is None:
            return
        w, stream = owner
        chunks = []
        while True:
            try:
                data = os.read(fd, 65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                data = b""
            if not data:
                if not final:
                    self.pipe_owner.pop(fd, None)
                    self.sel.unregister(fd)
                    os.close(fd)
                    if stream == 1:
                        w.out_fd = -1
                    else:
                        w.err_fd = -1
                break
            chunks.append(data)
            if not final and len(data) < 65536:
                break
        if not chunks:
            return
        data = w.partial[stream] + b"".join(chunks)
        lines = data.split(b"\n")
        w.partial[stream] = lines.pop()
        out = []
        f = w.files.get(stream)
        for raw in lines:
            line = raw.decode("utf-8", "replace")
            if line.startswith(TAG):   # a new task: marked in the file (for `swarm logs --task`), not sent
                w.tag[stream], marker = self.log_service.on_tag(w.worker_id, stream, line)
                if f is not None and marker:
                    f.write(marker)
                continue
            if f is not None:
                f.write(raw + b"\n")
            if stream == 2:
                w.stderr_tail.append(line)
            out.append([stream, f"{w.tag[stream]} pid={w.pid}", line])
        if f is not None:
            f.flush()
            self._maybe_rotate(w, stream)
        if out:
            for c in self.clients.values():
                if c.is_driver and c.log_to_driver:
                    self._send(c, [P.LOG_LINES, out])

    def _maybe_rotate(self, w: Worker, stream: int) -> None:
        f = w.files[stream]
        if f.tell() < CONFIG.log_rotate_bytes:
            return
        path = f.name
        f.close()
        for i in range(CONFIG.log_rotate_keep - 1, 0, -1):
            if os.path.exists(f"{path}.{i}"):
                os.replace(f"{path}.{i}", f"{path}.{i + 1}")
        os.replace(path, f"{path}.1")
        w.files[stream] = open(path, "ab")
        if w.actor_id is not None:   # the new file is the actor's from its first line too
            w.files[stream].write(actor_marker_line(w.actor_id.hex(), w.tag[stream]))
        w.files[stream].write(self.log_service.current_marker(w.worker_id, stream, w.tag[stream]))

    # -- clients ----------------------------------------------------------------------------------
    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            if sock.family == socket.AF_INET:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # the handshake runs in this loop without blocking it: a silent peer cannot stall the node
            hs = connection.ServerHandshake(self.token)
            try:
                sock.setblocking(False)
                sock.send(hs.greeting())
            except OSError:
                sock.close()
                continue
            self.handshakes[sock] = (hs, time.monotonic())
            self.sel.register(sock, selectors.EVENT_READ, ("handshake", sock))

    def _on_handshake_readable(self, sock: socket.socket) -> None:
        hs, _ = self.handshakes[sock]
        try:
            data = sock.recv(256)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if data:
            hs.feed(data)
        if data and not hs.done:
            return
        del self.handshakes[sock]
        self.sel.unregister(sock)
        if not (data and hs.ok):
            sock.close()
            return
        try:
            sock.setblocking(True)
            sock.sendall(hs.reply)
        except OSError:
            sock.close()
            return
        client = Client(sock)
        self.clients[sock] = client
        self.sel.register(sock, selectors.EVENT_READ, ("client", client))

    def _expire_handshakes(self) -> None:
        now = time.monotonic()
        for sock, (_, started) in list(self.handshakes.items()):
            if now - started > connection.HANDSHAKE_TIMEOUT_S:
                del self.handshakes[sock]
                self.sel.unregister(sock)
                sock.close()

    def _on_client_readable(self, client: Client) -> None:
        try:
            data = client.sock.recv(1 << 18)
        except (ConnectionError, OSError):
            data = b""
        if not data:
            self._drop_client(client)
            return
        try:
            msgs = client.reader.feed(data)
        except P.FrameError as e:
            log.warning("dropping a client that sent a bad frame: %s", e)
            self._drop_client(client)
            return
        for msg in msgs:
            try:
                self._handle(client, msg)
            except (IndexError, TypeError, ValueError, KeyError) as e:
                log.warning("dropping a client that sent a malformed message %r: %s", msg[:1], e)
                self._drop_client(client)
                return

    def _drop_client(self, client: Client) -> None:
        if self.clients.pop(client.sock, None) is None:
            return
        if client.is_head_link:
            log.warning("lost the connection to the head; retrying for up to %.0f s",
                        self.opts.get("head_reconnect_s", CONFIG.head_reconnect_s))
            self.cluster.head_link = None
            self.cluster.head_lost_since = time.monotonic()
        if client.node_id is not None and self.is_head:
            if self.cluster.node_table.mark_dead(client.node_id) is not None:
                self.cluster.node_died(client.node_id, "its connection to the head closed")
        try:
            self.sel.unregister(client.sock)
        except (KeyError, ValueError):
            pass
        try:
            client.sock.close()
        except OSError:
            pass
        if client.worker_id is not None and self.by_worker_id.get(client.worker_id) is client:
            del self.by_worker_id[client.worker_id]
            if self.is_head:
                self.directory.gone_owners.add(client.worker_id)
                self.control.tasks.owner_gone(client.worker_id)
            else:
                self.cluster.send_head([P.CLIENT_GONE, client.worker_id])
        for oid, n in client.pins.items():
            obj = self.objects.get(oid)
            if obj is not None:
                obj.pins -= n
                self._maybe_free(oid, obj)
        for offset in client.unsealed:
            self.allocator.free(offset)
        if client.worker_id is not None:
            for oid in [o for o, obj in self.objects.items() if obj.owner == client.worker_id]:
                self._release(oid)
        for pg_id in [pg for pg, holder in self.bundle_holders.items() if holder is client]:
            del self.bundle_holders[pg_id]   # placement groups die with their creator
            self._apply(self.scheduler.release_bundles(pg_id))
        for wid in self.scheduler.client_gone(client):
            w = self.workers.get(wid)
            if w is not None and w.actor_id is not None:
                if w.detached:
                    self.scheduler.leases[wid][0].client = None   # it outlives its creator
                else:
                    self._kill(w, f"its owner (the process that created it, pid {client.pid}) exited")
            else:
                self._apply(self.scheduler.release(wid))
        if client.is_driver and self.exit_with_driver:
            if not any(c.is_driver for c in self.clients.values()):
                self._stop("the driver disconnected")

    def _send(self, client: Any, msg: list) -> None:
        try:
            client.sock.sendall(P.encode(msg))
        except OSError:
            pass

    def _apply(self, actions: list) -> None:
        for a in actions:
            if isinstance(a, Grant):
                w = self.workers.get(a.worker_id)
                if w is None:
                    continue
                self.lease_latency.observe(time.monotonic() - a.request.created)
                self._send(a.request.client, [P.LEASE_GRANTED, a.request.req_id, a.worker_id, w.address,
                                              a.gpu_ids, self.node_id])
            elif isinstance(a, Infeasible):
                self._send(a.request.client, [P.LEASE_FAILED, a.request.req_id, a.message])
            elif isinstance(a, StartWorker):
                self._start_worker()

    def _handle(self, c: Client, msg: list) -> None:
        kind = msg[0]
        if kind == P.REQUEST_LEASE:
            strategy = msg[4] if len(msg) > 4 else None
            hops = msg[5] if len(msg) > 5 else 0
            if len(msg) > 6 and c.worker_id is None:   # the owner: its objects here are its to release
                c.worker_id = msg[6]
                self.by_worker_id.setdefault(msg[6], c)
            self.cluster.lease_request(LeaseRequest(msg[1], c, msg[2], msg[3], strategy), hops)
        elif kind in (P.REGISTER_NODE, P.HEARTBEAT, P.NODE_VIEW, P.NODE_DIED, P.NODE_REJECTED):
            self.cluster.handle(c, msg)
        elif kind == P.RETURN_LEASE:
            wid = msg[1]
            lease = self.scheduler.leases.get(wid)
            if lease is not None and lease[0].client is c:
                w = self.workers.get(wid)
                if w is not None and w.actor_id is not None:
                    self._kill(w, "its lease was returned")
                    return
                if w is not None:
                    w.idle_since = time.monotonic()
                self._apply(self.scheduler.release(wid))
        elif kind == P.ALLOC:
            size = msg[2]
            offset = self._alloc(size)
            if offset is None:
                # retryable while readers' pins may go away; never for what cannot ever fit
                retry = size <= self.allocator.capacity
                self._send(c, [P.ALLOC_REPLY, msg[1], -1, self._store_full_message(size), retry])
            else:
                c.unsealed.add(offset)
                self._send(c, [P.ALLOC_REPLY, msg[1], offset, "", False])
        elif kind == P.SEAL:
            _, req_id, oid, offset, size, owner = msg
            c.unsealed.discard(offset)
            if owner in self.by_worker_id or owner == c.worker_id:
                self.objects[oid] = StoredObject(offset, size, owner)
            else:  # the owner is already gone: nobody can ever read it
                self.allocator.free(offset)
            self._send(c, [P.PIN_REPLY, req_id, offset, size])
        elif kind == P.SEAL_COPY:
            _, req_id, oid, offset, size = msg
            c.unsealed.discard(offset)
            obj = self.objects.get(oid)
            if obj is not None and obj.spilled is None:   # another reader pulled it first
                self.allocator.free(offset)
            else:
                obj = StoredObject(offset, size, oid[:8])
                obj.primary = False
                obj.copy = True
                self.objects[oid] = obj
            obj.pins += 1
            c.pins[oid] += 1
            self._send(c, [P.PIN_REPLY, req_id, obj.offset, obj.size, ""])
        elif kind == P.PIN:
            obj = self.objects.get(msg[2])
            if obj is None:
                self._send(c, [P.PIN_REPLY, msg[1], -1, 0, "it was freed (no reference to it was left)"])
                return
            if obj.spilled is not None and not self._restore(obj):
                self._send(c, [P.PIN_REPLY, msg[1], -1, 0, "it is spilled to disk and the store is too "
                               "full to bring it back: " + self._store_full_message(obj.size)])
                return
            obj.pins += 1
            obj.last_access = time.monotonic()
            c.pins[msg[2]] += 1
            self._send(c, [P.PIN_REPLY, msg[1], obj.offset, obj.size, ""])
        elif kind == P.UNPIN:
            for oid in msg[1]:
                if c.pins.get(oid, 0) > 0:
                    c.pins[oid] -= 1
                    if not c.pins[oid]:
                        del c.pins[oid]
                    obj = self.objects.get(oid)
                    if obj is not None:
                        obj.pins -= 1
                        self._maybe_free(oid, obj)
        elif kind == P.RELEASE:
            for oid in msg[1]:
                self._release(oid)
        elif kind == P.WORKER_BLOCKED:
            if c.worker_id is not None:
                self._apply(self.scheduler.block(c.worker_id))
        elif kind == P.WORKER_UNBLOCKED:
            if c.worker_id is not None:
                self.scheduler.unblock(c.worker_id)
        elif kind == P.CANCEL_LEASE_REQUESTS:
            self.scheduler.cancel(c, msg[1])
        elif kind == P.WORKER_READY:
            w = self.workers.get(c.worker_id)  # type: ignore[arg-type]
            if w is not None and not w.ready:
                w.ready = True
                self._apply(self.scheduler.worker_ready(w.worker_id))
        elif kind == P.REGISTER_DRIVER:
            _, worker_id, address, pid, log_to_driver = msg
            c.worker_id = worker_id
            c.is_driver = True
            c.pid = pid
            c.log_to_driver = log_to_driver
            self.had_driver = True
            self.by_worker_id[worker_id] = c
            socket.send_fds(c.sock, [b"F"], [self.arena_fd])
            self._send(c, [P.CLUSTER_INFO_REPLY, 0, self._info()])
        elif kind == P.CLUSTER_INFO:
            self._send(c, [P.CLUSTER_INFO_REPLY, msg[1], self._info()])
        elif kind == P.CONTROL:
            self.cluster.control_request(c, msg)
        elif kind == P.CONTROL_REPLY and c.is_head_link:
            asker = self.relays.pop(msg[1], None)
            if asker is not None:
                self._send(asker[0], [P.CONTROL_REPLY, asker[1], msg[2], msg[3]])
        elif kind == P.TASK_EVENTS:
            if self.is_head:
                self.control.task_events(msg[1], msg[2], msg[3])
            else:
                self.cluster.send_head(msg)
        elif kind == P.LIST_ACTORS:
            if self.is_head or self.cluster.head_link is None:
                self._send(c, [P.LIST_OBJECTS_REPLY, msg[1], list(self.actors.values())])
            else:   # the directory is the head's: ask it on the caller's behalf
                relay_id = next(self.relay_ids)
                self.relays[relay_id] = (c, msg[1])
                self._send(self.cluster.head_link, [P.LIST_ACTORS, relay_id])
        elif kind == P.LIST_OBJECTS_REPLY and c.is_head_link:
            asker = self.relays.pop(msg[1], None)
            if asker is not None:
                self._send(asker[0], [P.LIST_OBJECTS_REPLY, asker[1], msg[2]])
        elif kind == P.LIST_OBJECTS:
            owners = {cl.worker_id: cl.pid for cl in self.clients.values() if cl.worker_id is not None}
            objs = [{"object_id": oid.hex(), "size": o.size, "owner": o.owner.hex(),
                     "owner_pid": owners.get(o.owner), "pins": o.pins, "referenced": o.primary,
                     "spilled": o.spilled is not None, "node_id": self.node_id}
                    for oid, o in self.objects.items()]
            self._send(c, [P.LIST_OBJECTS_REPLY, msg[1], objs])
        elif kind in (P.REGISTER_ACTOR, P.ACTOR_BIND, P.GET_ACTOR, P.KILL_ACTOR, P.ACTOR_DEAD, P.ACTOR_INFO,
                      P.ACTOR_EXITED, P.CLIENT_GONE):
            self.directory.handle(c, msg)
        elif kind == P.RESERVE_BUNDLE:
            _, req_id, pg_id, index, shape = msg
            ok = self.scheduler.reserve_bundle(pg_id, index, shape)
            if ok:
                self.bundle_holders.setdefault(pg_id, c)
            self._send(c, [P.BUNDLE_REPLY, req_id, ok, "" if ok else "does not fit right now"])
        elif kind == P.RELEASE_BUNDLES:
            self.bundle_holders.pop(msg[1], None)
            self._apply(self.scheduler.release_bundles(msg[1]))
        elif kind in (P.WAIT_EDGES, P.DEADLOCK):
            self.directory.handle_wait_edges(c, msg)
        elif kind == P.HELLO:   # a core worker of another node (it asks us for leases)
            if c.worker_id is None:
                c.worker_id = msg[1]
                self.by_worker_id.setdefault(msg[1], c)
        elif kind in (P.LIST_WORKERS, P.READ_LOG):
            self._send(c, self.log_service.handle(msg))
        elif kind == P.SHUTDOWN:
            self._stop("asked to shut down")
        else:
            raise ValueError(f"unknown message kind {kind}")

    # -- actors -----------------------------------------------------------------------------------
    def _bind_local_worker(self, actor_id: bytes, worker_id: bytes, info: dict) -> None:
        w = self.workers.get(worker_id)
        if w is not None:
            w.actor_id = actor_id
            w.detached = bool(info.get("detached"))
            w.tag = {1: info["class_name"], 2: info["class_name"]}
            marker = actor_marker_line(actor_id.hex(), info["class_name"])
            for f in w.files.values():   # what the worker printed before is not the actor's
                try:
                    f.write(marker)
                    f.flush()
                except (OSError, ValueError):
                    pass

    def _kill(self, w: Worker, reason: str) -> None:
        w.killed_reason = reason
        try:
            os.killpg(w.pid, signal.SIGKILL)
        except OSError:
            pass

    # -- objects ----------------------------------------------------------------------------------
    def _release(self, oid: bytes) -> None:
        obj = self.objects.get(oid)
        if obj is not None and obj.primary:
            obj.primary = False
            self._maybe_free(oid, obj)

    def _maybe_free(self, oid: bytes, obj: StoredObject) -> None:
        if obj.copy:
            return   # a cached copy of another node's object: kept until room is needed
        if not obj.primary and obj.pins <= 0:
            del self.objects[oid]
            if obj.spilled is not None:
                self.spilled_bytes -= obj.size
                try:
                    os.unlink(obj.spilled)
                except OSError:
                    pass
            else:
                self.allocator.free(obj.offset)

    # -- spilling ---------------------------------------------------------------------------------
    def _alloc(self, size: int) -> int | None:
        """Allocate, spilling least-recently-used unpinned objects to disk to make room."""
        offset = self.allocator.alloc(size)
        if offset is not None or size > self.allocator.capacity:
            return offset
        copies = sorted(((oid, o) for oid, o in self.objects.items() if o.copy and o.pins <= 0),
                        key=lambda t: t[1].last_access)
        for oid, o in copies:   # evict cached copies before spilling anything
            del self.objects[oid]
            self.allocator.free(o.offset)
            offset = self.allocator.alloc(size)
            if offset is not None:
                return offset
        candidates = sorted((o for o in self.objects.values() if o.pins <= 0 and o.spilled is None),
                            key=lambda o: o.last_access)
        for obj in candidates:
            if not self._spill(obj):
                break
            offset = self.allocator.alloc(size)
            if offset is not None:
                return offset
        return None

    def _spill(self, obj: StoredObject) -> bool:
        quota = CONFIG.spill_max_bytes or int(shutil.disk_usage(self.session_dir).free * 0.9)
        if self.spilled_bytes + obj.size > quota:
            log.warning("not spilling %d bytes: the spill quota of %d bytes is used up", obj.size, quota)
            return False
        os.makedirs(self.spill_dir, exist_ok=True)
        path = os.path.join(self.spill_dir, f"{obj.offset}-{os.urandom(6).hex()}")
        try:
            with open(path, "wb") as f:
                f.write(memoryview(self.arena_map)[obj.offset:obj.offset + obj.size])
        except OSError as e:
            log.warning("spilling failed (%s): disk full?", e)
            try:
                os.unlink(path)
            except OSError:
                pass
            return False
        self.allocator.free(obj.offset)
        obj.offset = -1
        obj.spilled = path
        self.spilled_bytes += obj.size
        self.spill_count += 1
        return True

    def _restore(self, obj: StoredObject) -> bool:
        offset = self._alloc(obj.size)
        if offset is None:
            return False
        path = obj.spilled
        assert path is not None
        with open(path, "rb") as f:
            f.readinto(memoryview(self.arena_map)[offset:offset + obj.size])
        os.unlink(path)
        obj.offset = offset
        obj.spilled = None
        self.spilled_bytes -= obj.size
        self.restore_count += 1
        return True

    def _store_full_message(self, size: int) -> str:
        top = sorted(self.objects.items(), key=lambda kv: -kv[1].size)[:5]
        held = ", ".join(f"{oid.hex()} ({o.size / 2**20:.1f} MiB, "
                         f"{'referenced' if o.primary else 'pinned by a reader'})" for oid, o in top)
        return (f"the object store cannot fit {size / 2**20:.1f} MiB: {self.allocator.used / 2**20:.1f} of "
                f"{self.allocator.capacity / 2**20:.1f} MiB are in use by {len(self.objects)} objects "
                f"(largest: {held or 'none'}); drop references to objects you no longer need or start "
                f"swarm with a larger object_store_memory")

    def _node_stats(self) -> dict:
        """This node's load, sent with every heartbeat (the dashboard and metrics read it on the head)."""
        mem = psutil.virtual_memory()
        actors = sum(1 for w in self.workers.values() if w.actor_id is not None)
        rss = self.process.memory_info().rss
        return {"time": time.time(), "cpu_percent": psutil.cpu_percent(interval=None),
                "mem_total": mem.total, "mem_used": mem.total - mem.available,
                "store_capacity": self.allocator.capacity, "store_used": self.allocator.used,
                "store_objects": len(self.objects), "spilled_bytes": self.spilled_bytes,
                "spilled_objects": self.spill_count, "restored_objects": self.restore_count,
                "workers": len(self.workers), "workers_leased": len(self.scheduler.leases),
                "workers_actors": actors, "node_manager_rss": rss,
                "pending_leases": len(self.scheduler.queue) + len(self.cluster.parked),
                "lease_latency": self.lease_latency.snapshot()}

    def _info(self) -> dict:
        avail = dict(self.scheduler.available)
        avail["object_store_memory"] = float(self.allocator.capacity - self.allocator.used)
        leases = [{"pid": self.workers[wid].pid, "shape": req.shape, "fn_name": req.fn_name,
                   "blocked": wid in self.scheduler.blocked, "actor": self.workers[wid].actor_id is not None}
                  for wid, (req, _) in self.scheduler.leases.items() if wid in self.workers]
        return {"node_id": self.node_id, "address": self.address, "total": self._total_public(),
                "leases": leases, "nodes": self.cluster.view or [self.cluster.self_view()],
                "object_store": {"capacity": self.allocator.capacity, "used": self.allocator.used,
                                 "objects": len(self.objects), "spilled_bytes": self.spilled_bytes,
                                 "spilled": self.spill_count, "restored": self.restore_count},
                "available": avail, "session_dir": self.session_dir, "pid": os.getpid(),
                "capacity": self.allocator.capacity, "num_workers": len(self.workers),
                "demand": self.scheduler.demand(), "node_ip": self.opts.get("node_ip") or "127.0.0.1",
                "tcp_address": self.tcp_address, "unix_address": self.address, "boot_id": boot_id(),
                "transfer_address": self.transfer_address,
                "head": self.opts.get("head", True), "actors": sum(1 for a in self.actors.values()
                                                                  if a.get("state") != "DEAD")}


WORKER_MODULES = ("swarm.core.worker_main", "swarm.core.actor_host", "swarm.core.submitter",
                  "swarm.core.actor_submitter")


class LatencyHistogram:
    """Cumulative counts of how long lease requests waited for a worker (Prometheus-style buckets)."""

    BOUNDS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0)

    def __init__(self) -> None:
        self.counts = [0] * (len(self.BOUNDS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.sum += seconds
        for i, bound in enumerate(self.BOUNDS):
            if seconds <= bound:
                self.counts[i] += 1
                return
        self.counts[-1] += 1

    def snapshot(self) -> dict:
        """{"bounds": [...], "counts": per bucket (last: above every bound), "sum": s, "count": n}"""
        return {"bounds": list(self.BOUNDS), "counts": list(self.counts), "sum": self.sum,
                "count": sum(self.counts)}


def boot_id() -> str:
    """Identifies this machine's current boot: two processes with the same one share /dev/shm."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return socket.gethostname()


def main() -> None:
    opts = json.loads(sys.stdin.readline())
    # workers import what the driver can import (its script's directory first, as Ray does)
    for p in reversed(opts.get("sys_path") or []):
        if p not in sys.path:
            sys.path.insert(0, p)
    log_path = os.path.join(opts["session_dir"], "logs", "node_manager.log")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    logging.basicConfig(filename=log_path, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with open(os.path.join(opts["session_dir"], "node_manager.pid"), "w") as f:
        f.write(str(os.getpid()))   # so a session left by a SIGKILLed node manager can be recognised
    try:
        nm = NodeManager(opts)
        nm.start()
    except SwarmError as e:   # a wrong setting (e.g. an unreachable --storage): said in one line
        sys.stdout.write(f"ERROR {e}\n")
        sys.stdout.flush()
        sys.exit(1)
    # Tell the parent we are ready, then stop writing to its pipe.
    sys.stdout.write(f"READY {nm.tcp_address or nm.address}\n")
    sys.stdout.flush()
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    nm.run()


if __name__ == "__main__":
    main()
