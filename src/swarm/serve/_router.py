"""Routers: send each request of a deployment to one of its replicas, from any process.

    caller thread ── submit_threadsafe ──▶ router loop ──▶ Router(deployment)
                                                            │ queue (FIFO) until ReplicaSet.choose()
                                                            │ finds a replica below max_ongoing_requests
                                                            ▼
                                      replica_actor.handle_request.remote(meta, *args)
                                                            │ ObjectRef.future() done
                     core worker thread ── call_soon_threadsafe ──▶ _on_reply: in-flight -1,
                                                            set the caller's Future, dispatch the queue
    controller.listen_for_change(("replicas", id)) ──▶ ReplicaSet.update   (a long-poll loop per router)
    every 0.1 s with requests queued ──▶ controller.record_handle_metrics   (autoscaling input)

A process has one ``RouterLoop``: in the proxy it is the proxy's own event loop (no thread hops on the
HTTP path); elsewhere (the driver, replicas) it is a thread of its own, so a handle can be used from
sync code, threads and other event loops alike, and a replica method that blocks on
``response.result()`` cannot starve the router it waits for.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import logging
import os
import threading
from typing import Any

from swarm.exceptions import ActorDiedError, ActorUnavailableError
from swarm.serve import context
from swarm.serve._common import HANDLE_METRICS_PERIOD_S, DeploymentID, ReplicaID, RequestMetadata
from swarm.serve._replica_set import ReplicaSet
from swarm.serve.exceptions import BackPressureError, DeploymentUnavailableError

log = logging.getLogger(__name__)


class PendingRequest:
    """One request from submission to completion; ``future`` holds its value or error."""

    __slots__ = ("meta", "args", "kwargs", "kind", "future", "ref_future")

    def __init__(self, meta: RequestMetadata, args: tuple, kwargs: dict, kind: str = "call") -> None:
        self.meta = meta
        self.args = args
        self.kwargs = kwargs
        self.kind = kind                      # "call": handle_request; "http": handle_http
        self.future: concurrent.futures.Future = concurrent.futures.Future()
        self.ref_future: concurrent.futures.Future = concurrent.futures.Future()

    def fail(self, err: BaseException) -> None:
        for fut in (self.future, self.ref_future):
            _settle(fut, None, err)


def _settle(fut: concurrent.futures.Future, value: Any, err: BaseException | None) -> None:
    try:  # the caller may have cancelled it meanwhile
        if err is not None:
            fut.set_exception(err)
        else:
            fut.set_result(value)
    except concurrent.futures.InvalidStateError:
        pass


class Router:
    """Routes the requests of one deployment from this process; every method runs on the router loop."""

    def __init__(self, deployment_id: DeploymentID, loop: asyncio.AbstractEventLoop,
                 owner: RouterLoop) -> None:
        self.deployment_id = deployment_id
        self.loop = loop
        self.owner = owner
        self.replicas: ReplicaSet[ReplicaID] = ReplicaSet()
        self.pending: collections.deque[PendingRequest] = collections.deque()
        self.max_queued_requests = -1
        self.closed = False
        self.handle_id = f"{os.getpid()}-{id(self):x}"
        self._tasks: list[asyncio.Task] = []
        self._controller: Any = None
        self._close_error: BaseException | None = None

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        try:
            self._controller = context.get_controller()
        except Exception as e:
            self._close(DeploymentUnavailableError(str(e)))
            return
        self._tasks = [self.loop.create_task(self._poll_replicas()),
                       self.loop.create_task(self._report_queue())]

    def _close(self, err: BaseException) -> None:
        self.closed = True
        self._close_error = err
        self.owner.forget(self)
        while self.pending:
            self.pending.popleft().fail(err)
        for t in self._tasks:
            if t is not asyncio.current_task(self.loop):
                t.cancel()

    # -- requests ---------------------------------------------------------------------------------
    def submit_threadsafe(self, req: PendingRequest) -> None:
        if self.owner.on_loop_thread():
            self.submit(req)
        else:
            try:
                self.loop.call_soon_threadsafe(self.submit, req)
            except RuntimeError:  # the loop was closed by serve.shutdown()
                req.fail(DeploymentUnavailableError("Serve was shut down in this process"))

    def submit(self, req: PendingRequest) -> None:
        if self.closed:  # a request that raced the close
            req.fail(self._close_error or DeploymentUnavailableError(f"{self.deployment_id} is closed"))
            return
        if _has_responses(req):
            self.loop.create_task(self._resolve_then_submit(req))
            return
        limit = self.max_queued_requests
        if limit != -1 and len(self.pending) >= limit:
            req.fail(BackPressureError(len(self.pending), limit, str(self.deployment_id)))
            return
        self.pending.append(req)
        self._dispatch()

    async def _resolve_then_submit(self, req: PendingRequest) -> None:
        """Arguments that are ``DeploymentResponse``s are replaced by their values first (as in Ray)."""
        from swarm.serve.handle import DeploymentResponse
        try:
            args = [await a if isinstance(a, DeploymentResponse) else a for a in req.args]
            kwargs = {k: await v if isinstance(v, DeploymentResponse) else v for k, v in req.kwargs.items()}
        except BaseException as e:
            req.fail(e)
            return
        req.args, req.kwargs = tuple(args), kwargs
        self.submit(req)

    def _dispatch(self) -> None:
        while self.pending:
            if self.pending[0].future.cancelled():
                self.pending.popleft().fail(asyncio.CancelledError())
                continue
            key = self.replicas.choose()
            if key is None:
                return
            self._send(key, self.pending.popleft())

    def _send(self, key: ReplicaID, req: PendingRequest) -> None:
        actor = self.replicas.replicas[key]
        self.replicas.started(key)
        try:
            if req.kind == "http":
                ref = actor.handle_http.remote(req.meta, *req.args)
            else:
                ref = actor.handle_request.remote(req.meta, *req.args, **req.kwargs)
        except BaseException as e:  # e.g. an argument that cannot be pickled
            self.replicas.finished(key)
            req.fail(e)
            return
        _settle(req.ref_future, ref, None)
        ref.future().add_done_callback(lambda f: self._reply_threadsafe(key, req, f))

    def _reply_threadsafe(self, key: ReplicaID, req: PendingRequest, f: concurrent.futures.Future) -> None:
        # runs on the core worker's thread: hand over to the loop, do nothing else here
        try:
            self.loop.call_soon_threadsafe(self._on_reply, key, req, f)
        except RuntimeError:  # loop closed: still never leave the caller hanging
            self._settle_reply(key, req, f)

    def _on_reply(self, key: ReplicaID, req: PendingRequest, f: concurrent.futures.Future) -> None:
        self.replicas.finished(key)
        self._settle_reply(key, req, f)
        self._dispatch()

    def _settle_reply(self, key: ReplicaID, req: PendingRequest, f: concurrent.futures.Future) -> None:
        if f.cancelled():
            req.fail(asyncio.CancelledError())
            return
        err = f.exception()
        if isinstance(err, (ActorDiedError, ActorUnavailableError)):
            self.replicas.mark_dead(key)
            self._report_dead(key)
            err = type(err)(f"Replica {key.unique_id} of deployment {key.deployment_id.name!r} (app "
                            f"{key.deployment_id.app_name!r}) died while handling request "
                            f"{req.meta.request_id}: {err}. The controller replaces it; retry the request")
        _settle(req.future, None if err else f.result(), err)

    def _report_dead(self, key: ReplicaID) -> None:
        try:
            self._controller.report_replica_dead.remote(key)
        except Exception:  # the controller is gone too: nothing to tell
            pass

    # -- controller -------------------------------------------------------------------------------
    async def _poll_replicas(self) -> None:
        version = -1
        key = ("replicas", self.deployment_id)
        while True:
            try:
                version, update = await self._controller.listen_for_change.remote(key, version)
            except asyncio.CancelledError:
                raise
            except ActorDiedError:
                self._close(DeploymentUnavailableError(
                    f"Serve is not running any more (its controller is gone): deployment "
                    f"{self.deployment_id.name!r} of app {self.deployment_id.app_name!r} cannot take "
                    f"requests"))
                return
            except Exception as e:
                log.warning("router of %s: polling the controller failed (%r); retrying",
                            self.deployment_id, e)
                await asyncio.sleep(1.0)
                continue
            if update is None or update.state == "deleted":
                self._close(DeploymentUnavailableError(
                    f"There is no deployment {self.deployment_id.name!r} in app "
                    f"{self.deployment_id.app_name!r}" + (f": {update.message}" if update else "")
                    + " (see serve.status())"))
                return
            self.replicas.max_ongoing_requests = update.max_ongoing_requests
            self.max_queued_requests = update.max_queued_requests
            self.replicas.update({r.replica_id: r.actor for r in update.replicas})
            if update.state == "failed" and not self.replicas.replicas:
                err = DeploymentUnavailableError(
                    f"Deployment {self.deployment_id.name!r} of app {self.deployment_id.app_name!r} has no "
                    f"replica that can take requests: {update.message}")
                while self.pending:
                    self.pending.popleft().fail(err)
            self._dispatch()
            self._shed_excess()

    def _shed_excess(self) -> None:
        """Requests queued before this router knew the limit: the newest beyond it are turned away."""
        limit = self.max_queued_requests
        while limit != -1 and len(self.pending) > limit:
            self.pending.pop().fail(BackPressureError(len(self.pending), limit, str(self.deployment_id)))

    async def _report_queue(self) -> None:
        last = 0
        while True:
            await asyncio.sleep(HANDLE_METRICS_PERIOD_S)
            queued = len(self.pending)
            if queued or last:
                try:
                    self._controller.record_handle_metrics.remote(self.deployment_id, self.handle_id, queued)
                except Exception:
                    pass
                last = queued


def _has_responses(req: PendingRequest) -> bool:
    if not req.args and not req.kwargs:
        return False
    from swarm.serve.handle import DeploymentResponse
    return any(isinstance(a, DeploymentResponse) for a in req.args) or \
        any(isinstance(v, DeploymentResponse) for v in req.kwargs.values())


class RouterLoop:
    """Owns the event loop this process's routers run on, and the routers (one per deployment)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._thread_id: int | None = None
        self._routers: dict[DeploymentID, Router] = {}
        self._session: str | None = None
        self._atexit_registered = False

    def adopt_running_loop(self) -> None:
        """Run routers on the calling event loop (the proxy's): called from inside that loop."""
        with self._lock:
            self._loop = asyncio.get_running_loop()
            self._thread_id = threading.get_ident()

    def on_loop_thread(self) -> bool:
        return threading.get_ident() == self._thread_id

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                self._thread_id = threading.get_ident()
                ready.set()
                loop.run_forever()
            # A daemon thread: stop() ends it (serve.shutdown() and atexit); a non-daemon thread would be
            # joined *before* atexit handlers run and so hang the exit of a program that never called
            # serve.shutdown().
            self._thread = threading.Thread(target=run, name="swarm-serve-router", daemon=True)
            self._thread.start()
            if not self._atexit_registered:
                atexit.register(self.stop)
                self._atexit_registered = True
            ready.wait()
            self._loop = loop
        return self._loop

    def router(self, deployment_id: DeploymentID) -> Router:
        session = context.session_id()
        with self._lock:
            if session != self._session:  # swarm was restarted: the old routers talk to a dead cluster
                stale, self._routers, self._session = list(self._routers.values()), {}, session
                if stale and self._loop is not None:
                    err = DeploymentUnavailableError("swarm was shut down: the request was not sent")
                    for old in stale:
                        self._loop.call_soon_threadsafe(old._close, err)
            r = self._routers.get(deployment_id)
            if r is not None:
                return r
            loop = self._ensure_loop()
            r = self._routers[deployment_id] = Router(deployment_id, loop, self)
        if self.on_loop_thread():
            r.start()
        else:
            loop.call_soon_threadsafe(r.start)  # runs before any request submitted after it
        return r

    def forget(self, router: Router) -> None:
        with self._lock:
            if self._routers.get(router.deployment_id) is router:
                del self._routers[router.deployment_id]

    def stop(self) -> None:
        """Close every router (their waiting requests fail) and, if this process owns it, the loop."""
        with self._lock:
            routers, self._routers = list(self._routers.values()), {}
            loop, thread = self._loop, self._thread
            if thread is not None:
                self._loop = self._thread = self._thread_id = None
        if loop is None:
            return
        err = DeploymentUnavailableError("serve.shutdown() was called: the request was not sent")

        def close_all() -> None:
            for r in routers:
                r._close(err)
        if thread is None:
            if self.on_loop_thread():
                close_all()
            return
        done = threading.Event()

        def close_and_stop() -> None:
            close_all()
            for t in asyncio.all_tasks(loop):
                t.cancel()
            loop.call_soon(loop.stop)
            done.set()
        try:
            loop.call_soon_threadsafe(close_and_stop)
        except RuntimeError:
            return
        done.wait(5.0)
        thread.join(5.0)
        if not thread.is_alive():
            loop.close()


ROUTER_LOOP = RouterLoop()
