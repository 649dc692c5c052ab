"""The pure decision classes of swarm.serve, without a cluster: autoscaling and replica choice."""

from __future__ import annotations

import random

import pytest

from swarm.serve._autoscaling import AutoscalingPolicy
from swarm.serve._replica_set import ReplicaSet
from swarm.serve.config import AutoscalingConfig, DeploymentConfig
from swarm.serve.deployment import deployment


def _policy(**kw) -> AutoscalingPolicy:
    base = dict(min_replicas=1, max_replicas=5, target_ongoing_requests=2, upscale_delay_s=1.0,
                downscale_delay_s=3.0, look_back_period_s=1.0)
    return AutoscalingPolicy(AutoscalingConfig(**{**base, **kw}))


def test_upscale_waits_for_the_delay_then_jumps_to_the_need():
    p = _policy()
    p.record(0.0, 8)                       # 8 ongoing, target 2 per replica: 4 replicas wanted
    assert p.decide(0.0, 1) == 1           # not wanted for upscale_delay_s yet
    p.record(0.5, 8)
    assert p.decide(0.5, 1) == 1
    p.record(1.0, 8)
    assert p.decide(1.0, 1) == 4


def test_upscale_is_capped_and_a_lull_resets_the_clock():
    p = _policy(upscale_delay_s=0.0)
    p.record(0.0, 100)
    assert p.decide(0.0, 1) == 5           # max_replicas
    q = _policy()
    q.record(0.0, 8)
    q.decide(0.0, 1)
    q.record(2.0, 2)                       # the old sample left the look-back window: no need now
    assert q.decide(2.0, 1) == 1
    q.record(2.5, 8)
    assert q.decide(2.5, 1) == 1           # the delay starts over


def test_downscale_after_its_delay_not_below_min():
    p = _policy(min_replicas=2)
    p.record(0.0, 0)
    assert p.decide(0.0, 4) == 4
    p.record(2.9, 0)
    assert p.decide(2.9, 4) == 4
    p.record(3.0, 0)
    assert p.decide(3.0, 4) == 2


def test_scale_from_and_to_zero():
    p = _policy(min_replicas=0, upscale_delay_s=0.0, downscale_delay_s=0.0)
    p.record(0.0, 0)
    assert p.decide(0.0, 0) == 0
    p.record(0.1, 3)                       # queued requests at handles with no replica at all
    assert p.decide(0.1, 0) >= 1
    p.record(5.0, 0)
    assert p.decide(5.0, 1) == 0


def test_config_validation_speaks_to_the_user():
    with pytest.raises(ValueError, match="max_replicas"):
        AutoscalingConfig(min_replicas=3, max_replicas=2)
    with pytest.raises(ValueError, match="unknown autoscaling_config keys"):
        AutoscalingConfig.from_user({"min_replica": 1})
    with pytest.raises(ValueError, match="max_ongoing_requests"):
        DeploymentConfig(max_ongoing_requests=0)
    with pytest.raises(ValueError, match="not both"):
        deployment(num_replicas=2, autoscaling_config={"max_replicas": 3})(lambda r: r)
    d = deployment(num_replicas="auto")(lambda r: r)
    assert d.autoscaling_config is not None and d.autoscaling_config.max_replicas == 100


def test_power_of_two_choices_prefers_the_less_loaded():
    rs: ReplicaSet[str] = ReplicaSet(max_ongoing_requests=10, rng=random.Random(0))
    rs.update({"a": "A", "b": "B"})
    for _ in range(5):
        rs.started("a")
    assert all(rs.choose() == "b" for _ in range(20))


def test_replica_set_respects_the_limit_and_spreads_load():
    rs: ReplicaSet[str] = ReplicaSet(max_ongoing_requests=2, rng=random.Random(1))
    rs.update({"a": 1, "b": 2, "c": 3})
    picks = []
    while (k := rs.choose()) is not None:
        rs.started(k)
        picks.append(k)
    assert sorted(picks) == ["a", "a", "b", "b", "c", "c"]
    rs.finished("b")
    assert rs.choose() == "b"


def test_dead_replicas_stay_out_until_the_controller_drops_them():
    rs: ReplicaSet[str] = ReplicaSet(max_ongoing_requests=5)
    rs.update({"a": 1, "b": 2})
    rs.started("a")
    rs.mark_dead("a")
    rs.update({"a": 1, "b": 2})            # a stale update still lists it
    assert set(rs.replicas) == {"b"}
    rs.finished("a")                        # its failed request completes: forgotten
    assert "a" not in rs.in_flight
    rs.update({"b": 2})
    rs.update({"a": 1, "b": 2})             # the controller dropped it once: a new listing counts
    assert set(rs.replicas) == {"a", "b"}
