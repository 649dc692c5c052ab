"""The dashboard process: ``python -m swarm.dashboard --address HEAD [--host H] [--port P] [--token-file F]``.

    main thread: bind the port ─▶ swarm.init(address=HEAD) (a light driver) ─▶ print "READY <url>"
                 ─▶ uvicorn serving create_app(...) until should_exit
    history thread: a cluster sample every 2 s (history.py)
    watchdog thread: the node connection closed (the cluster is gone) ─▶ should_exit
    SIGTERM / SIGINT ─▶ should_exit;  then: jobs API shut down, threads joined, driver detached, exit

The parent (``swarm start --head`` or ``swarm.init(include_dashboard=True)``) reads one line from
our stdout: ``READY http://host:port`` or ``ERROR <why>``; after it, stdout and stderr go to the log
file. Exit codes: 0 stopped by a signal, 1 the cluster went away, 2 could not start.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import signal
import socket
import sys
import threading
from typing import Any

log = logging.getLogger("swarm.dashboard")

DEFAULT_PORT = 8265
WATCH_INTERVAL_S = 0.5


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m swarm.dashboard",
                                description="the swarm web dashboard and /metrics, for a running cluster")
    p.add_argument("--address", required=True, help="the cluster: HOST:PORT, auto, or unix:NAME")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default loopback; anything else requires the cluster token)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on (0: any free port)")
    p.add_argument("--any-port-if-taken", action="store_true",
                   help="if --port is in use, listen on a free port instead of failing")
    p.add_argument("--token-file",
                   help="file holding the cluster token (else SWARM_TOKEN, or the head's file here)")
    p.add_argument("--log-file", help="after start-up, write output here")
    p.add_argument("--cache-ttl-s", type=float, default=1.0,
                   help="reuse a read of the cluster this long (browsers poll every ~1.5 s; 0: never)")
    return p.parse_args(argv)


def _fail(message: str) -> int:
    print(f"ERROR {message}", flush=True)
    return 2


def bind(host: str, port: int, any_port_if_taken: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for attempt in (port, 0) if any_port_if_taken and port else (port,):
        # IPPROTO_TCP: asyncio sets TCP_NODELAY only on such sockets (else each response waits for
        # the client's delayed ACK)
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, attempt))
        except OSError as e:
            sock.close()
            if e.errno == errno.EADDRINUSE and attempt != 0 and any_port_if_taken:
                continue
            raise
        sock.listen(512)
        sock.setblocking(False)
        return sock
    raise AssertionError("unreachable")


def _server_class() -> type:
    import uvicorn

    class DashboardServer(uvicorn.Server):
        """uvicorn with the process's signals left to ``main`` (it also stops on a lost cluster)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Any:
            yield

        def install_signal_handlers(self) -> None:   # uvicorn before 0.29
            pass
    return DashboardServer


def _watch_cluster(server: Any, stop: threading.Event, lost: list) -> None:
    from swarm import api
    while not stop.wait(WATCH_INTERVAL_S):
        w = api._worker
        if w is None or w.node_conn.closed:
            log.info("the cluster connection is gone: the dashboard stops")
            lost.append(True)
            server.should_exit = True
            return


def main(argv: list[str] | None = None) -> int:
    ns = _parse(argv)
    try:
        import prometheus_client  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        return _fail(f"the dashboard needs {e.name}: pip install 'swarm[dashboard]'")
    try:
        sock = bind(ns.host, ns.port, ns.any_port_if_taken)
    except OSError as e:
        return _fail(f"cannot listen on {ns.host}:{ns.port}: {e.strerror or e}; pick another port "
                     f"(--dashboard-port) or stop what uses it")

    import swarm
    from swarm.dashboard import auth
    from swarm.dashboard.app import create_app
    from swarm.dashboard.data import ClusterData
    from swarm.dashboard.history import ClusterHistory, summarize_nodes
    from swarm.exceptions import SwarmError
    from swarm.node import discovery

    try:
        _, token = discovery.resolve(ns.address, ns.token_file)
        swarm.init(address=ns.address, log_to_driver=False, _token_file=ns.token_file)
    except (ConnectionError, OSError, ValueError, SwarmError) as e:
        sock.close()
        return _fail(f"cannot attach to the cluster at {ns.address}: {e}")

    data = ClusterData(ttl_s=ns.cache_ttl_s)
    history = ClusterHistory(lambda: summarize_nodes(data.nodes()))
    app = create_app(data=data, history=history, token=token or None, open_reads=auth.is_loopback(ns.host))
    import uvicorn
    # log_config=None: keep our logging setup; lifespan "on": the app's shutdown stops the jobs API
    config = uvicorn.Config(app, lifespan="on", log_level="warning", log_config=None, access_log=False,
                            timeout_graceful_shutdown=5)
    server = _server_class()(config)

    def on_signal(signum: int, _frame: Any) -> None:
        server.should_exit = True
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    host, port = sock.getsockname()[:2]
    url_host = f"[{host}]" if ":" in host else host
    print(f"READY http://{url_host}:{port}", flush=True)
    if ns.log_file:   # from here on, the parent no longer reads our output
        fd = os.open(ns.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.info("dashboard serving http://%s:%s for the cluster at %s", url_host, port, ns.address)

    stop = threading.Event()
    lost: list = []
    watchdog = threading.Thread(target=_watch_cluster, args=(server, stop, lost), name="dashboard-watchdog",
                                daemon=True)
    history.start()
    watchdog.start()
    try:
        server.run(sockets=[sock])
    finally:
        stop.set()
        watchdog.join(5)
        history.stop()
        sock.close()
        swarm.shutdown()
    log.info("dashboard stopped")
    return 1 if lost else 0
