"""Identifiers and wire records shared by the controller, routers, replicas and the proxy.

They travel between processes pickled, so each is a small immutable record of plain values.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

SERVE_NAMESPACE = "serve"
CONTROLLER_NAME = "SERVE_CONTROLLER_ACTOR"
PROXY_NAME = "SERVE_PROXY_ACTOR"
REPLICA_PREFIX = "SERVE_REPLICA"
DEFAULT_APP_NAME = "default"

# The controller's reconciliation period: how soon a dead replica is noticed and replaced, and how
# often replica load is sampled for autoscaling.
CONTROL_LOOP_PERIOD_S = 0.1
# How long a long-poll call waits for a change before returning the unchanged value.
LONG_POLL_TIMEOUT_S = 10.0
# How often a handle with queued requests reports them to the controller (for autoscaling).
HANDLE_METRICS_PERIOD_S = 0.1


class DeploymentID(NamedTuple):
    name: str
    app_name: str = DEFAULT_APP_NAME

    def __str__(self) -> str:
        return f"{self.app_name}#{self.name}"


class ReplicaID(NamedTuple):
    unique_id: str
    deployment_id: DeploymentID

    def to_full_id_str(self) -> str:
        return f"{self.deployment_id}#{self.unique_id}"

    @property
    def actor_name(self) -> str:
        """The replica actor's name in namespace ``serve`` (``swarm.get_actor(name, namespace="serve")``)."""
        return f"{REPLICA_PREFIX}::{self.to_full_id_str()}"


@dataclasses.dataclass(frozen=True)
class RequestMetadata:
    """What a replica needs to know about a request besides its arguments."""

    request_id: str
    method_name: str = "__call__"
    route: str = ""
    is_http: bool = False


@dataclasses.dataclass(frozen=True)
class RunningReplica:
    """A replica that can take requests, as routers see it."""

    replica_id: ReplicaID
    actor: Any  # ActorHandle of the replica actor


@dataclasses.dataclass(frozen=True)
class ReplicaSetUpdate:
    """The long-poll value of one deployment: its routable replicas, or why there are none."""

    replicas: tuple[RunningReplica, ...]
    max_ongoing_requests: int
    max_queued_requests: int
    # "ok": requests wait for replicas if there are none; "failed"/"deleted": they fail at once
    state: str = "ok"
    message: str = ""


@dataclasses.dataclass(frozen=True)
class Route:
    """One entry of the proxy's route table."""

    route_prefix: str
    app_name: str
    ingress: DeploymentID
