"""The cluster's task history and what is running now, as the head sees it. Pure state.

Owners (drivers and workers that submit) send, about once a second, the tasks and actor calls that
finished since their last report (compact rows) and a snapshot of what they still have queued or running.
Finished rows go into a bounded ring (oldest dropped first); failures also into a smaller ring of their
own, and every row is indexed by task id while it is in the ring — so "the failed ones", "this task" and
"the newest N" cost O(rows returned), not O(history)."""

from __future__ import annotations

import collections
import itertools
import sys
from collections.abc import Iterator
from typing import Any

# a finished row as owners send it
FIELDS = ("task_id", "name", "state", "start_time", "duration_s", "pid", "node_id", "worker_id",
          "actor_id", "error", "owner_id")
STATE, NAME = 2, 1


def _hex(v: Any) -> Any:
    return v.hex() if isinstance(v, bytes | bytearray) else v


def row_dict(row: list | tuple) -> dict:
    d = dict(zip(FIELDS, row, strict=False))
    for k in ("task_id", "actor_id", "owner_id"):
        d[k] = _hex(d.get(k))
    d["type"] = "ACTOR_TASK" if d.get("actor_id") else "NORMAL_TASK"
    if d.get("error") is None:
        d.pop("error", None)
    return d


class TaskLog:
    def __init__(self, max_events: int, max_failed: int = 10_000) -> None:
        self.ring: collections.deque = collections.deque()
        self.failed: collections.deque = collections.deque(maxlen=max(1, min(max_failed, max_events or 1)))
        self.max_events = max_events
        self.by_id: dict[bytes, tuple] = {}
        self.totals: dict[tuple[str, str], int] = collections.Counter()  # (name, state) since start
        self.live: dict[bytes, list] = {}          # owner -> its queued/running rows (dicts, ≤1000)
        self._owners: dict[bytes, bytes] = {}
        self.live_counts: dict[bytes, list] = {}   # owner -> [[name, state, n], ...] (all of them)

    # -- events in ---------------------------------------------------------------------------------
    def add_finished(self, rows: list) -> None:
        owners = self._owners
        for r in rows:
            # names, states, node/worker ids and owners repeat across rows: one copy each (a 100k ring
            # holds ~40% less this way)
            r[1], r[2] = sys.intern(r[1]), sys.intern(r[2])
            if isinstance(r[6], str):
                r[6] = sys.intern(r[6])
            if isinstance(r[7], str):
                r[7] = sys.intern(r[7])
            r[10] = owners.setdefault(r[10], r[10])
            row = tuple(r)
            self.totals[(row[NAME], row[STATE])] += 1
            if self.max_events <= 0:
                continue
            if len(self.ring) >= self.max_events:
                old: tuple = self.ring.popleft()
                if self.by_id.get(old[0]) is old:
                    del self.by_id[old[0]]
            self.ring.append(row)
            self.by_id[row[0]] = row
            if row[STATE] == "FAILED":
                self.failed.append(row)

    def set_live(self, owner: bytes, rows: list[dict], counts: list | None = None) -> None:
        if rows:
            self.live[owner] = rows
            self.live_counts[owner] = counts if counts is not None else \
                [[d.get("name", "?"), d.get("state", "PENDING"), 1] for d in rows]
        else:
            self.owner_gone(owner)

    def owner_gone(self, owner: bytes) -> None:
        self.live.pop(owner, None)
        self.live_counts.pop(owner, None)

    # -- queries -------------------------------------------------------------------------------------
    def list(self, filters: list | None, limit: int, offset: int = 0) -> list[dict]:
        """Matching rows, live ones first, then finished ones newest first; the first ``offset`` matches
        are skipped (a page further down costs its offset in row checks, not in rows sent)."""
        filters = [tuple(f) for f in filters or []]
        eq = {k: str(v) for k, op, v in filters if op == "="}
        out: list[dict] = []
        skip = [offset]

        def take(row: dict) -> bool:
            if _matches(row, filters):
                if skip[0] > 0:
                    skip[0] -= 1
                else:
                    out.append(row)
            return len(out) >= limit

        if "task_id" in eq:
            tid = eq["task_id"]
            for rows in self.live.values():
                for d in rows:
                    if d.get("task_id") == tid and take(dict(d)):
                        return out
            try:
                found: tuple | None = self.by_id.get(bytes.fromhex(tid))
            except ValueError:
                found = None
            if found is not None:
                take(row_dict(found))
            return out
        state = eq.get("state")
        if state in (None, "PENDING", "RUNNING") or state not in ("FINISHED", "FAILED"):
            for rows in self.live.values():
                for d in rows:
                    if take(dict(d)):
                        return out
        if state in ("PENDING", "RUNNING"):
            return out
        source = self.failed if state == "FAILED" else self.ring
        newest_first: Iterator[tuple] = reversed(source)
        if not filters and skip[0] > 0:     # nothing to match: skip without building rows
            newest_first = itertools.islice(newest_first, skip[0], None)
            skip[0] = 0
        for row in newest_first:
            if state == "FAILED" and self.by_id.get(row[0]) is not row:
                continue   # already pushed out of the main ring
            if take(row_dict(row)):
                break
        return out

    def get(self, task_id: str) -> dict | None:
        rows = self.list([("task_id", "=", task_id)], 1)
        return rows[0] if rows else None

    def summary(self) -> dict[str, dict[str, int]]:
        """Counts by function name and state: finished ones since the head started, live ones now."""
        out: dict[str, dict[str, int]] = {}
        for (name, state), n in self.totals.items():
            out.setdefault(name, {})[state] = n
        for counts in self.live_counts.values():
            for name, state, n in counts:
                by_state = out.setdefault(name, {})
                by_state[state] = by_state.get(state, 0) + n
        return out


def _matches(row: dict, filters: list) -> bool:
    for key, op, value in filters:
        have = str(row.get(key))
        if op == "=" and have != str(value):
            return False
        if op == "!=" and have == str(value):
            return False
    return True
