"""Unit tests for swarm.node.metrics_exporter: the collector against hand-made CLUSTER_INFO replies,
rendered and parsed as Prometheus text (no node manager, no sockets)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from swarm.node.metrics_exporter import NodeCollector, node_figures

ME, OTHER = "aaaa0000aaaa0000", "bbbb1111bbbb1111"
LATENCY = {"bounds": [0.001, 0.01, 0.1], "counts": [3, 0, 2, 1], "sum": 0.75, "count": 6}


def stats(**over) -> dict:
    """A node's heartbeat report, as the node manager sends it."""
    out = {"time": 1.0, "cpu_percent": 12.5, "mem_total": 8 << 30, "mem_used": 3 << 30,
           "store_capacity": 1 << 30, "store_used": 100, "store_objects": 1, "spilled_bytes": 0,
           "spilled_objects": 4, "restored_objects": 2, "workers": 3, "workers_leased": 2,
           "workers_actors": 1, "node_manager_rss": 40 << 20, "pending_leases": 5, "lease_latency": LATENCY}
    out.update(over)
    return out


def cluster_info(my_stats: dict | None) -> dict:
    """A CLUSTER_INFO reply of node ME, whose view also holds another node."""
    me = {"node_id": ME, "alive": True, "total": {"CPU": 2.0}, "available": {"CPU": 2.0}}
    if my_stats is not None:
        me["stats"] = my_stats
    other = {"node_id": OTHER, "alive": True, "total": {"CPU": 8.0}, "available": {"CPU": 1.0},
             "stats": stats(workers=99, lease_latency={"bounds": [1.0], "counts": [7, 7], "sum": 9.0,
                                                       "count": 14})}
    return {"node_id": ME, "pid": 4242, "nodes": [other, me],
            "total": {"CPU": 2.0, "accel": 1.0, "object_store_memory": float(1 << 30),
                      "CPU_group_0_abc": 1.0},
            "available": {"CPU": 0.5, "accel": 1.0, "object_store_memory": float(1 << 29)},
            "object_store": {"capacity": 1 << 30, "used": 4096, "objects": 7, "spilled_bytes": 512,
                             "spilled": 9, "restored": 3},
            "num_workers": 4, "leases": [{"actor": True}, {"actor": False}], "demand": [{"CPU": 1.0}]}


def scrape(collector: NodeCollector) -> dict:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)   # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def one(fams: dict, name: str, **labels: str) -> float:
    [s] = [s for s in fams[name].samples if all(s.labels.get(k) == v for k, v in labels.items())]
    return s.value


def no_measure(pid: int | None) -> dict:
    raise AssertionError("measured here although the node's report has every figure")


def test_this_nodes_figures_with_the_dashboards_names_and_labels():
    fams = scrape(NodeCollector(lambda: cluster_info(stats()), measure=no_measure))
    assert one(fams, "swarm_node_manager_up") == 1
    labelled = {s.labels.get("NodeId") for f in fams.values() for s in f.samples}
    assert labelled == {ME}, "only this node, never the others in its view"
    # the store and the workers are read live from the reply, not from the (older) heartbeat report
    assert one(fams, "swarm_object_store_used_bytes", NodeId=ME) == 4096
    assert one(fams, "swarm_object_store_capacity_bytes", NodeId=ME) == 1 << 30
    assert one(fams, "swarm_object_store_objects", NodeId=ME) == 7
    assert one(fams, "swarm_object_store_spilled_bytes", NodeId=ME) == 512
    assert one(fams, "swarm_workers", NodeId=ME) == 4
    assert one(fams, "swarm_object_store_spills", NodeId=ME) == 9       # a counter: _total on the wire
    assert fams["swarm_object_store_spills"].type == "counter"
    # the rest comes from the node's report
    assert one(fams, "swarm_node_cpu_percent", NodeId=ME) == 12.5
    assert one(fams, "swarm_node_mem_used_bytes", NodeId=ME) == 3 << 30
    assert one(fams, "swarm_node_mem_total_bytes", NodeId=ME) == 8 << 30
    assert one(fams, "swarm_node_manager_rss_bytes", NodeId=ME) == 40 << 20
    assert one(fams, "swarm_workers_leased", NodeId=ME) == 2
    assert one(fams, "swarm_workers_actors", NodeId=ME) == 1
    assert one(fams, "swarm_pending_leases", NodeId=ME) == 5
    # logical resources as the dashboard shows them: no store memory, no placement-group bundles
    assert {s.labels["Resource"] for s in fams["swarm_resources_total"].samples} == {"CPU", "accel"}
    assert one(fams, "swarm_resources_used", NodeId=ME, Resource="CPU") == 1.5
    assert one(fams, "swarm_resources_used", NodeId=ME, Resource="accel") == 0


def test_the_latency_histogram_is_cumulative():
    fams = scrape(NodeCollector(lambda: cluster_info(stats()), measure=no_measure))
    h = fams["swarm_scheduling_latency_seconds"]
    assert h.type == "histogram"
    buckets = [(s.labels["le"], s.value) for s in h.samples if s.name.endswith("_bucket")]
    assert buckets == [("0.001", 3), ("0.01", 3), ("0.1", 5), ("+Inf", 6)]
    totals = {s.name: s.value for s in h.samples if not s.name.endswith("_bucket")}
    assert totals == {"swarm_scheduling_latency_seconds_count": 6,
                      "swarm_scheduling_latency_seconds_sum": pytest.approx(0.75)}


def test_before_the_first_report_what_can_be_is_computed_from_the_reply_and_here():
    measured = []

    def measure(pid):
        measured.append(pid)
        return {"cpu_percent": 50.0, "mem_total": 100, "mem_used": 60, "node_manager_rss": 30}
    fams = scrape(NodeCollector(lambda: cluster_info(None), measure=measure))
    assert measured == [4242], "the node manager's RSS is measured from its pid"
    assert one(fams, "swarm_workers", NodeId=ME) == 4
    assert one(fams, "swarm_workers_leased", NodeId=ME) == 2
    assert one(fams, "swarm_workers_actors", NodeId=ME) == 1
    assert one(fams, "swarm_pending_leases", NodeId=ME) == 1
    assert one(fams, "swarm_node_cpu_percent", NodeId=ME) == 50
    assert one(fams, "swarm_node_mem_used_bytes", NodeId=ME) == 60
    assert one(fams, "swarm_node_manager_rss_bytes", NodeId=ME) == 30
    assert fams["swarm_scheduling_latency_seconds"].samples == [], "no report, no histogram"


def test_a_node_manager_that_does_not_answer_is_reported_down():
    answers = [cluster_info(stats())]

    def fetch():
        if answers:
            return answers.pop()
        raise ConnectionError("the node manager closed the connection")
    collector = NodeCollector(fetch, measure=no_measure)
    assert one(scrape(collector), "swarm_node_manager_up", NodeId=ME) == 1
    fams = scrape(collector)
    assert one(fams, "swarm_node_manager_up", NodeId=ME) == 0
    assert list(fams) == ["swarm_node_manager_up"], "no stale figures when the node does not answer"


def test_node_figures_keep_the_report_when_the_reply_lacks_a_field():
    info = cluster_info(stats())
    del info["object_store"], info["num_workers"], info["leases"], info["demand"]
    figures = node_figures(info)
    assert (figures["store_used"], figures["workers"], figures["workers_leased"],
            figures["pending_leases"]) == (100, 3, 2, 5)
