"""Each node's own Prometheus /metrics (``swarm start --metrics-export-port``), scraped over real HTTP.

    head  127.0.0.1  1 CPU, no dashboard, no exporter     (the driver of these tests attaches here)
    B     127.0.0.2  2 CPUs, {"b": 1}, exporter on a free port
    (more nodes are started by the tests that need them)

The cluster lives in this module's own ``SWARM_TEMP_DIR`` and is stopped with ``swarm stop``; the
teardown checks that no process of it, exporters included, is left.
"""

from __future__ import annotations

import json
import os
import signal
import urllib.request

import pytest
from cluster_util import Cluster, alive, cluster_in, free_port, wait_for
from prometheus_client.parser import text_string_to_metric_families

import swarm

TIMEOUT = 60


@pytest.fixture(scope="module")
def metrics_cluster(tmp_path_factory: pytest.TempPathFactory):
    with cluster_in(tmp_path_factory.mktemp("swarm_node_metrics")) as cluster:
        cluster.start_node("head")    # (--no-dashboard: Cluster.start_node adds it)
        b = cluster.start_node("b", "--metrics-export-port", str(free_port()))
        cluster.pids.add(b["metrics_exporter_pid"])
        swarm.init(address=cluster.head_address)
        cluster.wait_alive(["head", "b"])
        yield cluster


def scrape(url: str) -> dict:
    """{family name: family} of one scrape."""
    with urllib.request.urlopen(url, timeout=TIMEOUT) as r:
        assert r.status == 200
        text = r.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(families: dict, name: str, **labels: str) -> float:
    [sample] = [s for s in families[name].samples if all(s.labels.get(k) == v for k, v in labels.items())]
    return sample.value


def histogram(families: dict, name: str) -> tuple[list[tuple[float, float]], float]:
    """([(le, cumulative count), ...] in bucket order, _count) of a one-series histogram."""
    samples = families[name].samples
    buckets = [(float(s.labels["le"]), s.value) for s in samples if s.name == f"{name}_bucket"]
    [count] = [s.value for s in samples if s.name == f"{name}_count"]
    return buckets, count


@swarm.remote(resources={"b": 0.01})
def where_am_i(i):
    return swarm.get_runtime_context().get_node_id()


def test_a_worker_node_serves_its_own_figures(metrics_cluster: Cluster):
    b = metrics_cluster.nodes["b"]
    node_id = b["node_id"]
    assert b["metrics_url"].startswith("http://127.0.0.1:")    # loopback unless told otherwise
    fams = scrape(b["metrics_url"])
    assert value(fams, "swarm_node_manager_up") == 1
    node_ids = {s.labels.get("NodeId") for f in fams.values() if f.name.startswith("swarm_")
                for s in f.samples}
    assert node_ids == {node_id}, "a node's endpoint reports that node only"
    assert value(fams, "swarm_object_store_capacity_bytes", NodeId=node_id) > 0
    assert value(fams, "swarm_resources_total", NodeId=node_id, Resource="CPU") == 2
    assert value(fams, "swarm_resources_total", NodeId=node_id, Resource="b") == 1
    # its pool is prestarted: at least one worker per CPU once it is up
    wait_for(lambda: value(scrape(b["metrics_url"]), "swarm_workers", NodeId=node_id) >= 2, TIMEOUT,
             what="node B's endpoint to count its prestarted workers")
    for name in ("swarm_node_mem_total_bytes", "swarm_node_manager_rss_bytes"):
        assert value(fams, name, NodeId=node_id) > 0, name


def test_the_latency_histogram_counts_leases_of_tasks_pinned_to_the_node(metrics_cluster: Cluster):
    url = metrics_cluster.nodes["b"]["metrics_url"]
    name = "swarm_scheduling_latency_seconds"
    # the histogram comes with the node's heartbeat report: wait for the first one
    before = wait_for(lambda: histogram(scrape(url), name) if scrape(url)[name].samples else None, TIMEOUT,
                      what="node B's first lease-latency report")[1]
    assert swarm.get([where_am_i.remote(i) for i in range(8)], timeout=TIMEOUT) == \
        [metrics_cluster.node_id("b")] * 8

    def grown():
        buckets, count = histogram(scrape(url), name)
        return (buckets, count) if count > before else None
    buckets, count = wait_for(grown, TIMEOUT, what="node B's lease-latency count to grow")
    bounds = [le for le, _ in buckets]
    assert bounds == sorted(bounds) and bounds[-1] == float("inf")
    counts = [n for _, n in buckets]
    assert counts == sorted(counts), f"buckets are not cumulative: {buckets}"
    assert counts[-1] == count


def test_a_taken_port_is_said_and_the_node_starts_without_an_exporter(metrics_cluster: Cluster):
    taken = metrics_cluster.nodes["b"]["metrics_url"].rsplit(":", 1)[1].split("/")[0]
    before = set(metrics_cluster.node_files())
    r = metrics_cluster.cli("start", "--address", metrics_cluster.head_address, "--node-ip-address",
                            "127.0.0.3", "--num-cpus", "1", "--metrics-export-port", taken)
    assert f"port {taken} on 127.0.0.1 is already in use" in r.stderr
    assert "the node runs without it" in r.stderr
    [node] = [n for nid, n in metrics_cluster.node_files().items() if nid not in before]
    assert "metrics_exporter_pid" not in node and "metrics:" not in r.stdout
    metrics_cluster.nodes["c"] = node
    metrics_cluster.wait_alive(["c"])


def test_bad_port_is_refused_before_anything_starts(metrics_cluster: Cluster):
    before = set(metrics_cluster.node_files())
    r = metrics_cluster.cli("start", "--address", metrics_cluster.head_address, "--metrics-export-port",
                            "70000", check=False)
    assert r.returncode == 2
    assert "--metrics-export-port 70000 is not a port" in r.stderr
    assert set(metrics_cluster.node_files()) == before


def test_the_exporter_exits_with_its_node_manager(metrics_cluster: Cluster):
    before = set(metrics_cluster.node_files())
    r = metrics_cluster.cli("start", "--address", metrics_cluster.head_address, "--node-ip-address",
                            "127.0.0.4", "--num-cpus", "1", "--metrics-export-port", "0")
    [node] = [n for nid, n in metrics_cluster.node_files().items() if nid not in before]
    assert f"metrics: {node['metrics_url']}" in r.stdout
    exporter = node["metrics_exporter_pid"]
    metrics_cluster.pids.add(exporter)
    assert value(scrape(node["metrics_url"]), "swarm_node_manager_up", NodeId=node["node_id"]) == 1
    metrics_cluster.nodes["d"] = node
    metrics_cluster.pids.update(metrics_cluster.descendants("d"))
    os.kill(node["pid"], signal.SIGKILL)
    wait_for(lambda: not alive(exporter), TIMEOUT, what="the exporter to exit after its node manager died")


def test_swarm_stop_stops_the_exporters(metrics_cluster: Cluster):
    exporter = metrics_cluster.nodes["b"]["metrics_exporter_pid"]
    assert alive(exporter)
    swarm.shutdown()
    metrics_cluster.record_pids()
    r = metrics_cluster.cli("stop")
    assert "stopped" in r.stdout
    assert not alive(exporter), "`swarm stop` returned while the exporter still runs"
    assert json.dumps(metrics_cluster.node_files()) == "{}"
