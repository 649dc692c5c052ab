"""What ``serve.status()`` returns, with Ray Serve's names: ``ServeStatus`` →
``ApplicationStatusOverview`` → ``DeploymentStatusOverview``.

The status enums are ``str`` enums, so ``status.applications["app"].status == "RUNNING"`` holds.
"""

from __future__ import annotations

import dataclasses
import enum


class ApplicationStatus(str, enum.Enum):
    NOT_STARTED = "NOT_STARTED"
    DEPLOYING = "DEPLOYING"
    DEPLOY_FAILED = "DEPLOY_FAILED"
    RUNNING = "RUNNING"
    UNHEALTHY = "UNHEALTHY"
    DELETING = "DELETING"


class DeploymentStatus(str, enum.Enum):
    UPDATING = "UPDATING"
    HEALTHY = "HEALTHY"
    UNHEALTHY = "UNHEALTHY"
    DEPLOY_FAILED = "DEPLOY_FAILED"
    UPSCALING = "UPSCALING"
    DOWNSCALING = "DOWNSCALING"


class ReplicaState(str, enum.Enum):
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"


class ProxyStatus(str, enum.Enum):
    STARTING = "STARTING"
    HEALTHY = "HEALTHY"
    UNHEALTHY = "UNHEALTHY"
    DRAINING = "DRAINING"


@dataclasses.dataclass
class DeploymentStatusOverview:
    status: DeploymentStatus
    replica_states: dict[str, int]
    message: str = ""
    status_trigger: str = ""


@dataclasses.dataclass
class ApplicationStatusOverview:
    status: ApplicationStatus
    message: str
    last_deployed_time_s: float
    deployments: dict[str, DeploymentStatusOverview]
    route_prefix: str | None = None


@dataclasses.dataclass
class ServeStatus:
    proxies: dict[str, ProxyStatus] = dataclasses.field(default_factory=dict)
    applications: dict[str, ApplicationStatusOverview] = dataclasses.field(default_factory=dict)
    target_capacity: float | None = None
