"""The ``swarm`` command: start and stop nodes, look at a running cluster, run the benchmarks."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
from typing import Any


def _start(ns: argparse.Namespace) -> int:
    from swarm.node import discovery, launcher

    if not ns.head and not ns.address:
        print("swarm start: pass --head to start a cluster, or --address HEAD:PORT to join one",
              file=sys.stderr)
        return 2
    if ns.metrics_export_port is not None and not 0 <= ns.metrics_export_port <= 65535:
        print(f"swarm start: --metrics-export-port {ns.metrics_export_port} is not a port: pass 1-65535, "
              f"or 0 for any free port", file=sys.stderr)
        return 2
    existing = [n for n in discovery.live_nodes() if n.get("head")]
    head_address = None
    if ns.address:
        from swarm.core import connection
        from swarm.exceptions import SwarmError
        try:
            head_address, token = discovery.resolve(ns.address, ns.token_file)
            connection.connect(head_address, token.encode()).close()   # fail here, with a clear error
        except (ConnectionError, OSError, ValueError, SwarmError) as e:
            print(f"swarm start: cannot join {ns.address}: {e}", file=sys.stderr)
            return 1
        token_file = ns.token_file or os.environ.get("SWARM_TOKEN_FILE") or next(
            (n.get("token_file") for n in existing if n.get("tcp_address") == head_address), None)
    elif existing:
        print(f"a swarm head node is already running on this machine at {existing[0]['tcp_address']} "
              f"(pid {existing[0]['pid']}); stop it first with `swarm stop`", file=sys.stderr)
        return 1
    else:
        token = discovery.read_token(ns.token_file) or secrets.token_hex(32)
        given = os.environ.get("SWARM_TOKEN") or ns.token_file or os.environ.get("SWARM_TOKEN_FILE")
        if ns.storage and not given:
            # a head restarted on its storage keeps the cluster's token, so its nodes can come back
            try:
                token = discovery.read_token(discovery.default_token_file()) or token
            except OSError:
                pass
        token_file = ns.token_file or discovery.write_token_file(token)
    if ns.storage:
        if head_address is not None:
            print("swarm start: --storage is for the head node (--head)", file=sys.stderr)
            return 2
        from swarm.control.storage import open_storage
        from swarm.exceptions import SwarmError
        try:   # say what is wrong here rather than from a node manager that failed to start
            storage = open_storage(ns.storage)
            storage.check_token(token.encode())
            storage.close()
        except SwarmError as e:
            print(f"swarm start: {e}", file=sys.stderr)
            return 1
    node_id = os.urandom(8).hex()
    session_dir = launcher.new_session_dir()
    resources = json.loads(ns.resources) if ns.resources else {}
    if not isinstance(resources, dict):
        print("--resources must be a JSON object, e.g. '{\"accel\": 2}'", file=sys.stderr)
        return 2
    node_file = os.path.join(discovery.nodes_dir(), f"{node_id}.json")
    opts = {"session_dir": session_dir, "token": token.encode().hex(), "node_id": node_id,
            "address": f"unix:swarm-{node_id}-nm", "num_cpus": ns.num_cpus or os.cpu_count() or 1,
            "num_gpus": ns.num_gpus or 0, "resources": resources, "head": head_address is None,
            "head_address": head_address,
            "object_store_memory": ns.object_store_memory or launcher.default_object_store_memory(),
            "exit_with_driver": False, "node_ip": ns.node_ip_address,
            "tcp_port": ns.port if ns.port is not None else (6380 if head_address is None else 0),
            "node_file": node_file, "sys_path": [os.getcwd()], "storage": ns.storage}
    try:
        proc = launcher.start_node_manager(opts)
    except Exception as e:
        print(f"swarm start: {e}", file=sys.stderr)
        return 1
    tcp = proc.ready_address  # type: ignore[attr-defined]
    node_record = {"pid": proc.pid, "node_id": node_id, "head": head_address is None,
                   "tcp_address": tcp, "head_address": head_address,
                   "unix_address": opts["address"], "token_file": token_file,
                   "session_dir": session_dir}
    discovery.write_node_file(node_record)
    dashboard_url = None
    if head_address is None and ns.include_dashboard:
        from swarm.dashboard import launch as dashboard_launch
        try:   # recorded in the node file: `swarm stop` stops it, `swarm dashboard` prints its URL
            dashboard, dashboard_url = dashboard_launch.start_dashboard(
                tcp, host=ns.dashboard_host, port=ns.dashboard_port, token_file=token_file,
                log_file=os.path.join(session_dir, "logs", "dashboard.log"))
            node_record.update(dashboard_pid=dashboard.pid, dashboard_url=dashboard_url)
            discovery.write_node_file(node_record)
        except dashboard_launch.DashboardStartError as e:
            print(f"swarm start: the dashboard did not start ({e}); the cluster runs without it")
    metrics_url = None
    if ns.metrics_export_port is not None:
        from swarm.node import metrics_exporter
        try:   # recorded in the node file: `swarm stop` stops it (it also exits with its node manager)
            exporter, metrics_url = metrics_exporter.start_exporter(
                opts["address"], host=ns.metrics_export_host, port=ns.metrics_export_port,
                token_file=token_file, token=token, log_file=os.path.join(session_dir, "logs",
                                                                          "metrics_exporter.log"))
            node_record.update(metrics_exporter_pid=exporter.pid, metrics_url=metrics_url)
            discovery.write_node_file(node_record)
        except metrics_exporter.ExporterStartError as e:
            print(f"swarm start: the metrics exporter did not start: {e}; the node runs without it",
                  file=sys.stderr)
    hostport = tcp[4:]
    if head_address is not None:
        print(f"Started a swarm node at {hostport} (pid {proc.pid}), joined the cluster at "
              f"{head_address[4:]}.")
        if metrics_url:
            print(f"  metrics: {metrics_url}")
        return proc.wait() if ns.block else 0
    print(f"Started a swarm head node at {hostport} (pid {proc.pid}).")
    print(f"  cluster token: {token_file} (readable only by you)")
    print(f"  connect from Python on this machine: swarm.init(address='auto') or "
          f"swarm.init(address='{hostport}')")
    if dashboard_url:
        print(f"  dashboard: {dashboard_url}")
    if metrics_url:
        print(f"  metrics: {metrics_url}")
    print("  status: swarm status      stop: swarm stop")
    if ns.block:
        def forward(sig: int, _frame: Any) -> None:
            proc.send_signal(signal.SIGTERM)
        signal.signal(signal.SIGINT, forward)
        signal.signal(signal.SIGTERM, forward)
        return proc.wait()
    return 0


def _stop(ns: argparse.Namespace) -> int:
    import psutil

    from swarm.node import discovery

    nodes = discovery.live_nodes()
    if not nodes:
        print("no swarm node is running on this machine")
        return 0
    from swarm.dashboard import launch as dashboard_launch
    for n in nodes:   # first: a dashboard is a driver of its cluster
        if n.get("dashboard_pid"):
            dashboard_launch.stop_dashboard_pid(n["dashboard_pid"], ns.grace)
        if n.get("metrics_exporter_pid"):
            from swarm.node import metrics_exporter
            metrics_exporter.stop_exporter_pid(n["metrics_exporter_pid"], ns.grace)
    procs = []
    for n in nodes:
        try:
            p = psutil.Process(n["pid"])
            p.send_signal(signal.SIGTERM)
            procs.append(p)
        except psutil.Error:
            pass
    gone, alive = psutil.wait_procs(procs, timeout=ns.grace)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)
    for n in nodes:
        try:
            os.unlink(n["file"])
        except OSError:
            pass
    print(f"stopped {len(nodes)} swarm node(s)")
    return 0


def _query(address: str, token_file: str | None, msg_kind: int) -> dict:
    from swarm.core import connection, protocol
    from swarm.node import discovery

    wire, token = discovery.resolve(address, token_file)
    sock = connection.connect(wire, token.encode())
    try:
        sock.sendall(protocol.encode([msg_kind, 0]))
        (size,) = protocol.HEADER.unpack(connection._recv_exact(sock, 4))
        return protocol.decode(connection._recv_exact(sock, size))[2]
    finally:
        sock.close()


def _status(ns: argparse.Namespace) -> int:
    from swarm.core import protocol
    from swarm.exceptions import SwarmError
    try:
        info = _query(ns.address, ns.token_file, protocol.CLUSTER_INFO)
    except (ConnectionError, OSError, SwarmError) as e:
        print(f"swarm status: {e}", file=sys.stderr)
        return 1
    nodes = info.get("nodes") or [dict(info, alive=True, is_head=True)]
    alive = [n for n in nodes if n.get("alive", True)]
    print(f"swarm cluster: {len(alive)} node(s) alive" + (f", {len(nodes) - len(alive)} dead" if
                                                         len(alive) < len(nodes) else ""))
    totals: dict[str, list[float]] = {}
    for n in alive:
        for k, v in n["total"].items():
            if k == "object_store_memory" or "_group_" in k:
                continue
            t = totals.setdefault(k, [0.0, 0.0])
            t[0] += v - n["available"].get(k, 0.0)
            t[1] += v
    for k in sorted(totals):
        print(f"  {k:>10}: {totals[k][0]:g}/{totals[k][1]:g} used")
    for n in nodes:
        role = "head" if n.get("is_head") else "node"
        state = "alive" if n.get("alive", True) else "DEAD"
        res = ", ".join(f"{v:g} {k}" for k, v in sorted(n["total"].items())
                        if k != "object_store_memory" and "_group_" not in k)
        print(f"  {role} {n['node_id']} {n.get('address', '')} [{state}]: {res}")
    store = info.get("object_store", {})
    if store:
        print(f"  object store: {store['used'] / 2**20:.1f}/{store['capacity'] / 2**20:.0f} MiB used, "
              f"{store['objects']} objects, {store['spilled_bytes'] / 2**20:.1f} MiB spilled")
    print(f"  workers: {info['num_workers']}, actors: {info.get('actors', 0)}, "
          f"queued lease requests: {len(info.get('demand', []))}")
    from swarm.dashboard import launch as dashboard_launch
    try:
        print(f"  dashboard: {dashboard_launch.running_dashboard_url(ns.address)}")
    except LookupError:
        pass   # none on this machine for that cluster (or started with --no-dashboard)
    return 0


def _memory(ns: argparse.Namespace) -> int:
    from swarm.core import protocol
    from swarm.exceptions import SwarmError
    try:
        objects = _query(ns.address, ns.token_file, protocol.LIST_OBJECTS)
    except (ConnectionError, OSError, SwarmError) as e:
        print(f"swarm memory: {e}", file=sys.stderr)
        return 1
    print(f"{'object id':42} {'size':>12} {'owner':18} {'pins':>5} state")
    for o in objects:
        state = "spilled" if o["spilled"] else ("referenced" if o["referenced"] else "pinned by readers")
        print(f"{o['object_id']:42} {o['size']:>12,} {o['owner']:18} {o['pins']:>5} {state}")
    print(f"{len(objects)} objects in shared memory, {sum(o['size'] for o in objects) / 2**20:.1f} MiB")
    return 0


def _dashboard(ns: argparse.Namespace) -> int:
    from swarm.dashboard import launch as dashboard_launch
    try:
        print(dashboard_launch.running_dashboard_url(ns.address))
    except LookupError as e:
        print(f"swarm dashboard: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="swarm", description="swarm: distributed execution for Python")
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start a node in the background (--head for a new cluster)")
    start.add_argument("--head", action="store_true", help="start a new cluster on this machine")
    start.add_argument("--address", help="HEAD_HOST:PORT of the cluster to join")
    start.add_argument("--port", type=int, help="port to listen on (head default 6380; others: any free)")
    start.add_argument("--num-cpus", type=float)
    start.add_argument("--num-gpus", type=float)
    start.add_argument("--resources", help="custom resources as JSON, e.g. '{\"accel\": 2}'")
    start.add_argument("--node-ip-address", default="127.0.0.1", help="address to bind and advertise")
    start.add_argument("--object-store-memory", type=int)
    start.add_argument("--token-file", help="file holding the cluster token (else SWARM_TOKEN)")
    start.add_argument("--block", action="store_true", help="stay in the foreground")
    start.add_argument("--include-dashboard", dest="include_dashboard", action="store_true", default=True,
                       help="head only: serve the web dashboard and /metrics (the default)")
    start.add_argument("--no-dashboard", dest="include_dashboard", action="store_false",
                       help="head only: no dashboard")
    start.add_argument("--dashboard-host", default="127.0.0.1",
                       help="address the dashboard listens on (default loopback; any other needs the token)")
    start.add_argument("--dashboard-port", type=int, default=8265, help="dashboard port (default 8265)")
    start.add_argument("--metrics-export-port", type=int,
                       help="serve this node's Prometheus /metrics on this port (0: any free port; default: "
                            "off); if the port is taken the node starts without it and says so")
    start.add_argument("--metrics-export-host", default="127.0.0.1",
                       help="address the node's /metrics listens on (default loopback)")
    start.add_argument("--storage", default=os.environ.get("SWARM_STORAGE"),
                       help="head only: keep the control store in Redis (redis://HOST:PORT/DB) so a "
                            "restarted head takes the cluster back; default: in memory")
    stop = sub.add_parser("stop", help="stop every swarm node started on this machine")
    stop.add_argument("--grace", type=float, default=10.0, help="seconds to wait before SIGKILL")
    for name, text in (("status", "nodes, resources used/total, actors"),
                       ("memory", "objects in the store: size, owner, pins, spilled")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--address", default=os.environ.get("SWARM_ADDRESS", "auto"))
        p.add_argument("--token-file")
    bench = sub.add_parser("microbenchmark", help="run the microbenchmark suite on a local cluster",
                           add_help=False)
    bench.add_argument("args", nargs=argparse.REMAINDER)
    sub.add_parser("version", help="print the version")
    dash = sub.add_parser("dashboard", help="print the URL of the running cluster's web dashboard")
    dash.add_argument("--address", default=os.environ.get("SWARM_ADDRESS", "auto"),
                      help="the head's HOST:PORT (default: the cluster on this machine)")
    from swarm import _cli_state  # list / summary / get / logs
    _cli_state.add_parsers(sub)
    from swarm import _cli_debug  # debug: attach to a task paused at breakpoint()
    _cli_debug.add_parser(sub)
    from swarm import _cli_job  # job submit / status / logs / stop / list / delete
    _cli_job.register(sub)
    ns, rest = parser.parse_known_args(argv)
    if ns.command == "microbenchmark":
        from swarm import microbenchmark
        return microbenchmark.main(list(ns.args) + rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if ns.command == "version":
        import swarm
        print(swarm.__version__)
        return 0
    if ns.command in _cli_state.COMMANDS:
        return _cli_state.run(ns)
    if ns.command == "debug":
        return _cli_debug.main(ns)
    if ns.command == "job":
        return _cli_job.run(ns)
    handler = {"start": _start, "stop": _stop, "status": _status, "memory": _memory,
               "dashboard": _dashboard}[ns.command]
    return handler(ns)


if __name__ == "__main__":
    sys.exit(main())
