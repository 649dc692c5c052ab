"""The one place swarm reads its settings: a ``Config`` dataclass, each field overridable by a
``SWARM_<FIELD>`` environment variable (e.g. ``SWARM_INLINE_OBJECT_MAX_BYTES=65536``)."""

from __future__ import annotations

import dataclasses
import os


@dataclasses.dataclass
class Config:
    #: values up to this many serialized bytes travel inline in messages (as Ray: 100 KiB)
    inline_object_max_bytes: int = 100 * 1024
    #: share of total RAM the object store may use when ``object_store_memory`` is not given
    object_store_fraction: float = 0.3
    #: an idle lease is kept this long for the next task of the same shape before it is returned
    lease_linger_s: float = 0.05
    #: target wall time of the tasks queued ahead on one worker (pipelining of short tasks)
    pipeline_target_s: float = 0.002
    #: never queue more than this many tasks on one worker
    pipeline_max_depth: int = 64
    #: idle workers beyond the node's CPU count exit after this long
    idle_worker_timeout_s: float = 10.0
    #: deadline of internal request/response calls
    request_timeout_s: float = 30.0
    #: a `get` without timeout that has waited this long logs what it is waiting for
    get_warn_after_s: float = 30.0
    #: worker log files rotate past this size; this many old files are kept
    log_rotate_bytes: int = 64 * 1024 * 1024
    log_rotate_keep: int = 3
    #: cap on bytes spilled to disk (0: up to 90% of the free disk space)
    spill_max_bytes: int = 0
    #: a producer waits this long for room in a full store before ObjectStoreFullError
    object_store_full_timeout_s: float = 30.0
    #: the memory monitor kills the worker using the most memory past this share of node memory
    memory_usage_threshold: float = 0.95
    #: how often the memory monitor looks (0 disables it)
    memory_monitor_interval_s: float = 0.25
    #: a task killed for memory is retried this many times before OutOfMemoryError
    task_oom_retries: int = 3
    #: node managers report to the head this often
    heartbeat_s: float = 0.5
    #: a node that misses heartbeats this long is declared dead
    node_timeout_s: float = 5.0
    #: a node that lost the head keeps working and retries this long, then exits
    head_reconnect_s: float = 60.0
    #: finished tasks remembered to rebuild their lost outputs (oldest forgotten first)
    max_lineage_tasks: int = 100_000
    #: finished tasks each process remembers for the state API and the timeline
    task_events_max: int = 100_000
    #: keep the session directory (logs) after shutdown
    keep_session_dir: bool = False
    #: where session directories live
    temp_dir: str = "/tmp/swarm"
    #: a runtime_env working_dir (or py_modules entry) larger than this is refused before upload
    working_dir_max_bytes: int = 100 * 1024 * 1024

    @classmethod
    def from_env(cls) -> Config:
        cfg = cls()
        for f in dataclasses.fields(cls):
            raw = os.environ.get("SWARM_" + f.name.upper())
            if raw is None:
                continue
            if f.type in ("bool", bool):
                value: object = raw.lower() in ("1", "true", "yes", "on")
            elif f.type in ("int", int):
                value = int(raw)
            elif f.type in ("float", float):
                value = float(raw)
            else:
                value = raw
            setattr(cfg, f.name, value)
        return cfg


CONFIG = Config.from_env()
