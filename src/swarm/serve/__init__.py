"""swarm.serve: model serving on swarm, with Ray Serve's API (``from swarm import serve``).

    @serve.deployment(num_replicas=2)
    class Model:
        def __init__(self, tokenizer):            # a DeploymentHandle, from .bind() below
            self.tokenizer = tokenizer
        async def __call__(self, request):        # a starlette.requests.Request
            return await self.tokenizer.remote(await request.body())

    serve.start(http_options={"host": "127.0.0.1", "port": 8000})
    handle = serve.run(Model.bind(Tokenizer.bind()), route_prefix="/model")

How a request flows (every box is a swarm actor but the driver; all are async actors):

    HTTP client                                driver: serve.run / status / delete / shutdown
        │                                          │  deploy_application, get_status, ...
        ▼                                          ▼
    ┌─ proxy actor ─────────────────┐     ┌─ controller actor (named SERVE_CONTROLLER_ACTOR) ─┐
    │ uvicorn on the actor's loop   │◀────┤ apps, deployments, replicas; every 0.1 s:         │
    │ route_prefix → ingress        │long │  start/replace/drain replicas, poll their load,   │
    │ Router(ingress) ─ pow-2 ──┐   │poll │  autoscale; publishes routes and replica sets     │
    └───────────────────────────┼───┘     └───────────────┬───────────────────────────────────┘
                                │ handle_http(scope, body)│ initialize / get_metrics /
                                ▼                         ▼ prepare_for_shutdown / kill
    ┌─ replica actors (one per replica; max_ongoing_requests at a time) ───────────────────────┐
    │ the user's object; async methods on the actor loop, sync ones on a thread pool          │
    │ DeploymentHandle.remote() ─▶ Router (own loop thread) ─▶ another deployment's replicas  │
    └──────────────────────────────────────────────────────────────────────────────────────────┘

Failure handling: a replica whose process dies fails its in-flight requests at once (the runtime
fails the calls; the proxy answers 503 with the cause); routers drop it, the controller notices within
one period and starts a replacement. Limits: one proxy (single node); no streaming responses, no
websockets, no model multiplexing; the controller is not restarted if it dies.
"""

from swarm.serve import context, exceptions, schema
from swarm.serve.api import (
    delete,
    get_app_handle,
    get_deployment_handle,
    ingress,
    run,
    shutdown,
    start,
    status,
)
from swarm.serve.batching import batch
from swarm.serve.config import AutoscalingConfig, HTTPOptions, ProxyLocation
from swarm.serve.context import ReplicaContext, get_replica_context
from swarm.serve.deployment import Application, Deployment, deployment
from swarm.serve.handle import DeploymentHandle, DeploymentResponse

__all__ = ["deployment", "Deployment", "Application", "run", "start", "shutdown", "delete", "status",
           "get_app_handle", "get_deployment_handle", "get_replica_context", "ReplicaContext", "ingress",
           "batch", "DeploymentHandle", "DeploymentResponse", "AutoscalingConfig", "HTTPOptions",
           "ProxyLocation", "exceptions", "schema", "context"]
