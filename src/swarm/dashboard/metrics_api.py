"""``GET /metrics``: the cluster and the users' metrics in the Prometheus text format.

    scrape ──▶ CollectorRegistry ──▶ ClusterCollector.collect()
                                      ├─ ClusterData: tasks by state, actors by state, nodes, store,
                                      │  workers, host CPU/memory, resources used/total
                                      └─ internal KV namespace "_metrics": one snapshot per process
                                         written by swarm.util.metrics, merged here

Merging the processes' snapshots: counters and histograms are summed (each snapshot holds its
process's totals, so a process that exits keeps counting in the sum). Gauges are not summed and not
"last writer wins" (the KV carries no clock that orders writers across machines): each process's value
is its own series, labelled ``WorkerId``. A metric another process declared with a different kind or
tag keys is skipped (logged), as are user metrics whose names collide with swarm's own.

Scheduling latency is ``swarm_scheduling_latency_seconds``: how long lease requests waited at a node
manager for a worker (each node reports its histogram with its heartbeat). The time a task spends
before its owner asks for a lease (waiting for its arguments) is not in it: task rows carry when a
task started, not when it was submitted.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterator

import msgpack
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from swarm.dashboard.data import TASK_STATES, ClusterData

log = logging.getLogger(__name__)

KV_NAMESPACE = "_metrics"


def read_user_snapshots() -> dict[str, bytes]:
    """{process worker id: snapshot} from the KV (empty when the KV is not available)."""
    from swarm.experimental import internal_kv
    keys = internal_kv.kv_list(b"", namespace=KV_NAMESPACE)
    if not keys:
        return {}
    got = internal_kv.kv_multi_get(keys, namespace=KV_NAMESPACE)
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in got.items() if v is not None}


class ClusterCollector:
    """A prometheus_client collector computing every family at scrape time."""

    def __init__(self, data: ClusterData,
                 read_snapshots: Callable[[], dict[str, bytes]] = read_user_snapshots) -> None:
        self.data = data
        self.read_snapshots = read_snapshots
        self._warned: set[str] = set()

    def collect(self) -> Iterator[Metric]:
        builtin = list(self._cluster_families())
        yield from builtin
        taken = {f.name for f in builtin}
        yield from self._user_families(taken)

    # -- the cluster --------------------------------------------------------------------------------
    def _cluster_families(self) -> Iterator[Metric]:
        tasks = GaugeMetricFamily("swarm_tasks", "Tasks (and actor calls) the cluster remembers, by "
                                  "function name and state", labels=["Name", "State"])
        summary = self.data.task_summary()
        for name, counts in sorted(summary.items()):
            for st in sorted(set(counts) | set(TASK_STATES)):
                tasks.add_metric([name, st], counts.get(st, 0))
        yield tasks

        actors = GaugeMetricFamily("swarm_actors", "Actors by class and state", labels=["Name", "State"])
        actor_counts: dict[tuple[str, str], int] = {}
        for a in self.data.actors():
            key = (a.get("class_name") or "?", a.get("state") or "?")
            actor_counts[key] = actor_counts.get(key, 0) + 1
        for (cls, st), n in sorted(actor_counts.items()):
            actors.add_metric([cls, st], n)
        yield actors

        nodes = self.data.nodes()
        by_state: dict[str, int] = {}
        for node in nodes:
            by_state[node["state"]] = by_state.get(node["state"], 0) + 1
        fam = GaugeMetricFamily("swarm_nodes", "Nodes by state", labels=["State"])
        for st in ("ALIVE", "DEAD"):
            fam.add_metric([st], by_state.get(st, 0))
        yield fam

        per_node = [
            ("swarm_object_store_used_bytes", "Bytes used in the node's shared-memory object store",
             "object_store_used_bytes"),
            ("swarm_object_store_capacity_bytes", "Capacity of the node's object store",
             "object_store_capacity_bytes"),
            ("swarm_object_store_spilled_bytes", "Bytes the node's object store spilled to disk",
             "object_store_spilled_bytes"),
            ("swarm_object_store_objects", "Objects in the node's object store", "object_store_objects"),
            ("swarm_workers", "Worker processes of the node", "workers"),
            ("swarm_node_cpu_percent", "CPU use of the node's machine (percent of all cores)",
             "cpu_percent"),
            ("swarm_node_mem_used_bytes", "Memory used on the node's machine", "mem_used_bytes"),
            ("swarm_node_mem_total_bytes", "Memory of the node's machine", "mem_total_bytes"),
        ]
        for metric, doc, stat in per_node:
            fam = GaugeMetricFamily(metric, doc, labels=["NodeId"])
            for node in nodes:
                value = (node.get("stats") or {}).get(stat)
                if node["state"] == "ALIVE" and isinstance(value, (int, float)):
                    fam.add_metric([node["node_id"]], value)
            yield fam

        total = GaugeMetricFamily("swarm_resources_total", "Logical resources of the node",
                                  labels=["NodeId", "Resource"])
        used = GaugeMetricFamily("swarm_resources_used", "Logical resources held by leases on the node",
                                 labels=["NodeId", "Resource"])
        for node in nodes:
            if node["state"] != "ALIVE":
                continue
            for res, amount in sorted((node.get("resources_total") or {}).items()):
                if res == "object_store_memory" or "_group_" in res:
                    continue
                total.add_metric([node["node_id"], res], amount)
                used.add_metric([node["node_id"], res], (node.get("resources_used") or {}).get(res, 0.0))
        yield total
        yield used

        latency = HistogramMetricFamily("swarm_scheduling_latency_seconds",
                                        "How long lease requests waited at the node manager for a worker",
                                        labels=["NodeId"])
        for node in nodes:
            h = (node.get("stats") or {}).get("lease_latency")
            if node["state"] != "ALIVE" or not isinstance(h, dict) or not h.get("bounds"):
                continue
            acc, buckets = 0, []
            for bound, n in zip(list(h["bounds"]) + [float("inf")], h["counts"], strict=True):
                acc += n
                buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), acc))
            latency.add_metric([node["node_id"]], buckets, h.get("sum", 0.0))
        yield latency

    # -- the users' metrics -------------------------------------------------------------------------
    def _user_families(self, taken: set[str]) -> Iterator[Metric]:
        try:
            snapshots = self.read_snapshots()
        except Exception as e:   # no KV yet (or the head is busy): the cluster's own metrics still go out
            self._warn_once("kv", "user metrics are not available: %r", e)
            return
        merged: dict[str, dict[str, Any]] = {}
        for worker_id, blob in sorted(snapshots.items()):
            try:
                rows = msgpack.unpackb(blob, raw=False)
            except Exception as e:
                self._warn_once(f"bad:{worker_id}", "unreadable metrics snapshot of %s: %r", worker_id, e)
                continue
            for name, kind, description, boundaries, tag_keys, values in rows:
                m = merged.get(name)
                if m is None:
                    m = merged[name] = {"kind": kind, "description": description, "boundaries": boundaries,
                                        "tag_keys": list(tag_keys), "series": {}}
                elif (m["kind"], m["tag_keys"], m["boundaries"]) != (kind, list(tag_keys), boundaries):
                    self._warn_once(f"conflict:{name}", "metric %r is declared differently in two processes "
                                    "(kind, tag keys or boundaries): the later one is not exported", name)
                    continue
                series = m["series"]
                per_process = kind == "gauge" and "WorkerId" not in tag_keys   # else: last one read wins
                for tag_values, value in values:
                    if kind == "gauge":
                        series[tuple(tag_values) + ((worker_id,) if per_process else ())] = value
                    elif kind == "counter":
                        key = tuple(tag_values)
                        series[key] = series.get(key, 0.0) + value
                    else:
                        key = tuple(tag_values)
                        buckets, total, count = value
                        prev = series.get(key)
                        if prev is None:
                            series[key] = [list(buckets), total, count]
                        else:
                            prev[0] = [a + b for a, b in zip(prev[0], buckets, strict=True)]
                            prev[1] += total
                            prev[2] += count
        for name, m in sorted(merged.items()):
            family = self._family(name, m, taken)
            if family is not None:
                yield family

    def _family(self, name: str, m: dict, taken: set[str]) -> Metric | None:
        kind, doc, labels = m["kind"], m["description"] or name, m["tag_keys"]
        try:
            if kind == "counter":
                fam: Metric = CounterMetricFamily(name, doc, labels=labels)
            elif kind == "gauge":
                fam = GaugeMetricFamily(name, doc, labels=labels if "WorkerId" in labels
                                        else labels + ["WorkerId"])
            elif kind == "histogram":
                fam = HistogramMetricFamily(name, doc, labels=labels)
            else:
                return None
        except ValueError as e:
            self._warn_once(f"name:{name}", "user metric %r cannot be exported: %s", name, e)
            return None
        if fam.name in taken or fam.name.startswith("swarm_"):
            self._warn_once(f"taken:{name}", "user metric %r collides with one of swarm's own metrics: "
                            "it is not exported (rename it)", name)
            return None
        for key, value in sorted(m["series"].items()):
            labels_values = [str(v) for v in key]
            if kind == "histogram":
                buckets, total, count = value
                cumulative, acc = [], 0
                for bound, n in zip(m["boundaries"] + [float("inf")], buckets, strict=True):
                    acc += n
                    cumulative.append(("+Inf" if bound == float("inf") else repr(float(bound)), acc))
                fam.add_metric(labels_values, cumulative, total)   # type: ignore[attr-defined]
            else:
                fam.add_metric(labels_values, value)   # type: ignore[attr-defined]
        return fam

    def _warn_once(self, key: str, msg: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(msg, *args)


def make_registry(data: ClusterData,
                  read_snapshots: Callable[[], dict[str, bytes]] = read_user_snapshots) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ClusterCollector(data, read_snapshots))   # type: ignore[arg-type]
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The exposition text (blocks on the cluster: call it in a thread)."""
    return generate_latest(registry)
