"""Unit tests for swarm.node.resources.LeaseScheduler: events in, actions out, no I/O."""

from __future__ import annotations

import pytest

from swarm.node.resources import Grant, Infeasible, LeaseRequest, LeaseScheduler, StartWorker

A = object()  # two opaque clients (the node manager passes its connections)
B = object()


def req(req_id: int, client: object = A, fn_name: str = "", **shape: float) -> LeaseRequest:
    return LeaseRequest(req_id, client, {k: float(v) for k, v in shape.items()}, fn_name)


def grants(actions: list) -> list[Grant]:
    return [a for a in actions if isinstance(a, Grant)]


def starts(actions: list) -> int:
    return sum(isinstance(a, StartWorker) for a in actions)


def sched(total: dict, workers: int = 0, **kw) -> LeaseScheduler:
    s = LeaseScheduler(total, **kw)
    for i in range(workers):
        assert s.worker_ready(b"w%d" % i) == []
    return s


# -- granting and queueing ------------------------------------------------------------------------
def test_granted_when_idle_worker_and_resources_exist():
    s = sched({"CPU": 2}, workers=1)
    r = req(1, CPU=1)
    actions = s.request(r)
    assert len(actions) == 1
    g = actions[0]
    assert isinstance(g, Grant)
    assert g.request is r and g.worker_id == b"w0" and g.gpu_ids == []
    assert s.available["CPU"] == pytest.approx(1.0)
    assert s.leases[b"w0"][0] is r
    assert s.idle_workers == []


def test_zero_cpu_request_is_granted_without_taking_cpu():
    s = sched({"CPU": 1}, workers=2)
    assert grants(s.request(req(1, CPU=1)))
    g = grants(s.request(req(2, CPU=0)))
    assert len(g) == 1
    assert s.available["CPU"] == pytest.approx(0.0)


def test_queued_when_resources_short_then_granted_on_release():
    s = sched({"CPU": 1}, workers=2)
    first = grants(s.request(req(1, CPU=1)))[0]
    second = req(2, CPU=1)
    actions = s.request(second)
    assert actions == []          # no grant, and no worker start either: it does not fit now
    assert s.demand() == [{"CPU": 1.0}]

    actions = s.release(first.worker_id)
    g = grants(actions)
    assert len(g) == 1 and g[0].request is second
    assert s.demand() == []
    assert s.available["CPU"] == pytest.approx(0.0)


def test_queue_is_served_in_arrival_order():
    s = sched({"CPU": 1}, workers=3)
    first = grants(s.request(req(1, CPU=1)))[0]
    s.request(req(2, CPU=1))
    s.request(req(3, CPU=1))
    g = grants(s.release(first.worker_id))
    assert [x.request.req_id for x in g] == [2]
    g = grants(s.release(g[0].worker_id))
    assert [x.request.req_id for x in g] == [3]


def test_smaller_request_behind_a_blocked_one_is_still_granted():
    s = sched({"CPU": 2}, workers=3)
    grants(s.request(req(1, CPU=1)))
    assert s.request(req(2, CPU=2)) == []               # does not fit yet
    g = grants(s.request(req(3, CPU=1)))
    assert [x.request.req_id for x in g] == [3]


def test_release_of_unknown_worker_changes_nothing():
    s = sched({"CPU": 1}, workers=1)
    assert s.release(b"nobody") == []
    assert s.available == {"CPU": 1.0}
    assert s.idle_workers == [b"w0"]


def test_custom_resources_are_accounted():
    s = sched({"CPU": 4, "custom": 1}, workers=2)
    assert grants(s.request(req(1, CPU=1, custom=1)))
    assert s.request(req(2, CPU=1, custom=1)) == []
    assert s.available["custom"] == pytest.approx(0.0)
    g = grants(s.release(b"w1"))
    assert [x.request.req_id for x in g] == [2]


# -- starting workers -----------------------------------------------------------------------------
def test_start_worker_when_resources_fit_but_no_idle_worker():
    s = sched({"CPU": 2})
    r = req(1, CPU=1)
    actions = s.request(r)
    assert actions == [StartWorker()]
    assert s.starting == 1
    # the worker comes up: the queued request gets it
    g = grants(s.worker_ready(b"new"))
    assert len(g) == 1 and g[0].request is r and g[0].worker_id == b"new"
    assert s.starting == 0


def test_no_duplicate_start_for_a_request_already_waiting_for_a_worker():
    s = sched({"CPU": 2})
    assert starts(s.request(req(1, CPU=1))) == 1
    assert starts(s.request(req(2, CPU=1))) == 1     # a second request needs a second worker
    assert s.starting == 2
    # a worker that comes up serves the first request, not a new start
    g = grants(s.worker_ready(b"x"))
    assert [x.request.req_id for x in g] == [1]
    assert s.starting == 1


def test_workers_started_never_exceed_what_the_resources_can_run():
    s = sched({"CPU": 2})
    started = sum(starts(s.request(req(i, CPU=1))) for i in range(8))
    assert started == 2           # only two 1-CPU leases can ever run at once on 2 CPUs


def test_no_start_worker_when_resources_do_not_fit():
    s = sched({"CPU": 1}, workers=1)
    grants(s.request(req(1, CPU=1)))
    assert starts(s.request(req(2, CPU=1))) == 0


def test_max_workers_caps_start_worker():
    s = LeaseScheduler({"CPU": 4}, max_workers=1)
    assert starts(s.request(req(1, CPU=1))) == 1
    assert starts(s.request(req(2, CPU=1))) == 0


# -- infeasible -----------------------------------------------------------------------------------
def test_infeasible_names_the_request_and_the_node_total():
    s = sched({"CPU": 2, "GPU": 1}, workers=1)
    r = req(7, fn_name="train_model", CPU=4)
    actions = s.request(r)
    assert len(actions) == 1
    a = actions[0]
    assert isinstance(a, Infeasible)
    assert a.request is r
    assert "train_model" in a.message
    assert "4 CPU" in a.message                 # what was asked
    assert "2 CPU" in a.message and "1 GPU" in a.message    # what the node has in total
    assert s.demand() == []                     # never queued
    assert s.available == {"CPU": 2.0, "GPU": 1.0}


def test_infeasible_unknown_custom_resource():
    s = sched({"CPU": 2}, workers=1)
    (a,) = s.request(req(1, fn_name="f", CPU=1, accelerator=1))
    assert isinstance(a, Infeasible)
    assert "accelerator" in a.message
    assert "2 CPU" in a.message


def test_request_equal_to_total_is_feasible():
    s = sched({"CPU": 2}, workers=1)
    assert grants(s.request(req(1, CPU=2)))


# -- block / unblock ------------------------------------------------------------------------------
def test_block_returns_cpu_so_another_request_is_granted():
    s = sched({"CPU": 1}, workers=2)
    holder = grants(s.request(req(1, CPU=1)))[0].worker_id
    waiting = req(2, CPU=1)
    assert s.request(waiting) == []

    g = grants(s.block(holder))
    assert len(g) == 1 and g[0].request is waiting and g[0].worker_id != holder
    assert s.available["CPU"] == pytest.approx(0.0)

    # the blocked worker resumes: it takes its CPU back even though that oversubscribes the node
    assert s.unblock(holder) is None
    assert s.available["CPU"] == pytest.approx(-1.0)

    # both leases return: the pool is whole again
    s.release(g[0].worker_id)
    s.release(holder)
    assert s.available["CPU"] == pytest.approx(1.0)
    assert sorted(s.idle_workers) == [b"w0", b"w1"]


def test_block_twice_and_unblock_twice_count_once():
    s = sched({"CPU": 2}, workers=1)
    holder = grants(s.request(req(1, CPU=1)))[0].worker_id
    s.block(holder)
    assert s.block(holder) == []
    assert s.available["CPU"] == pytest.approx(2.0)
    s.unblock(holder)
    s.unblock(holder)
    assert s.available["CPU"] == pytest.approx(1.0)


def test_block_of_unleased_worker_is_ignored():
    s = sched({"CPU": 1}, workers=1)
    assert s.block(b"w0") == []
    s.unblock(b"w0")
    assert s.available["CPU"] == pytest.approx(1.0)


def test_release_while_blocked_does_not_return_cpu_twice():
    s = sched({"CPU": 1}, workers=1)
    holder = grants(s.request(req(1, CPU=1)))[0].worker_id
    s.block(holder)
    assert s.available["CPU"] == pytest.approx(1.0)
    s.release(holder)
    assert s.available["CPU"] == pytest.approx(1.0)


def test_block_keeps_gpus_and_custom_resources():
    s = sched({"CPU": 2, "GPU": 1}, workers=2)
    holder = grants(s.request(req(1, CPU=1, GPU=1)))[0].worker_id
    s.block(holder)
    assert s.available["CPU"] == pytest.approx(2.0)
    assert s.available["GPU"] == pytest.approx(0.0)
    assert s.request(req(2, GPU=1)) == []


# -- GPUs -----------------------------------------------------------------------------------------
def test_gpu_ids_are_assigned_and_returned():
    s = sched({"CPU": 4, "GPU": 2}, workers=3)
    g1 = grants(s.request(req(1, CPU=1, GPU=1)))[0]
    g2 = grants(s.request(req(2, CPU=1, GPU=1)))[0]
    assert sorted(g1.gpu_ids + g2.gpu_ids) == [0, 1]
    assert g1.gpu_ids != g2.gpu_ids
    assert s.request(req(3, CPU=1, GPU=1)) == []        # no GPU left: queued

    g3 = grants(s.release(g1.worker_id))
    assert len(g3) == 1 and g3[0].request.req_id == 3
    assert g3[0].gpu_ids == g1.gpu_ids                   # the returned id is handed out again
    s.release(g2.worker_id)
    s.release(g3[0].worker_id)
    assert s.free_gpus == [0, 1]
    assert s.available["GPU"] == pytest.approx(2.0)


def test_multi_gpu_request_gets_distinct_ids():
    s = sched({"CPU": 4, "GPU": 4}, workers=2)
    g = grants(s.request(req(1, GPU=3)))[0]
    assert len(g.gpu_ids) == 3 and len(set(g.gpu_ids)) == 3
    assert set(g.gpu_ids) <= {0, 1, 2, 3}
    g2 = grants(s.request(req(2, GPU=1)))[0]
    assert set(g2.gpu_ids).isdisjoint(g.gpu_ids)


def test_fractional_gpu_gets_one_id():
    s = sched({"CPU": 2, "GPU": 1}, workers=1)
    g = grants(s.request(req(1, GPU=0.5)))[0]
    assert g.gpu_ids == [0]


def test_fractional_gpu_leases_share_the_gpu_id():
    s = sched({"CPU": 2, "GPU": 1}, workers=2)
    g1 = grants(s.request(req(1, GPU=0.5)))[0]
    g2 = grants(s.request(req(2, GPU=0.5)))[0]
    assert g1.gpu_ids == [0]
    assert g2.gpu_ids == [0]


def test_gpu_ids_come_back_when_worker_dies():
    s = sched({"CPU": 2, "GPU": 1}, workers=2)
    g = grants(s.request(req(1, GPU=1)))[0]
    s.worker_died(g.worker_id)
    assert s.free_gpus == [0]
    g2 = grants(s.request(req(2, GPU=1)))[0]
    assert g2.gpu_ids == [0]


# -- clients going away, cancel -------------------------------------------------------------------
def test_client_gone_drops_its_queued_requests_and_returns_its_workers():
    s = sched({"CPU": 1}, workers=2)
    held = grants(s.request(req(1, A, CPU=1)))[0].worker_id
    s.request(req(2, A, CPU=1))
    s.request(req(3, B, CPU=1))
    s.request(req(4, A, CPU=1))

    assert s.client_gone(A) == [held]
    assert [r.req_id for r in s.queue] == [3]
    g = grants(s.release(held))
    assert [x.request.req_id for x in g] == [3]
    assert g[0].request.client is B


def test_client_gone_without_anything_is_harmless():
    s = sched({"CPU": 1}, workers=1)
    s.request(req(1, B, CPU=1))
    assert s.client_gone(A) == []
    assert len(s.leases) == 1


def test_cancel_removes_only_that_clients_requests():
    s = sched({"CPU": 1}, workers=2)
    held = grants(s.request(req(1, A, CPU=1)))[0].worker_id
    s.request(req(2, A, CPU=1))
    s.request(req(3, A, CPU=1))
    s.request(req(2, B, CPU=1))        # same id, other client: must survive
    s.cancel(A, [2, 99])
    assert [(r.req_id, r.client) for r in s.queue] == [(3, A), (2, B)]
    g = grants(s.release(held))
    assert [x.request.req_id for x in g] == [3]


def test_cancel_of_granted_request_does_not_touch_the_lease():
    s = sched({"CPU": 1}, workers=1)
    s.request(req(1, A, CPU=1))
    s.cancel(A, [1])
    assert len(s.leases) == 1
    assert s.available["CPU"] == pytest.approx(0.0)


# -- workers dying --------------------------------------------------------------------------------
def test_worker_died_returns_the_lease_request_and_frees_resources():
    s = sched({"CPU": 1}, workers=2)
    r = req(1, fn_name="f", CPU=1)
    dead = grants(s.request(r))[0].worker_id
    waiting = req(2, CPU=1)
    s.request(waiting)

    lease_req, actions = s.worker_died(dead)
    assert lease_req is r
    g = grants(actions)
    assert len(g) == 1 and g[0].request is waiting and g[0].worker_id != dead
    assert dead not in s.leases and dead not in s.idle_workers


def test_idle_worker_died_returns_none_and_leaves_the_pool():
    s = sched({"CPU": 1}, workers=2)
    lease_req, actions = s.worker_died(b"w0")
    assert lease_req is None and actions == []
    assert s.idle_workers == [b"w1"]
    assert s.available["CPU"] == pytest.approx(1.0)


def test_dead_blocked_worker_does_not_return_cpu_twice():
    s = sched({"CPU": 1}, workers=1)
    holder = grants(s.request(req(1, CPU=1)))[0].worker_id
    s.block(holder)
    s.worker_died(holder)
    assert s.available["CPU"] == pytest.approx(1.0)


def test_worker_died_with_queue_and_no_idle_worker_starts_one():
    s = sched({"CPU": 2}, workers=1)
    dead = grants(s.request(req(1, CPU=1)))[0].worker_id
    assert starts(s.request(req(2, CPU=1))) == 1
    _, actions = s.worker_died(dead)
    assert grants(actions) == []
    assert s.available["CPU"] == pytest.approx(2.0)
