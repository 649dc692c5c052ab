"""One deployment's replicas, kept at their target count by the controller's loop.

    tick(now) every CONTROL_LOOP_PERIOD_S:
      STARTING ── initialize() done ──▶ RUNNING ── get_metrics() every tick (ongoing requests)
         │ constructor raised                │ died / no answer in health_check_timeout_s /
         ▼                                   │ check_health() raised
      killed; 3 in a row before any          ▼
      success: DEPLOY_FAILED              removed and killed; the next tick starts a replacement
      target: num_replicas, or AutoscalingPolicy.decide(load) with autoscaling
      too many / outdated code ──▶ STOPPING: out of the routers' set, prepare_for_shutdown()
                                   (drain), then swarm.kill

Whenever the set of RUNNING replicas changes, it is published under ("replicas", id) for routers.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, Callable

import swarm
from swarm.exceptions import ActorDiedError, ActorUnavailableError
from swarm.serve._autoscaling import AutoscalingPolicy
from swarm.serve._build import DeploymentSpec
from swarm.serve._common import SERVE_NAMESPACE, DeploymentID, ReplicaID, ReplicaSetUpdate, RunningReplica
from swarm.serve._replica import ServeReplica
from swarm.serve.schema import DeploymentStatus, DeploymentStatusOverview, ReplicaState

log = logging.getLogger(__name__)

MAX_START_FAILURES = 3
HANDLE_METRICS_MAX_AGE_S = 2.0


class ReplicaRecord:
    __slots__ = ("replica_id", "actor", "state", "code_version", "init_future", "ongoing", "poll_task",
                 "last_user_check", "started_at")

    def __init__(self, replica_id: ReplicaID, actor: Any, code_version: str, init_future: Any, now: float):
        self.replica_id = replica_id
        self.actor = actor
        self.state = ReplicaState.STARTING
        self.code_version = code_version
        self.init_future = init_future
        self.ongoing = 0
        self.poll_task: asyncio.Task | None = None
        self.last_user_check = now
        self.started_at = now


class DeploymentState:
    def __init__(self, deployment_id: DeploymentID, spec: DeploymentSpec, controller_handle: Any,
                 publish: Callable[[Any, Any], None]) -> None:
        self.id = deployment_id
        self.controller_handle = controller_handle
        self._publish = publish
        self.replicas: dict[str, ReplicaRecord] = {}
        self.deleting = False
        self.failures = 0                  # consecutive replica start failures
        self.ever_healthy = False
        self.message = ""
        self.trigger = "deploy"            # why the deployment is not at its target yet
        self.handle_queued: dict[str, tuple[float, int]] = {}
        self._next_start_at = 0.0
        self._published: tuple | None = None
        self._tasks: set[asyncio.Task] = set()
        self.spec = spec
        self.policy: AutoscalingPolicy | None = None
        self.target = 0
        self.deploy(spec)

    # -- commands from the controller -------------------------------------------------------------
    def deploy(self, spec: DeploymentSpec) -> None:
        old, self.spec = self.spec, spec
        first = not self.replicas and self.target == 0 and self.policy is None
        autoscaling = spec.config.autoscaling_config
        if autoscaling is None:
            self.policy = None
            self.target = spec.config.num_replicas
        elif self.policy is None or self.policy.config != autoscaling:
            self.policy = AutoscalingPolicy(autoscaling)
            start = autoscaling.initial_target() if first else self.target
            self.target = max(autoscaling.min_replicas, min(start, autoscaling.max_replicas))
        self.deleting = False
        self.failures = 0
        self.trigger = "deploy"
        self.message = ""
        if not first and old.code_version == spec.code_version and old.config != spec.config:
            for r in self.replicas.values():
                if r.state == ReplicaState.RUNNING:
                    self._spawn(self._reconfigure(r))
        self._publish_replicas(force=True)

    def delete(self) -> None:
        self.deleting = True
        self.target = 0
        self.policy = None

    def is_gone(self) -> bool:
        return self.deleting and not self.replicas

    def record_handle_metrics(self, handle_id: str, queued: int, now: float) -> None:
        self.handle_queued[handle_id] = (now, queued)

    def check_replica_soon(self, replica_id: ReplicaID) -> None:
        """A router saw this replica die: confirm with a poll now instead of at the next period."""
        r = self.replicas.get(replica_id.unique_id)
        if r is not None and r.state == ReplicaState.RUNNING and r.poll_task is None:
            r.poll_task = self._spawn(self._poll(r))

    # -- the control loop -------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        for r in list(self.replicas.values()):
            if r.state == ReplicaState.STARTING and r.init_future.done():
                self._on_started(r, now)
            elif r.state == ReplicaState.RUNNING and r.poll_task is None:
                r.poll_task = self._spawn(self._poll(r))
        self._autoscale(now)
        self._scale(now)
        if self._settled():
            self.trigger = ""
        self._publish_replicas()

    def _settled(self) -> bool:
        version = self.spec.code_version
        running = sum(1 for r in self.replicas.values()
                      if r.state == ReplicaState.RUNNING and r.code_version == version)
        return running == self.target and len(self.replicas) == running

    def _on_started(self, r: ReplicaRecord, now: float) -> None:
        err = r.init_future.exception()
        if err is None:
            r.state = ReplicaState.RUNNING
            r.last_user_check = now
            self.failures = 0
            self.ever_healthy = True
            return
        self.failures += 1
        self.message = (f"a replica of deployment {self.id.name!r} failed to start "
                        f"({self.failures} in a row): {_short(err)}")
        log.warning("%s", self.message)
        self._remove(r, kill=True)
        self._next_start_at = now + min(2.0 ** self.failures, 30.0) if self.ever_healthy else now

    def _autoscale(self, now: float) -> None:
        if self.policy is None or self.deleting:
            return
        load = sum(r.ongoing for r in self.replicas.values() if r.state == ReplicaState.RUNNING)
        for handle_id, (ts, queued) in list(self.handle_queued.items()):
            if now - ts > HANDLE_METRICS_MAX_AGE_S:
                del self.handle_queued[handle_id]
            else:
                load += queued
        self.policy.record(now, load)
        new_target = self.policy.decide(now, self.target)
        if new_target != self.target:
            log.info("autoscaling %s from %d to %d replicas (average load %.2f)", self.id, self.target,
                     new_target, self.policy.average_load() or 0.0)
            self.trigger = "upscale" if new_target > self.target else "downscale"
            self.target = new_target

    def _scale(self, now: float) -> None:
        version = self.spec.code_version
        current = [r for r in self.replicas.values()
                   if r.code_version == version and r.state != ReplicaState.STOPPING]
        if len(current) < self.target and not self._start_blocked(now):
            for _ in range(self.target - len(current)):
                self._start_replica(now)
        elif len(current) > self.target:
            # the newest starting ones first, then the least busy running ones
            extra = sorted(current, key=lambda r: (r.state != ReplicaState.STARTING, r.ongoing))
            for r in extra[:len(current) - self.target]:
                self._stop(r)
        # a rolling update: replicas of the old code serve until as many of the new code run
        ready = sum(1 for r in current if r.state == ReplicaState.RUNNING)
        if ready >= self.target:
            for r in list(self.replicas.values()):
                if r.code_version != version and r.state != ReplicaState.STOPPING:
                    self._stop(r)

    def _start_blocked(self, now: float) -> bool:
        if self.deleting or now < self._next_start_at:
            return True
        return self.failures >= MAX_START_FAILURES and not self.ever_healthy

    def _start_replica(self, now: float) -> None:
        rid = ReplicaID(os.urandom(4).hex(), self.id)
        spec = self.spec
        opts = {**spec.actor_options, "name": rid.actor_name, "namespace": SERVE_NAMESPACE}
        try:
            actor = ServeReplica.options(**opts).remote(rid, spec.serialized_def, spec.serialized_init,
                                                        spec.config, spec.is_function, self.controller_handle)
            init_future = actor.initialize.remote().future()
        except Exception as e:
            self.failures += 1
            self.message = f"cannot start a replica of deployment {self.id.name!r}: {_short(e)}"
            log.warning("%s", self.message)
            self._next_start_at = now + 1.0
            return
        self.replicas[rid.unique_id] = ReplicaRecord(rid, actor, spec.code_version, init_future, now)

    def _stop(self, r: ReplicaRecord) -> None:
        r.state = ReplicaState.STOPPING
        if r.poll_task is not None:
            r.poll_task.cancel()
            r.poll_task = None
        self._spawn(self._drain_and_kill(r))

    async def _drain_and_kill(self, r: ReplicaRecord) -> None:
        self._publish_replicas()  # out of the routers' set before it drains
        if r.init_future.done() and r.init_future.exception() is None:
            timeout = self.spec.config.graceful_shutdown_timeout_s + 5.0
            try:
                await asyncio.wait_for(_wait(r.actor.prepare_for_shutdown.remote()), timeout)
            except Exception as e:
                if not isinstance(e, (ActorDiedError, ActorUnavailableError)):
                    log.info("replica %s did not drain within %.0f s (%r): killing it",
                             r.replica_id.unique_id, timeout, e)
        self._remove(r, kill=True)

    def _remove(self, r: ReplicaRecord, kill: bool) -> None:
        if self.replicas.get(r.replica_id.unique_id) is r:
            del self.replicas[r.replica_id.unique_id]
        if r.poll_task is not None and r.poll_task is not asyncio.current_task():
            r.poll_task.cancel()
        if kill:
            try:
                swarm.kill(r.actor)
            except Exception:  # already gone
                pass
        self._publish_replicas()

    async def _poll(self, r: ReplicaRecord) -> None:
        config = self.spec.config
        try:
            timeout = config.health_check_timeout_s
            r.ongoing = await asyncio.wait_for(_wait(r.actor.get_metrics.remote()), timeout)
            now = asyncio.get_running_loop().time()
            if now - r.last_user_check >= config.health_check_period_s:
                r.last_user_check = now
                await asyncio.wait_for(_wait(r.actor.check_health.remote()), timeout)
        except asyncio.CancelledError:
            raise
        except (ActorDiedError, ActorUnavailableError) as e:
            self._replica_failed(r, f"its actor died: {_short(e)}")
        except asyncio.TimeoutError:
            self._replica_failed(r, f"it did not answer a health check within "
                                    f"{config.health_check_timeout_s} s")
        except Exception as e:
            self._replica_failed(r, f"its check_health() raised {_short(e)}")
        finally:
            if r.poll_task is asyncio.current_task():
                r.poll_task = None

    def _replica_failed(self, r: ReplicaRecord, why: str) -> None:
        if r.state == ReplicaState.STOPPING:
            return
        self.message = f"replica {r.replica_id.unique_id} of deployment {self.id.name!r} was replaced: {why}"
        log.warning("%s", self.message)
        self.trigger = "replica_failed"
        self._remove(r, kill=True)

    async def _reconfigure(self, r: ReplicaRecord) -> None:
        try:
            await _wait(r.actor.reconfigure.remote(self.spec.config))
        except Exception as e:
            self._replica_failed(r, f"reconfigure() raised {_short(e)}")

    # -- what others see --------------------------------------------------------------------------
    def _publish_replicas(self, force: bool = False) -> None:
        running = tuple(RunningReplica(r.replica_id, r.actor) for r in self.replicas.values()
                        if r.state == ReplicaState.RUNNING)
        if self.deleting and not self.replicas:
            state = "deleted"
        elif self._start_blocked(float("inf")) and not running:
            state = "failed"
        else:
            state = "ok"
        config = self.spec.config
        key = (tuple(r.replica_id for r in running), config.max_ongoing_requests, config.max_queued_requests,
               state)
        if key == self._published and not force:
            return
        self._published = key
        update = ReplicaSetUpdate(running, config.max_ongoing_requests, config.max_queued_requests, state,
                                  self.message)
        self._publish(("replicas", self.id), update)

    def status(self) -> DeploymentStatusOverview:
        counts: dict[str, int] = {}
        for r in self.replicas.values():
            counts[r.state.value] = counts.get(r.state.value, 0) + 1
        if self.failures >= MAX_START_FAILURES and not self.ever_healthy:
            status = DeploymentStatus.DEPLOY_FAILED
        elif self._settled():
            status = DeploymentStatus.HEALTHY
        elif self.trigger == "upscale":
            status = DeploymentStatus.UPSCALING
        elif self.trigger == "downscale":
            status = DeploymentStatus.DOWNSCALING
        elif self.trigger == "replica_failed":
            status = DeploymentStatus.UNHEALTHY
        else:
            status = DeploymentStatus.UPDATING
        return DeploymentStatusOverview(status, counts, self.message if status != DeploymentStatus.HEALTHY
                                        else "", self.trigger)

    def _spawn(self, coro: Any) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def cancel_tasks(self) -> None:
        for t in list(self._tasks):
            t.cancel()


async def _wait(ref: Any) -> Any:
    return await asyncio.wrap_future(ref.future())


def _short(err: BaseException) -> str:
    text = str(err).strip() or repr(err)
    lines = text.splitlines()
    # a remote traceback's last line names the exception; keep it and the first line
    return lines[0] if len(lines) == 1 else f"{lines[0]} … {lines[-1]}"
