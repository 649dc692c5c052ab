"""The controller: one named async actor that owns every app, deployment, replica and the proxy.

    driver ── deploy_application / delete_application / get_status / graceful_shutdown ──▶ controller
    control loop (every CONTROL_LOOP_PERIOD_S) ── DeploymentState.tick ──▶ start / poll / drain / kill
                                                                           replica actors
    routers, proxy ── listen_for_change(key, version) ◀── LongPollHost ── ("replicas", id), ("routes",)
    routers ── record_handle_metrics (queued requests), report_replica_dead ──▶ controller
    proxy   ◀── ready / check_health (every second; a dead proxy is started again on the same port)

Its state lives in its process only: if the controller dies, Serve is gone (``serve.start`` anew).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any

import swarm
from swarm.serve import context
from swarm.serve._build import DeploymentSpec
from swarm.serve._common import (
    CONTROL_LOOP_PERIOD_S,
    LONG_POLL_TIMEOUT_S,
    PROXY_NAME,
    SERVE_NAMESPACE,
    DeploymentID,
    ReplicaID,
    Route,
)
from swarm.serve._deployment_state import DeploymentState, _short, _wait
from swarm.serve._long_poll import LongPollHost
from swarm.serve._worker_logging import repair_worker_logging
from swarm.serve.config import HTTPOptions
from swarm.serve.schema import (
    ApplicationStatus,
    ApplicationStatusOverview,
    DeploymentStatus,
    ProxyStatus,
    ServeStatus,
)

log = logging.getLogger(__name__)

ROUTES_KEY = ("routes",)
PROXY_CHECK_PERIOD_S = 1.0


@dataclasses.dataclass
class ApplicationState:
    name: str
    route_prefix: str | None
    ingress: str
    deployments: list[str]
    deployed_at: float
    deleting: bool = False
    routes_version: int = 0


class ControllerActor:
    def __init__(self, http_options: HTTPOptions, proxy_enabled: bool) -> None:
        self._http = http_options
        self._proxy_enabled = proxy_enabled
        self._apps: dict[str, ApplicationState] = {}
        self._deployments: dict[DeploymentID, DeploymentState] = {}
        self._long_poll = LongPollHost()
        self._self: Any = None
        self._loop_task: asyncio.Task | None = None
        self._proxy: Any = None
        self._proxy_address = ""
        self._proxy_status = ProxyStatus.STARTING
        self._proxy_routes_seen = -1
        self._proxy_check: asyncio.Task | None = None
        self._proxy_checked_at = 0.0
        self._shutting_down = False
        repair_worker_logging()

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self, self_handle: Any) -> str:
        """Start the control loop and the HTTP proxy; returns the proxy's address ("" without one)."""
        if self._loop_task is not None:
            return self._proxy_address
        self._self = self_handle
        context.set_controller(self_handle)
        self._publish_routes()
        self._loop_task = asyncio.get_running_loop().create_task(self._control_loop())
        if self._proxy_enabled:
            await self._start_proxy()
        return self._proxy_address

    async def _start_proxy(self) -> None:
        from swarm.serve._proxy import ServeProxy
        actor = ServeProxy.options(name=PROXY_NAME, namespace=SERVE_NAMESPACE, num_cpus=0).remote(
            self._http, self._self)
        try:
            self._proxy_address = await _wait(actor.ready.remote())
        except Exception:
            try:
                swarm.kill(actor)
            except Exception:
                pass
            raise
        self._proxy = actor
        self._proxy_status = ProxyStatus.HEALTHY

    async def graceful_shutdown(self, timeout_s: float = 30.0) -> None:
        """Delete every app, wait (bounded) for their replicas to stop, stop the proxy."""
        self._shutting_down = True
        for name in list(self._apps):
            self._delete(name)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self._deployments and loop.time() < deadline:
            await asyncio.sleep(CONTROL_LOOP_PERIOD_S)
        for d in self._deployments.values():  # stragglers: no more waiting
            for r in list(d.replicas.values()):
                d._remove(r, kill=True)
            d.cancel_tasks()
        if self._proxy is not None:
            proxy, self._proxy = self._proxy, None
            try:
                await asyncio.wait_for(_wait(proxy.shutdown.remote()), 10.0)
            except Exception:
                pass
            try:
                swarm.kill(proxy)
            except Exception:
                pass
        if self._loop_task is not None:
            self._loop_task.cancel()
        self._long_poll.wake_all()

    async def _control_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            for dep_id, d in list(self._deployments.items()):
                try:
                    d.tick(now)
                except Exception:
                    log.exception("the control loop failed on deployment %s", dep_id)
                if d.is_gone():
                    d.cancel_tasks()
                    del self._deployments[dep_id]
            for name, app in list(self._apps.items()):
                live = any(DeploymentID(n, name) in self._deployments for n in app.deployments)
                if app.deleting and not live:
                    del self._apps[name]
            self._check_proxy(now)
            await asyncio.sleep(CONTROL_LOOP_PERIOD_S)

    def _check_proxy(self, now: float) -> None:
        if self._proxy is None or self._shutting_down or self._proxy_check is not None or \
                now - self._proxy_checked_at < PROXY_CHECK_PERIOD_S:
            return
        self._proxy_checked_at = now
        self._proxy_check = asyncio.get_running_loop().create_task(self._probe_proxy())

    async def _probe_proxy(self) -> None:
        try:
            await asyncio.wait_for(_wait(self._proxy.check_health.remote()), 10.0)
            self._proxy_status = ProxyStatus.HEALTHY
        except Exception as e:
            if self._shutting_down:
                return
            log.warning("the HTTP proxy failed its health check (%s): starting a new one", _short(e))
            self._proxy_status = ProxyStatus.UNHEALTHY
            try:
                swarm.kill(self._proxy)
            except Exception:
                pass
            self._proxy = None
            self._proxy_routes_seen = -1
            try:
                await self._start_proxy()
            except Exception as e2:
                log.error("cannot restart the HTTP proxy: %s", _short(e2))
        finally:
            self._proxy_check = None

    # -- applications -----------------------------------------------------------------------------
    async def deploy_application(self, name: str, route_prefix: str | None, ingress: str,
                                 specs: list[DeploymentSpec]) -> None:
        if self._shutting_down:
            raise RuntimeError("Serve is shutting down: call serve.start() again after serve.shutdown()")
        if route_prefix is not None:
            for other in self._apps.values():
                if other.name != name and not other.deleting and other.route_prefix == route_prefix:
                    raise ValueError(f"route_prefix {route_prefix!r} is already used by application "
                                     f"{other.name!r}: pick another one, or serve.delete({other.name!r}) "
                                     f"first")
        old = self._apps.get(name)
        names = [s.name for s in specs]
        if old is not None:
            for gone in set(old.deployments) - set(names):
                self._deployments[DeploymentID(gone, name)].delete()
        for spec in specs:
            dep_id = DeploymentID(spec.name, name)
            d = self._deployments.get(dep_id)
            if d is None:
                self._deployments[dep_id] = DeploymentState(dep_id, spec, self._self, self._long_poll.publish)
            else:
                d.deploy(spec)
        self._apps[name] = ApplicationState(name, route_prefix, ingress, names, time.time())
        self._publish_routes()

    def _publish_routes(self) -> None:
        routes = [Route(a.route_prefix, a.name, DeploymentID(a.ingress, a.name)) for a in self._apps.values()
                  if a.route_prefix is not None and not a.deleting]
        self._long_poll.publish(ROUTES_KEY, routes)
        version = self._long_poll.version(ROUTES_KEY)
        for a in self._apps.values():
            a.routes_version = version

    async def wait_for_application(self, name: str, timeout_s: float) -> tuple[str, str]:
        """(status, message) once the app is RUNNING and the proxy routes to it, or has failed, or
        after ``timeout_s`` (whatever it is then)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            app = self._apps.get(name)
            if app is None:
                return ApplicationStatus.NOT_STARTED.value, f"there is no application {name!r}"
            overview = self._app_status(app)
            routed = self._proxy is None or app.route_prefix is None or \
                self._proxy_routes_seen >= app.routes_version
            if (overview.status == ApplicationStatus.RUNNING and routed) or \
                    overview.status == ApplicationStatus.DEPLOY_FAILED or loop.time() >= deadline:
                return overview.status.value, overview.message
            await asyncio.sleep(0.02)

    async def delete_application(self, name: str) -> bool:
        return self._delete(name)

    def _delete(self, name: str) -> bool:
        app = self._apps.get(name)
        if app is None:
            return False
        app.deleting = True
        for n in app.deployments:
            d = self._deployments.get(DeploymentID(n, name))
            if d is not None:
                d.delete()
        self._publish_routes()
        return True

    async def wait_for_deleted(self, name: str, timeout_s: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while name in self._apps and self._apps[name].deleting:
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    # -- queries ----------------------------------------------------------------------------------
    def _app_status(self, app: ApplicationState) -> ApplicationStatusOverview:
        deployments = {}
        for n in app.deployments:
            d = self._deployments.get(DeploymentID(n, app.name))
            if d is not None:
                deployments[n] = d.status()
        statuses = {o.status for o in deployments.values()}
        messages = [f"{n}: {o.message}" for n, o in deployments.items() if o.message]
        if app.deleting:
            status = ApplicationStatus.DELETING
        elif DeploymentStatus.DEPLOY_FAILED in statuses:
            status = ApplicationStatus.DEPLOY_FAILED
        elif DeploymentStatus.UPDATING in statuses:
            status = ApplicationStatus.DEPLOYING
        elif DeploymentStatus.UNHEALTHY in statuses:
            status = ApplicationStatus.UNHEALTHY
        else:
            status = ApplicationStatus.RUNNING
        return ApplicationStatusOverview(status, "; ".join(messages), app.deployed_at, deployments,
                                         app.route_prefix)

    async def get_status(self) -> Any:
        proxies = {"head": self._proxy_status} if self._proxy_enabled else {}
        return ServeStatus(proxies, {name: self._app_status(a) for name, a in self._apps.items()})

    async def get_ingress(self, app_name: str) -> str | None:
        app = self._apps.get(app_name)
        return app.ingress if app is not None and not app.deleting else None

    async def has_deployment(self, deployment_id: DeploymentID) -> bool:
        d = self._deployments.get(deployment_id)
        return d is not None and not d.deleting

    async def get_http_address(self) -> str:
        return self._proxy_address

    # -- from routers and the proxy ---------------------------------------------------------------
    async def listen_for_change(self, key: Any, known_version: int) -> tuple[int, Any]:
        if key == ROUTES_KEY:  # the proxy asks for routes newer than those it applied
            self._proxy_routes_seen = max(self._proxy_routes_seen, known_version)
        if self._shutting_down:
            return self._long_poll.version(key), self._long_poll.get(key)
        return await self._long_poll.listen(key, known_version, LONG_POLL_TIMEOUT_S)

    async def record_handle_metrics(self, deployment_id: DeploymentID, handle_id: str, queued: int) -> None:
        d = self._deployments.get(deployment_id)
        if d is not None:
            d.record_handle_metrics(handle_id, queued, asyncio.get_running_loop().time())

    async def report_replica_dead(self, replica_id: ReplicaID) -> None:
        d = self._deployments.get(replica_id.deployment_id)
        if d is not None:
            d.check_replica_soon(replica_id)


ServeController = swarm.remote(ControllerActor)
