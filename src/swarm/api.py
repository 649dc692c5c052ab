"""The public API: ``init``, ``shutdown``, ``remote``, ``get``, ``wait``, ``put`` and cluster queries.

One global ``_worker`` per process: the driver's core worker after ``init()``, a worker's own core
worker inside tasks, or a ``LocalModeWorker`` with ``local_mode=True``.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import subprocess
import sys
import threading
from typing import Any, Sequence

from swarm.core import connection, core_worker, ids, protocol as P
from swarm.exceptions import SwarmError
from swarm.object_ref import ObjectRef
from swarm.remote_function import make_remote
from swarm.runtime_context import RuntimeContext

log = logging.getLogger("swarm")

_worker: Any = None
PRELOAD_CANDIDATES = ("numpy", "pandas", "torch")
_node_proc: subprocess.Popen | None = None
_dashboard_proc: subprocess.Popen | None = None
_init_lock = threading.RLock()
_atexit_registered = False


def _set_worker(w: Any) -> None:
    global _worker
    _worker = w


def is_initialized() -> bool:
    return _worker is not None


def _require_worker() -> Any:
    if _worker is None:
        raise SwarmError("swarm is not initialized: call swarm.init() first")
    return _worker


def _auto_init() -> Any:
    w = _worker
    if w is None:
        with _init_lock:
            if _worker is None:
                init()
        w = _worker
    return w


def init(address: str | None = None, *, num_cpus: float | None = None, num_gpus: float | None = None,
         resources: dict | None = None, object_store_memory: int | None = None,
         namespace: str | None = None, ignore_reinit_error: bool = False, log_to_driver: bool = True,
         local_mode: bool = False, include_dashboard: bool | None = None, dashboard_host: str = "127.0.0.1",
         dashboard_port: int | None = None, **kwargs: Any) -> RuntimeContext:
    """Start a local cluster (or, in local mode, run tasks in this process) and connect to it.
    ``include_dashboard=True`` also starts the web dashboard for it (port 8265, or a free one if that is
    taken; its URL: ``init(...).dashboard_url``)."""
    global _worker, _node_proc, _atexit_registered
    with _init_lock:
        if _worker is not None:
            if ignore_reinit_error:
                return RuntimeContext(_worker)
            raise RuntimeError("swarm.init() was already called in this process; call swarm.shutdown() "
                               "first, or pass ignore_reinit_error=True")
        address = address or os.environ.get("SWARM_ADDRESS") or None
        if address is not None:
            if local_mode:
                raise ValueError("local_mode=True runs everything in this process: it takes no address")
            _worker = _connect_cluster(address, log_to_driver, kwargs.get("_token_file"))
            _worker.namespace = namespace or "default"
            _init_job_env(kwargs.get("runtime_env"))
            if not _atexit_registered:
                atexit.register(shutdown)
                _atexit_registered = True
            return RuntimeContext(_worker)
        if num_cpus is None:
            num_cpus = os.cpu_count() or 1
        if num_cpus < 0 or (num_gpus or 0) < 0:
            raise ValueError("num_cpus and num_gpus must be non-negative")
        resources = dict(resources or {})
        for k in ("CPU", "GPU"):
            if k in resources:
                raise ValueError(f"pass num_{k.lower()}= instead of resources={{'{k}': ...}}")
        if local_mode:
            from swarm.core.local_mode import LocalModeWorker
            _worker = LocalModeWorker(num_cpus, resources)
            _worker.namespace = namespace or "default"
            return RuntimeContext(_worker)
        _worker = _start_local_cluster(num_cpus, num_gpus or 0, resources, object_store_memory,
                                       log_to_driver, kwargs)
        _worker.namespace = namespace or "default"
        _init_job_env(kwargs.get("runtime_env"))
        if not _atexit_registered:
            atexit.register(shutdown)
            _atexit_registered = True
        ctx = RuntimeContext(_worker)
        if include_dashboard:
            ctx.__dict__["dashboard_url"] = _start_dashboard(dashboard_host, dashboard_port)  # as Ray's
        return ctx


def _start_dashboard(host: str, port: int | None) -> str:
    """The dashboard of our local cluster (stopped by shutdown()); its URL."""
    global _dashboard_proc
    from swarm.dashboard import launch
    try:
        _dashboard_proc, url = launch.start_for_local_cluster(_worker, host, port)
    except BaseException:
        shutdown()
        raise
    log.info("swarm dashboard: %s", url)
    return url


def _init_job_env(runtime_env: Any) -> None:
    """The job's runtime_env (SWARM_RUNTIME_ENV from the job manager, ``runtime_env=``): every task and
    actor this driver starts runs in it."""
    from swarm import _runtime_env
    try:
        _runtime_env.init_job_env(runtime_env)
    except BaseException:
        shutdown()
        raise


def _start_local_cluster(num_cpus: float, num_gpus: float, resources: dict, object_store_memory: int | None,
                         log_to_driver: bool, extra: dict) -> Any:
    global _node_proc
    from swarm.node import launcher

    token = os.urandom(32).hex().encode()   # text: the `swarm` command reads it back (write_local_cluster)
    node_id = os.urandom(8).hex()
    session_dir = launcher.new_session_dir()
    nm_address = f"unix:swarm-{node_id}-nm"
    opts = {"session_dir": session_dir, "token": token.hex(), "node_id": node_id, "address": nm_address,
            "num_cpus": num_cpus, "num_gpus": num_gpus, "resources": resources,
            "object_store_memory": int(object_store_memory or launcher.default_object_store_memory()),
            "exit_with_driver": True, "keep_session_dir": bool(extra.get("_keep_session_dir")),
            "driver_pid": os.getpid(),
            "sys_path": [p or os.getcwd() for p in sys.path],
            # heavy libraries this driver already uses: workers import them while idle, so the first
            # task that needs one does not wait for it
            "preload": [m for m in PRELOAD_CANDIDATES if m in sys.modules]}
    for key in ("memory_usage_threshold", "memory_monitor_interval_s"):
        if "_" + key in extra:
            opts[key] = extra["_" + key]
    _node_proc = launcher.start_node_manager(opts)
    try:
        from swarm.node import discovery
        discovery.write_local_cluster(session_dir, node_id, nm_address, token, _node_proc.pid)
    except OSError as e:   # only `swarm list/logs` need it
        log.warning("could not record the local cluster for the swarm command: %s", e)
    worker_id = ids.new_worker_id()
    try:
        return _attach_driver(nm_address, token, worker_id, f"unix:swarm-{node_id}-{worker_id.hex()}",
                              log_to_driver)
    except BaseException:
        _node_proc.kill()
        _node_proc.wait()
        _node_proc = None
        raise


def _attach_driver(nm_address: str, token: bytes, worker_id: bytes, my_address: str,
                   log_to_driver: bool) -> Any:
    """Listen where peers will find this driver, register with the node, start its core worker."""
    from swarm.node import launcher

    listen_sock = connection.listen(my_address)
    if my_address.endswith(":0"):   # TCP: the port the system picked
        my_address = f"{my_address.rpartition(':')[0]}:{listen_sock.getsockname()[1]}"
    try:
        node_sock, arena_fd, info = launcher.connect_driver(nm_address, token, worker_id, my_address,
                                                            log_to_driver)
    except BaseException:
        listen_sock.close()
        raise
    w = core_worker.CoreWorker(mode="driver", worker_id=worker_id, node_sock=node_sock, arena_fd=arena_fd,
                               token=token, listen_sock=listen_sock, address=my_address, node_info=info,
                               log_to_driver=log_to_driver)
    w.start()
    core_worker.set_current(w)
    return w


def _connect_cluster(address: str, log_to_driver: bool, token_file: str | None) -> Any:
    """Attach this driver to a running node on this machine (found via its address)."""
    from swarm.core import protocol
    from swarm.node import discovery
    from swarm.node.node_manager import boot_id

    wire, token_str = discovery.resolve(address, token_file)
    token = token_str.encode()
    probe = connection.connect(wire, token)
    try:
        probe.sendall(protocol.encode([protocol.CLUSTER_INFO, 0]))
        (size,) = protocol.HEADER.unpack(connection._recv_exact(probe, 4))
        info = protocol.decode(connection._recv_exact(probe, size))[2]
    finally:
        probe.close()
    if info.get("boot_id") != boot_id():
        raise SwarmError(f"the node at {address} runs on another machine: a driver shares memory with the "
                         f"node it attaches to, so run it on a cluster node (start one there with "
                         f"`swarm start --address {address}`)")
    ip = info.get("node_ip") or "127.0.0.1"
    return _attach_driver(info["unix_address"], token, ids.new_worker_id(), f"tcp:{ip}:0", log_to_driver)


def shutdown() -> None:
    """Stop the local cluster: every worker, the node manager, shared memory and temp files."""
    global _worker, _node_proc, _dashboard_proc
    with _init_lock:
        w, _worker = _worker, None
        if w is None:
            return
        core_worker.set_current(None)
        if w.mode == "local":
            w.shutdown()
            return
        w.shutting_down = True
        dashboard, _dashboard_proc = _dashboard_proc, None
        if dashboard is not None:   # before the cluster: it is a driver of it
            from swarm.dashboard import launch
            launch.stop_dashboard(dashboard)
        proc, _node_proc = _node_proc, None
        if proc is not None:  # our own local cluster: stop it (an attached driver just leaves)
            try:
                w.node_conn.send([P.SHUTDOWN])
            except OSError:
                pass
        if proc is not None:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        w.shutdown()
        try:
            os.close(w.arena.fd)
        except OSError:
            pass


def remote(*args: Any, **kwargs: Any) -> Any:
    """``@remote`` or ``@remote(num_cpus=..., ...)`` on a function (a task) or a class (an actor)."""
    if len(args) == 1 and not kwargs and callable(args[0]):
        return make_remote(args[0], {})
    if args:
        raise TypeError("@remote takes either a function/class or only keyword options, "
                        "e.g. @swarm.remote(num_cpus=2)")
    return lambda target: make_remote(target, kwargs)


def _check_refs(refs: Any, what: str) -> tuple[list, bool]:
    if isinstance(refs, ObjectRef):
        return [refs], True
    if isinstance(refs, (list, tuple)):
        for i, r in enumerate(refs):
            if not isinstance(r, ObjectRef):
                raise TypeError(f"{what}() expects ObjectRefs, but element {i} of the list is a "
                                f"{type(r).__name__}: {r!r:.80}")
        return list(refs), False
    raise TypeError(f"{what}() expects an ObjectRef or a list of ObjectRefs, got {type(refs).__name__}: "
                    f"{refs!r:.80}")


def _warn_if_in_event_loop() -> None:
    asyncio = sys.modules.get("asyncio")   # no running loop can exist before asyncio is imported
    if asyncio is None:
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    log.warning("swarm.get() called inside a running asyncio event loop blocks the loop; "
                "use `await ref` (or asyncio.gather(*refs)) instead")


def get(object_refs: Any, *, timeout: float | None = None) -> Any:
    """The value(s) of ``object_refs``: blocks until ready; ``GetTimeoutError`` after ``timeout`` s."""
    refs, single = _check_refs(object_refs, "get")
    w = _require_worker()
    if timeout is not None and timeout < 0:
        raise ValueError("timeout must be >= 0 or None")
    _warn_if_in_event_loop()
    values = w.get(refs, timeout)
    return values[0] if single else values


def wait(object_refs: Sequence[ObjectRef], *, num_returns: int = 1, timeout: float | None = None,
         fetch_local: bool = True) -> tuple[list, list]:
    """(ready, not_ready): the first ``num_returns`` ready refs in the order given, and the rest."""
    if isinstance(object_refs, ObjectRef):
        raise TypeError("wait() expects a list of ObjectRefs, not a single ObjectRef: wait([ref])")
    refs, _ = _check_refs(object_refs, "wait")
    if len(set(refs)) != len(refs):
        raise ValueError("wait() got the same ObjectRef more than once")
    if not isinstance(num_returns, int) or num_returns < 1 and refs:
        raise ValueError(f"num_returns must be a positive int, got {num_returns!r}")
    if num_returns > len(refs):
        raise ValueError(f"num_returns ({num_returns}) exceeds the number of refs ({len(refs)})")
    if not refs:
        return [], []
    return _require_worker().wait(refs, num_returns, timeout, fetch_local)


def put(value: Any) -> ObjectRef:
    """Store ``value`` in the object store; returns its ObjectRef (large values are zero-copy to read)."""
    if isinstance(value, ObjectRef):
        raise TypeError("put() of an ObjectRef is not allowed: pass the ref itself around instead")
    return _auto_init().put(value)


def kill(actor: Any, *, no_restart: bool = True) -> None:
    """Kill an actor now (its process is SIGKILLed); pending and later calls raise ActorDiedError."""
    from swarm.actor import ActorHandle
    if not isinstance(actor, ActorHandle):
        raise TypeError(f"kill() expects an actor handle, got {type(actor).__name__}; to stop a task use "
                        f"swarm.cancel(ref)")
    w = _require_worker()
    if no_restart:
        with w._lock:
            w.actor_submitter.killed(actor._id, actor._info)
    w.node_conn.send([P.KILL_ACTOR, actor._id, "it was killed by swarm.kill()", bool(no_restart)])


def cancel(object_ref: ObjectRef, *, force: bool = False, recursive: bool = True) -> None:
    """Cancel the task that makes ``object_ref``: dropped if queued, interrupted (KeyboardInterrupt) if
    running, its worker killed with ``force=True``; ``get`` then raises TaskCancelledError."""
    if not isinstance(object_ref, ObjectRef):
        raise TypeError(f"cancel() expects an ObjectRef, got {type(object_ref).__name__}")
    w = _require_worker()
    if w.mode == "local":
        return
    w.cancel(object_ref._id, force, recursive)


def get_actor(name: str, namespace: str | None = None) -> Any:
    """The handle of the live actor called ``name`` (in ``namespace``, default: this job's)."""
    from swarm.actor import ActorHandle
    if not isinstance(name, str) or not name:
        raise ValueError("get_actor() needs the actor's name (a non-empty string)")
    w = _require_worker()
    ns = namespace or getattr(w, "namespace", "default")
    info = w.nm_call(lambda r: [P.GET_ACTOR, r, None, name, ns, False])[2]
    if info is None or info.get("state") == "DEAD":
        raise ValueError(f"no live actor named {name!r} in namespace {ns!r}"
                         + (f" (it died: {info.get('death_cause')})" if info else "")
                         + "; check the name and namespace (get_actor(name, namespace=...))")
    return ActorHandle(info["actor_id"], info, info["owner"], w)


def get_runtime_context() -> RuntimeContext:
    return RuntimeContext(_auto_init())


def _cluster_info() -> dict:
    w = _require_worker()
    if w.mode == "local":
        return w.cluster_info()
    from swarm.core import protocol as P
    return w.nm_call(lambda r: [P.CLUSTER_INFO, r])[2]


def _sum(nodes: list[dict], key: str) -> dict:
    out: dict[str, float] = {}
    for n in nodes:
        if n.get("alive", True):
            for k, v in n[key].items():
                out[k] = out.get(k, 0.0) + v
    return out


def cluster_resources() -> dict:
    """Total resources of the alive nodes."""
    info = _cluster_info()
    return _sum(info.get("nodes") or [info], "total")


def available_resources() -> dict:
    """Resources not held by leases right now, summed over the alive nodes."""
    info = _cluster_info()
    if not info.get("nodes") or len(info["nodes"]) == 1:
        return {k: v for k, v in info["available"].items() if v > 1e-9}
    return {k: v for k, v in _sum(info["nodes"], "available").items() if v > 1e-9}


def nodes() -> list[dict]:
    """Every node the cluster knows, alive or dead, with Ray's keys."""
    info = _cluster_info()
    out = []
    for n in info.get("nodes") or [dict(info, alive=True, is_head=True)]:
        ip = n.get("node_ip", "127.0.0.1")
        port = n.get("address", "").rpartition(":")[2]
        out.append({"NodeID": n["node_id"], "Alive": n.get("alive", True), "alive": n.get("alive", True),
                    "NodeManagerAddress": ip, "NodeManagerHostname": socket.gethostname(),
                    "NodeManagerPort": int(port) if port.isdigit() else 0, "Resources": dict(n["total"]),
                    "NodeName": ip, "IsHeadNode": n.get("is_head", False)})
    return out


__all__ = ["init", "shutdown", "is_initialized", "remote", "get", "wait", "put", "get_runtime_context",
           "cluster_resources", "available_resources", "nodes", "kill", "get_actor", "cancel"]

