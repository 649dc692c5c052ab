"""User metrics: ``Counter``, ``Gauge`` and ``Histogram`` with the API of ``ray.util.metrics``.

    user code ── inc / set / observe ──▶ this process's series (a dict update under a lock)
                                              │ a thread of this module: FLUSH_DELAY_S after a quiet
                                              │ process records something, then at most every
                                              │ FLUSH_INTERVAL_S while it keeps recording; and at exit
                                              ▼
                  internal KV, namespace "_metrics", key = this process's worker id (hex),
                  value = msgpack [(name, kind, description, boundaries, tag_keys, [(tag_values, value)])]
                                              │
                                              ▼
                  the dashboard's /metrics merges every process's snapshot (see dashboard/metrics_api.py)

A snapshot holds everything the process recorded since it started, so writing it again is idempotent
and the reader never double counts. Counter values and histogram buckets are totals since the
process started; a gauge is the last value set in that process. Metric objects pickle by definition
(name, description, tag keys, default tags, boundaries), not by value: a counter captured by a task
counts in the worker that runs the task, and the dashboard sums the workers.
"""

from __future__ import annotations

import atexit
import bisect
import logging
import os
import re
import threading
from typing import Any

import msgpack

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 2.0
# a burst of records is written together, soon: a worker can be killed (or reused for an actor that
# is killed) any time after its task, and a SIGKILLed process loses what it had not written
FLUSH_DELAY_S = 0.2
KV_NAMESPACE = "_metrics"

# The Prometheus metric-name grammar: what a scraper accepts is what we accept.
_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_TAG_KEY_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

COUNTER, GAUGE, HISTOGRAM = "counter", "gauge", "histogram"


class _Series:
    """One metric's values in this process, keyed by the tuple of tag values (in tag_keys order)."""

    __slots__ = ("name", "kind", "description", "boundaries", "tag_keys", "values")

    def __init__(self, name: str, kind: str, description: str, boundaries: list[float],
                 tag_keys: tuple[str, ...]) -> None:
        self.name = name
        self.kind = kind
        self.description = description
        self.boundaries = boundaries
        self.tag_keys = tag_keys
        # counter/gauge: float; histogram: [bucket counts (len(boundaries) + 1, not cumulative), sum, count]
        self.values: dict[tuple[str, ...], Any] = {}


class _ProcessMetrics:
    """Every series recorded in this process and the thread that writes them to the cluster's KV."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.series: dict[str, _Series] = {}
        self.dirty = False
        self._stop = threading.Event()
        self._wake = threading.Event()   # set when ``dirty`` turns True
        self._thread: threading.Thread | None = None

    def register(self, name: str, kind: str, description: str, boundaries: list[float],
                 tag_keys: tuple[str, ...]) -> _Series:
        with self.lock:
            s = self.series.get(name)
            if s is None:
                s = self.series[name] = _Series(name, kind, description, boundaries, tag_keys)
            elif s.kind != kind or s.tag_keys != tag_keys or s.boundaries != boundaries:
                raise ValueError(f"a metric named {name!r} already exists in this process as a {s.kind} "
                                 f"with tag_keys={s.tag_keys} and boundaries={s.boundaries or None}: "
                                 f"use a different name, or the same kind, tag keys and boundaries")
        self._ensure_flusher()
        return s

    # -- flushing -----------------------------------------------------------------------------------
    def after_fork(self) -> None:
        """In a forked child: no flush thread came along, the lock may have been held, and what the
        parent recorded is the parent's to report."""
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = None
        self.dirty = False
        for s in self.series.values():
            s.values.clear()

    def _ensure_flusher(self) -> None:
        if self._thread is None:
            with self.lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="swarm-metrics-flush",
                                                    daemon=True)
                    self._thread.start()
                    atexit.register(self.stop)

    def mark_dirty(self) -> None:
        """Called with ``lock`` held by every record."""
        if not self.dirty:
            self.dirty = True
            self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            if self._stop.wait(FLUSH_DELAY_S):
                return
            self._wake.clear()   # a record from now on sets it again (the snapshot clears dirty)
            try:
                if not self.flush():   # not connected (yet): look again next round
                    self._wake.set()
            except Exception as e:   # the cluster may be gone or restarting: try again next round
                log.debug("flushing metrics failed: %r", e)
                self._wake.set()
            if self._stop.wait(FLUSH_INTERVAL_S - FLUSH_DELAY_S):
                return

    def stop(self) -> None:
        """At exit: stop the thread and write the final snapshot, without this process's gauges (a
        gauge of a process that is gone describes nothing any more)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        try:
            self.flush(final=True)
        except Exception as e:
            log.debug("the final metrics flush failed: %r", e)

    def snapshot(self, final: bool = False) -> bytes:
        with self.lock:
            rows = []
            for s in self.series.values():
                if final and s.kind == GAUGE:
                    continue
                if s.kind == HISTOGRAM:
                    values = [[list(tags), [list(v[0]), v[1], v[2]]] for tags, v in s.values.items()]
                else:
                    values = [[list(tags), v] for tags, v in s.values.items()]
                rows.append([s.name, s.kind, s.description, s.boundaries, list(s.tag_keys), values])
            self.dirty = False
        return msgpack.packb(rows, use_bin_type=True)

    def flush(self, final: bool = False) -> bool:
        """Write this process's snapshot to the KV if anything changed; False when not connected."""
        from swarm import api
        w = api._worker
        if w is None or getattr(w, "mode", None) == "local" or getattr(w, "shutting_down", False):
            return False
        if not (self.dirty or final) or not self.series:
            return True
        from swarm.experimental import internal_kv
        try:
            internal_kv.kv_put(w.worker_id.hex(), self.snapshot(final), namespace=KV_NAMESPACE)
        except BaseException:
            with self.lock:
                self.mark_dirty()   # written next round
            raise
        return True


_PROCESS = _ProcessMetrics()
os.register_at_fork(after_in_child=_PROCESS.after_fork)


def flush() -> bool:
    """Write this process's metrics to the cluster now (they are also written every few seconds)."""
    return _PROCESS.flush()


def _check_name(name: Any) -> str:
    if not isinstance(name, str):
        raise TypeError(f"a metric name must be a string, got {type(name).__name__}")
    if not name:
        raise ValueError("Empty name is not allowed. Please provide a metric name.")
    if not _NAME_RE.match(name):
        raise ValueError(f"Invalid metric name {name!r}: a metric name must match "
                         f"{_NAME_RE.pattern} (letters, digits, '_' and ':', not starting with a digit), "
                         f"e.g. 'requests_served'")
    return name


def _check_tag_keys(tag_keys: Any) -> tuple[str, ...]:
    if tag_keys is None:
        return ()
    if not isinstance(tag_keys, tuple):
        raise TypeError(f"tag_keys should be a tuple type, got: {type(tag_keys).__name__} "
                        f"(e.g. tag_keys=('route',))")
    for key in tag_keys:
        if not isinstance(key, str):
            raise TypeError(f"Tag keys must be str, got {type(key).__name__}: {key!r}")
        if not _TAG_KEY_RE.match(key):
            raise ValueError(f"Invalid tag key {key!r}: a tag key must match {_TAG_KEY_RE.pattern}")
    if len(set(tag_keys)) != len(tag_keys):
        raise ValueError(f"tag_keys has duplicates: {tag_keys}")
    return tag_keys


class Metric:
    """The base of the user metrics: a name, a description and the keys of its tags."""

    _kind = ""

    def __init__(self, name: str, description: str = "", tag_keys: tuple[str, ...] | None = None) -> None:
        self._name = _check_name(name)
        self._description = str(description or "")
        self._tag_keys = _check_tag_keys(tag_keys)
        self._default_tags: dict[str, str] = {}
        self._boundaries: list[float] = getattr(self, "_boundaries", [])
        self._series = _PROCESS.register(self._name, self._kind, self._description, self._boundaries,
                                         self._tag_keys)

    def __reduce__(self) -> tuple:
        # by definition, not by value: the receiving process records its own series
        return (_rebuild, (type(self), self._name, self._description, self._tag_keys, self._boundaries,
                           dict(self._default_tags)))

    @property
    def info(self) -> dict[str, Any]:
        return {"name": self._name, "description": self._description, "tag_keys": self._tag_keys,
                "default_tags": dict(self._default_tags)}

    def set_default_tags(self, default_tags: dict[str, str]) -> Metric:
        """Tag values used when a record call does not give them; returns the metric (chainable)."""
        for key, value in default_tags.items():
            if key not in self._tag_keys:
                raise ValueError(f"Unrecognized tag key {key!r} for metric {self._name!r}: its tag_keys "
                                 f"are {self._tag_keys}")
            if not isinstance(value, str):
                raise TypeError(f"Tag values must be str, got {type(value).__name__} for tag {key!r}")
        self._default_tags = dict(default_tags)
        return self

    def _tag_values(self, tags: dict[str, str] | None) -> tuple[str, ...]:
        merged = dict(self._default_tags)
        if tags:
            unknown = [k for k in tags if k not in self._tag_keys]
            if unknown:
                raise ValueError(f"Unrecognized tag key(s) {unknown} for metric {self._name!r}: its tag_keys "
                                 f"are {self._tag_keys}")
            for key, value in tags.items():
                if not isinstance(value, str):
                    raise TypeError(f"Tag values must be str, got {type(value).__name__} for tag {key!r}")
            merged.update(tags)
        missing = [k for k in self._tag_keys if k not in merged]
        if missing:
            raise ValueError(f"Missing value for tag key(s) {missing} of metric {self._name!r}: pass them "
                             f"in tags=... or set them with set_default_tags()")
        return tuple(merged[k] for k in self._tag_keys)


def _rebuild(cls: type, name: str, description: str, tag_keys: tuple[str, ...], boundaries: list[float],
             default_tags: dict[str, str]) -> Metric:
    if cls is Histogram:
        m: Metric = Histogram(name, description, boundaries=boundaries, tag_keys=tag_keys)
    else:
        m = cls(name, description, tag_keys=tag_keys)
    return m.set_default_tags(default_tags) if default_tags else m


def _check_value(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} takes a number, got {type(value).__name__}: {value!r:.60}")
    return float(value)


class Counter(Metric):
    """A value that only goes up (exported as ``<name>_total``, summed over all processes)."""

    _kind = COUNTER

    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        value = _check_value(value, "Counter.inc()")
        if value <= 0:
            raise ValueError(f"value must be >0, got {value}")
        key = self._tag_values(tags)
        with _PROCESS.lock:
            values = self._series.values
            values[key] = values.get(key, 0.0) + value
            _PROCESS.mark_dirty()


class Gauge(Metric):
    """A value that goes up and down (exported per process, with a ``WorkerId`` label)."""

    _kind = GAUGE

    def set(self, value: float | None, tags: dict[str, str] | None = None) -> None:
        if value is None:   # as Ray: nothing to record
            return
        value = _check_value(value, "Gauge.set()")
        key = self._tag_values(tags)
        with _PROCESS.lock:
            self._series.values[key] = value
            _PROCESS.mark_dirty()


class Histogram(Metric):
    """Observations counted into buckets with the given upper ``boundaries`` (summed over processes)."""

    _kind = HISTOGRAM

    def __init__(self, name: str, description: str = "", boundaries: list[float] | None = None,
                 tag_keys: tuple[str, ...] | None = None) -> None:
        if not boundaries:
            raise ValueError("boundaries argument should be provided when using the Histogram class. "
                             "e.g., Histogram(\"name\", boundaries=[1.0, 2.0])")
        bounds = [_check_value(b, "Histogram boundaries") for b in boundaries]
        for i, b in enumerate(bounds):
            if b <= 0:
                raise ValueError(f"Invalid `boundaries` argument at index {i}, {list(boundaries)}. Use "
                                 f"positive values for the arguments.")
            if i and b <= bounds[i - 1]:
                raise ValueError(f"Histogram boundaries must be strictly increasing, got {list(boundaries)}")
        self._boundaries = bounds
        super().__init__(name, description, tag_keys)

    @property
    def info(self) -> dict[str, Any]:
        return dict(super().info, boundaries=list(self._boundaries))

    def observe(self, value: float, tags: dict[str, str] | None = None) -> None:
        value = _check_value(value, "Histogram.observe()")
        key = self._tag_values(tags)
        # bucket i counts values <= boundaries[i] (Prometheus' "le"); the last one is +Inf
        bucket = bisect.bisect_left(self._boundaries, value)
        with _PROCESS.lock:
            entry = self._series.values.get(key)
            if entry is None:
                entry = self._series.values[key] = [[0] * (len(self._boundaries) + 1), 0.0, 0]
            entry[0][bucket] += 1
            entry[1] += value
            entry[2] += 1
            _PROCESS.mark_dirty()


__all__ = ["Counter", "Gauge", "Histogram", "Metric", "flush"]
