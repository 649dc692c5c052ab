"""The driver-side API: ``start``, ``run``, ``delete``, ``shutdown``, ``status``, handles, ``ingress``.

Each call is a short conversation with the controller actor (``_controller.py``); waiting for an app
to come up is a loop of bounded ``wait_for_application`` calls, so a stuck deployment shows up in
the log instead of a silent hang.
"""

from __future__ import annotations

import inspect
import logging
import time
from typing import Any, Callable

import swarm
from swarm.exceptions import ActorDiedError
from swarm.serve import context
from swarm.serve._build import build_application
from swarm.serve._common import CONTROLLER_NAME, DEFAULT_APP_NAME, SERVE_NAMESPACE, DeploymentID
from swarm.serve._router import ROUTER_LOOP
from swarm.serve.config import HTTPOptions, ProxyLocation
from swarm.serve.deployment import Application, _check_route_prefix
from swarm.serve.exceptions import RayServeException
from swarm.serve.handle import DeploymentHandle
from swarm.serve.schema import ApplicationStatus, ServeStatus

log = logging.getLogger(__name__)

_DEFAULT = object()
START_TIMEOUT_S = 60.0
SLOW_DEPLOY_WARNING_S = 30.0


def start(http_options: dict | HTTPOptions | None = None, *,
          proxy_location: str | ProxyLocation | None = None, detached: bool = True, **_ignored: Any) -> None:
    """Start Serve on the cluster (``swarm.init()`` first if needed): the controller and, unless
    ``proxy_location="Disabled"``, the HTTP proxy on ``http_options`` host:port (127.0.0.1:8000)."""
    http = HTTPOptions.from_user(http_options)
    location = ProxyLocation(proxy_location) if proxy_location is not None else ProxyLocation.HeadOnly
    if not swarm.is_initialized():
        swarm.init()
    if context.get_controller(required=False) is not None:
        if http_options is not None:
            log.warning("Serve is already running; the http_options given to serve.start() are ignored "
                        "(call serve.shutdown() first to change them)")
        return
    from swarm.serve._controller import ServeController
    controller = ServeController.options(name=CONTROLLER_NAME, namespace=SERVE_NAMESPACE, num_cpus=0).remote(
        http, location != ProxyLocation.Disabled)
    try:
        address = swarm.get(controller.start.remote(controller), timeout=START_TIMEOUT_S)
    except BaseException as e:
        try:
            swarm.kill(controller)
        except Exception:
            pass
        _wait_until_name_free(CONTROLLER_NAME)
        cause = getattr(e, "cause", None) or e
        raise RayServeException(f"Serve failed to start: {cause}") from None
    context.set_controller(controller)
    if address:
        log.info("Serve's HTTP proxy listens on %s", address)


def run(target: Application, blocking: bool = False, name: str = DEFAULT_APP_NAME,
        route_prefix: Any = _DEFAULT, logging_config: Any = None, _local_testing_mode: bool = False,
        host: str | None = None, port: int | None = None) -> DeploymentHandle:
    """Deploy ``target`` as application ``name`` (replacing one of that name) and wait until it runs;
    returns a handle to its ingress deployment. ``route_prefix=None`` serves it to handles only."""
    if _local_testing_mode:
        raise NotImplementedError("_local_testing_mode is not supported: run against a local swarm cluster")
    ingress, specs = build_application(target, name)
    if route_prefix is _DEFAULT:
        route_prefix = target.deployment.route_prefix or "/"
    if route_prefix is not None:
        _check_route_prefix(route_prefix)
    if context.get_controller(required=False) is None or not swarm.is_initialized():
        options = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
        start(http_options=options or None)
    controller = context.get_controller()
    swarm.get(controller.deploy_application.remote(name, route_prefix, ingress, specs))
    began = time.monotonic()
    warned = False
    while True:
        status, message = swarm.get(controller.wait_for_application.remote(name, 5.0))
        if status == ApplicationStatus.RUNNING.value:
            break
        if status == ApplicationStatus.DEPLOY_FAILED.value:
            raise RuntimeError(f"Deploying application {name!r} failed: {message}")
        if status == ApplicationStatus.NOT_STARTED.value:
            raise RuntimeError(f"Application {name!r} disappeared while deploying: {message}")
        if not warned and time.monotonic() - began > SLOW_DEPLOY_WARNING_S:
            warned = True
            log.warning("application %r is still %s after %.0f s: %s (replicas may be waiting for CPUs: see "
                        "serve.status() and ray_actor_options)", name, status, SLOW_DEPLOY_WARNING_S,
                        message or "no replica ready yet")
    handle = DeploymentHandle(ingress, name)
    if blocking:
        while True:
            time.sleep(10)
    return handle


def delete(name: str, _blocking: bool = True) -> None:
    """Delete application ``name``: its route goes at once, its replicas drain and stop."""
    controller = context.get_controller()
    if not swarm.get(controller.delete_application.remote(name)):
        log.info("serve.delete(%r): there is no such application", name)
        return
    if _blocking:
        while not swarm.get(controller.wait_for_deleted.remote(name, 5.0)):
            pass


def shutdown() -> None:
    """Delete every application, stop the proxy and the controller. A no-op when Serve is not running."""
    controller = context.get_controller(required=False) if swarm.is_initialized() else None
    if controller is not None:
        try:
            swarm.get(controller.graceful_shutdown.remote(), timeout=60)
        except Exception as e:
            log.warning("Serve's graceful shutdown failed (%r): killing its controller", e)
        try:
            swarm.kill(controller)
        except Exception:
            pass
        _wait_until_name_free(CONTROLLER_NAME)
    context.clear_controller()
    ROUTER_LOOP.stop()


def _wait_until_name_free(name: str, timeout_s: float = 10.0) -> None:
    """swarm.kill is asynchronous: wait until the named actor is dead, so a following serve.start()
    creates a new controller instead of finding the dying one."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            swarm.get_actor(name, namespace=SERVE_NAMESPACE)
        except ValueError:
            return
        time.sleep(0.01)


def status() -> ServeStatus:
    """The status of every application and deployment, and of the proxy."""
    if not swarm.is_initialized():
        return ServeStatus()
    controller = context.get_controller(required=False)
    if controller is None:
        return ServeStatus()
    try:
        return swarm.get(controller.get_status.remote())
    except ActorDiedError:  # killed from outside: Serve is not running
        context.clear_controller()
        return ServeStatus()


def get_app_handle(name: str) -> DeploymentHandle:
    """A handle to the ingress deployment of application ``name``."""
    ingress = swarm.get(context.get_controller().get_ingress.remote(name))
    if ingress is None:
        raise RayServeException(f"Application {name!r} does not exist (see serve.status())")
    return DeploymentHandle(ingress, name)


def get_deployment_handle(deployment_name: str, app_name: str | None = None,
                          _check_exists: bool = True) -> DeploymentHandle:
    """A handle to a deployment of an app (default: the calling replica's app, else ``"default"``)."""
    app = app_name or context.current_app_name() or DEFAULT_APP_NAME
    if _check_exists:
        if not swarm.get(context.get_controller().has_deployment.remote(DeploymentID(deployment_name, app))):
            raise RayServeException(f"Deployment {deployment_name!r} does not exist in application {app!r} "
                                    f"(see serve.status())")
    return DeploymentHandle(deployment_name, app)


def ingress(app: Any) -> Callable[[type], type]:
    """``@serve.ingress(fastapi_app)`` on a deployment class: HTTP requests go to that ASGI app, whose
    routes may be methods of the class (``@app.get("/") def root(self): ...``)."""
    if not callable(app):
        raise TypeError(f"serve.ingress() takes an ASGI app (e.g. FastAPI()), got {type(app).__name__}")

    def decorate(cls: type) -> type:
        if not inspect.isclass(cls):
            raise TypeError("@serve.ingress(app) goes on a class (under @serve.deployment)")
        cls.__serve_asgi_app__ = app  # type: ignore[attr-defined]
        return cls
    return decorate
