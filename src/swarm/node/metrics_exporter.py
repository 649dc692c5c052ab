"""One node's Prometheus ``/metrics``, served by a small process next to its node manager.

    Prometheus ──GET /metrics──▶ exporter process (``swarm start --metrics-export-port PORT``)
                                  HTTP thread ─▶ NodeCollector.collect()
                                                  └─ NodeManagerLink: CLUSTER_INFO ──unix socket──▶
                                                     node manager ──▶ this node's figures
                                  main thread: watches the node manager's pid, exits when it is gone

The counterpart of Ray's per-node metrics agent port (``ray start --metrics-export-port``): a Prometheus
server can scrape every node directly instead of going through the head. The exporter is not a driver
(it never calls ``swarm.init``): it holds one authenticated connection to its node manager and asks for
CLUSTER_INFO on each scrape, so it stays small (27 MB RSS measured, mostly the interpreter and imports).

What it exports is this node's part of the head dashboard's ``/metrics``, under the same names and
label names (``NodeId``), so dashboards and alerts work against either: the object store, the workers,
logical resources, CPU and memory of the machine, and the ``swarm_scheduling_latency_seconds``
histogram; plus figures only a node has: leased and actor workers, pending lease requests, the node
manager's RSS, spill and restore counts, and ``swarm_node_manager_up``. The store, worker and resource
figures are read live from the node manager at scrape time; the rest comes from the load report the
node sends with its heartbeats (as the head sees it, so at most a couple of heartbeats old), and the
machine's CPU, memory and the node manager's RSS are measured here when that report is missing.

User metrics (``swarm.util.metrics``) are on the head's ``/metrics`` only: they live in the cluster's
KV on the head, not on any node.

The endpoint is not authenticated (as Ray's and every Prometheus exporter): it binds to loopback unless
``--metrics-export-host`` says otherwise, and says nothing about user data (counts, bytes, node ids).
"""

from __future__ import annotations

import argparse
import errno
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Iterator

import psutil

log = logging.getLogger(__name__)

MODULE = "swarm.node.metrics_exporter"
INSTALL_HINT = "pip install 'swarm[dashboard]'"
SCRAPE_TIMEOUT_S = 5.0        # a node manager that does not answer in time makes the scrape say "down"
WATCH_INTERVAL_S = 0.5        # how often the exporter checks that its node manager still runs

# (metric, help, key in the node's figures) for this node's gauges; the first eight are the dashboard's
GAUGES = (
    ("swarm_object_store_used_bytes", "Bytes used in the node's shared-memory object store", "store_used"),
    ("swarm_object_store_capacity_bytes", "Capacity of the node's object store", "store_capacity"),
    ("swarm_object_store_spilled_bytes", "Bytes the node's object store spilled to disk", "spilled_bytes"),
    ("swarm_object_store_objects", "Objects in the node's object store", "store_objects"),
    ("swarm_workers", "Worker processes of the node", "workers"),
    ("swarm_node_cpu_percent", "CPU use of the node's machine (percent of all cores)", "cpu_percent"),
    ("swarm_node_mem_used_bytes", "Memory used on the node's machine", "mem_used"),
    ("swarm_node_mem_total_bytes", "Memory of the node's machine", "mem_total"),
    ("swarm_workers_leased", "Workers of the node leased to a task or an actor", "workers_leased"),
    ("swarm_workers_actors", "Workers of the node hosting an actor", "workers_actors"),
    ("swarm_pending_leases", "Lease requests waiting at the node manager for resources or a worker",
     "pending_leases"),
    ("swarm_node_manager_rss_bytes", "Resident memory of the node manager process", "node_manager_rss"),
)
COUNTERS = (
    ("swarm_object_store_spills", "Objects the node's store spilled to disk since it started",
     "spilled_objects"),
    ("swarm_object_store_restores", "Spilled objects the node's store read back since it started",
     "restored_objects"),
)


class ExporterStartError(RuntimeError):
    """The exporter process could not start; the message says why."""


# -- the node's figures (pure) ----------------------------------------------------------------------
def node_figures(info: dict, measure: Callable[[int | None], dict] | None = None) -> dict:
    """This node's figures from its node manager's CLUSTER_INFO reply.

    Live fields of the reply win for the store and workers; the node's own load report (its entry in
    the cluster view) gives the rest; ``measure(node manager pid)`` fills what is still missing (a node
    before its first heartbeat, or cut off from the head)."""
    entry: dict = next((n for n in info.get("nodes") or () if n.get("node_id") == info.get("node_id")), {})
    figures: dict[str, Any] = dict(entry.get("stats") or {})
    store = info.get("object_store") or {}
    live = {"store_used": store.get("used"), "store_capacity": store.get("capacity", info.get("capacity")),
            "store_objects": store.get("objects"), "spilled_bytes": store.get("spilled_bytes"),
            "spilled_objects": store.get("spilled"), "restored_objects": store.get("restored"),
            "workers": info.get("num_workers")}
    figures.update({k: v for k, v in live.items() if v is not None})
    leases = info.get("leases")
    if leases is not None:
        figures.setdefault("workers_leased", len(leases))
        figures.setdefault("workers_actors", sum(1 for lease in leases if lease.get("actor")))
    if info.get("demand") is not None:
        figures.setdefault("pending_leases", len(info["demand"]))
    if measure is not None and any(figures.get(k) is None for k in
                                   ("cpu_percent", "mem_used", "mem_total", "node_manager_rss")):
        for k, v in measure(info.get("pid")).items():
            if figures.get(k) is None:
                figures[k] = v
    figures["resources_total"] = {k: v for k, v in (info.get("total") or entry.get("total") or {}).items()
                                  if k != "object_store_memory" and "_group_" not in k}
    available = info.get("available") or entry.get("available") or {}
    figures["resources_used"] = {k: max(0.0, t - available.get(k, t))
                                 for k, t in figures["resources_total"].items()}
    return figures


def measure_here(nm_pid: int | None) -> dict:
    """The machine's CPU and memory, and the node manager's RSS, measured by this process."""
    vm = psutil.virtual_memory()
    out: dict[str, Any] = {"cpu_percent": psutil.cpu_percent(interval=None), "mem_total": vm.total,
                           "mem_used": vm.total - vm.available}
    if nm_pid:
        try:
            out["node_manager_rss"] = psutil.Process(nm_pid).memory_info().rss
        except psutil.Error:
            pass
    return out


# -- the collector ----------------------------------------------------------------------------------
class NodeCollector:
    """A prometheus_client collector: one CLUSTER_INFO per scrape, this node's families out."""

    def __init__(self, fetch: Callable[[], dict], node_id: str | None = None,
                 measure: Callable[[int | None], dict] | None = measure_here) -> None:
        self.fetch = fetch
        self.node_id = node_id      # labels the "down" sample when the node manager does not answer
        self.measure = measure

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        up = GaugeMetricFamily("swarm_node_manager_up", "1 if the node manager answered this scrape",
                               labels=["NodeId"])
        try:
            info = self.fetch()
        except Exception as e:   # the scrape still answers: "down" is what an alert wants to see
            log.warning("the node manager did not answer: %r", e)
            up.add_metric([self.node_id or ""], 0)
            yield up
            return
        node = self.node_id = info["node_id"]
        up.add_metric([node], 1)
        yield up
        figures = node_figures(info, self.measure)
        for metric, doc, key in GAUGES:
            fam = GaugeMetricFamily(metric, doc, labels=["NodeId"])
            if isinstance(figures.get(key), (int, float)):
                fam.add_metric([node], figures[key])
            yield fam
        for metric, doc, key in COUNTERS:
            counter = CounterMetricFamily(metric, doc, labels=["NodeId"])
            if isinstance(figures.get(key), (int, float)):
                counter.add_metric([node], figures[key])
            yield counter

        total = GaugeMetricFamily("swarm_resources_total", "Logical resources of the node",
                                  labels=["NodeId", "Resource"])
        used = GaugeMetricFamily("swarm_resources_used", "Logical resources held by leases on the node",
                                 labels=["NodeId", "Resource"])
        for res, amount in sorted(figures["resources_total"].items()):
            total.add_metric([node, res], amount)
            used.add_metric([node, res], figures["resources_used"][res])
        yield total
        yield used

        latency = HistogramMetricFamily("swarm_scheduling_latency_seconds",
                                        "How long lease requests waited at the node manager for a worker",
                                        labels=["NodeId"])
        h = figures.get("lease_latency")
        if isinstance(h, dict) and h.get("bounds"):
            # the node counts per bucket; Prometheus buckets are cumulative ("at most this long")
            acc, buckets = 0, []
            for bound, n in zip(list(h["bounds"]) + [float("inf")], h["counts"], strict=True):
                acc += n
                buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), acc))
            latency.add_metric([node], buckets, h.get("sum", 0.0))
        yield latency


# -- the node manager connection --------------------------------------------------------------------
class NodeManagerLink:
    """One authenticated connection to the node manager, reused across scrapes (one at a time)."""

    def __init__(self, address: str, token: bytes, timeout: float = SCRAPE_TIMEOUT_S) -> None:
        self.address = address
        self.token = token
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._req_id = 0

    def cluster_info(self) -> dict:
        with self._lock:
            try:
                return self._ask()
            except (OSError, ValueError):
                self._close()   # a stale connection (node manager restarted?): one fresh try
                return self._ask()

    def _ask(self) -> dict:
        from swarm.core import connection, protocol
        if self._sock is None:
            self._sock = connection.connect(self.address, self.token, timeout=self.timeout)
            self._sock.settimeout(self.timeout)
        self._req_id += 1
        self._sock.sendall(protocol.encode([protocol.CLUSTER_INFO, self._req_id]))
        while True:   # skip anything that is not our answer
            (size,) = protocol.HEADER.unpack(self._recv(4))
            msg = protocol.decode(self._recv(size))
            if msg[0] == protocol.CLUSTER_INFO_REPLY and msg[1] == self._req_id:
                return msg[2]

    def _recv(self, n: int) -> bytes:
        assert self._sock is not None
        buf = bytearray()
        while len(buf) < n:
            chunk = self._sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError(f"the node manager at {self.address} closed the connection")
            buf += chunk
        return bytes(buf)

    def _close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def close(self) -> None:
        with self._lock:
            self._close()


# -- the exporter process ---------------------------------------------------------------------------
def _make_server(host: str, port: int, registry: Any) -> Any:
    """A threaded WSGI server for the registry (ours, not prometheus_client's: its thread is a daemon
    that nobody stops, and older versions do not return the server, so port 0 could not be told)."""
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from prometheus_client import make_wsgi_app

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True    # a scrape in flight does not hold the exit up
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:   # one line per scrape is noise
            pass

    return make_server(host, port, make_wsgi_app(registry), Server, handler_class=QuietHandler)


def _wait_gone(proc: psutil.Process, timeout: float) -> bool:
    """Exited within ``timeout``: gone, or a zombie (not our child, so reaping it is not ours to do)."""
    deadline = time.monotonic() + timeout
    while _alive(proc):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.split("\n")[0])
    p.add_argument("--address", required=True, help="the node manager's address (unix:NAME or tcp:HOST:PORT)")
    p.add_argument("--token-file", help="file holding the cluster token (else SWARM_TOKEN)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve /metrics on (default loopback)")
    p.add_argument("--port", type=int, default=0, help="port to serve /metrics on (0: any free port)")
    ns = p.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def fail(message: str) -> int:   # the one line `swarm start` shows
        print(f"ERROR {message}", flush=True)
        return 1

    if not 0 <= ns.port <= 65535:
        return fail(f"--metrics-export-port {ns.port} is not a port: pass 1-65535, or 0 for any free port")
    from swarm.node import discovery
    try:
        token = discovery.read_token(ns.token_file)
    except OSError as e:
        return fail(f"cannot read the cluster token: {e}")
    if not token:
        return fail("no cluster token: pass --token-file or set SWARM_TOKEN")
    link = NodeManagerLink(ns.address, token.encode())
    try:
        first = link.cluster_info()
    except Exception as e:
        return fail(f"cannot reach the node manager at {ns.address}: {e}")
    try:
        node_manager = psutil.Process(first["pid"])
    except psutil.Error:
        link.close()
        return fail(f"the node manager at {ns.address} exited as the exporter started")

    from prometheus_client import CollectorRegistry
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(link.cluster_info, first["node_id"]))   # type: ignore[arg-type]
    try:
        server = _make_server(ns.host, ns.port, registry)
    except OSError as e:
        link.close()
        why = "is already in use" if e.errno == errno.EADDRINUSE else f"cannot be used ({e.strerror})"
        return fail(f"port {ns.port} on {ns.host} {why}: pass another --metrics-export-port "
                    f"(0 picks a free one)")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, name="metrics-http")
    thread.start()
    host = f"[{ns.host}]" if ":" in ns.host else ns.host
    print(f"READY http://{host}:{server.server_port}/metrics", flush=True)
    log.info("serving node %s's metrics on %s:%d", first["node_id"], ns.host, server.server_port)
    try:
        while not stop.wait(WATCH_INTERVAL_S):
            if not _alive(node_manager):
                log.info("the node manager (pid %d) is gone: exiting", node_manager.pid)
                break
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
        link.close()
    return 0


# -- starting and stopping it (for `swarm start` / `swarm stop`) ------------------------------------
def start_exporter(address: str, *, host: str = "127.0.0.1", port: int = 0, token_file: str | None = None,
                   token: str | None = None, log_file: str | None = None,
                   timeout: float = 30.0) -> tuple[subprocess.Popen, str]:
    """Start the exporter of the node manager at ``address``; returns (process, URL) once it serves.
    Raises ExporterStartError saying why when it cannot (port taken, no prometheus_client, ...)."""
    import importlib.util
    if importlib.util.find_spec("prometheus_client") is None:
        raise ExporterStartError(f"the metrics exporter needs prometheus_client: {INSTALL_HINT}")
    from swarm.node.launcher import child_env, start_service
    env = child_env()
    cmd = ["--address", address, "--host", host, "--port", str(port)]
    if token_file:
        cmd += ["--token-file", token_file]
    elif token:
        env["SWARM_TOKEN"] = token   # the environment of a process is readable only by its user
    proc, line = start_service(MODULE, cmd, env=env, log_file=log_file, timeout=timeout)
    if line.startswith("READY "):
        return proc, line.split(maxsplit=1)[1].strip()
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    if line.startswith("ERROR "):
        raise ExporterStartError(line[6:].strip())
    raise ExporterStartError(f"it did not start within {timeout:.0f} s" if not line else
                             f"it failed to start: {line}" + (f" (see {log_file})" if log_file else ""))


def stop_exporter_pid(pid: int, grace: float = 10.0) -> bool:
    """Stop an exporter another process started (``swarm stop``): only if that pid still is one."""
    try:
        proc = psutil.Process(pid)
        if MODULE not in " ".join(proc.cmdline()):
            return False   # the pid was reused by something else
        proc.terminate()
    except psutil.Error:
        return False
    if not _wait_gone(proc, grace):
        try:
            proc.kill()
        except psutil.Error:
            pass
        _wait_gone(proc, 5)
    return True


if __name__ == "__main__":
    sys.exit(main())
