"""The progress table: trial, status, parameters, last metrics.

On a terminal the table is redrawn in place (cursor up, clear) at most every ``max_report_frequency``
seconds while the experiment runs; when stdout is not a terminal (CI logs, pytest) only the final table
is printed. Plain text, no dependency. A terminal UI writes to stdout on purpose: this is the
experiment's user-facing output, like a CLI's, and ``RunConfig(verbose=0)`` turns it off.
"""

from __future__ import annotations

import numbers
import shutil
import sys
import time
from typing import Any, TextIO

from swarm.tune.search import variant_generator as vg
from swarm.tune.trial import ERROR, PAUSED, PENDING, RUNNING, TERMINATED

AUTO_METRICS = {"training_iteration", "time_this_iter_s", "time_total_s", "timestamp", "time_since_restore",
                "iterations_since_restore", "date", "pid", "hostname", "node_ip", "trial_id", "done",
                "config", "experiment_tag"}
STATUS_ORDER = [RUNNING, PENDING, PAUSED, ERROR, TERMINATED]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.5g}"
    text = str(value)
    return text if len(text) <= 24 else text[:21] + "..."


class CLIReporter:
    """Ray's ``CLIReporter``: pass it as ``RunConfig(progress_reporter=CLIReporter(...))`` to choose the
    columns; ``max_report_frequency`` is in seconds."""

    def __init__(self, metric_columns: list | dict | None = None,
                 parameter_columns: list | dict | None = None,
                 max_progress_rows: int = 20, max_error_rows: int = 20, max_column_length: int = 20,
                 max_report_frequency: float = 1.0, print_intermediate_tables: bool | None = None,
                 metric: str | None = None, mode: str | None = None, sort_by_metric: bool = False,
                 out: TextIO | None = None) -> None:
        self._metric_columns = metric_columns
        self._parameter_columns = parameter_columns
        self.max_progress_rows = max_progress_rows
        self.max_error_rows = max_error_rows
        self.max_report_frequency = max_report_frequency
        self._intermediate = print_intermediate_tables
        self._metric, self._mode, self._sort = metric, mode, sort_by_metric
        self._out = out
        self._last_draw = 0.0
        self._drawn_lines = 0
        self._start = time.monotonic()
        self._param_keys: list[str] | None = None
        self._header: list[str] = []

    def setup(self, param_space: dict, metric: str | None, mode: str | None, header: list[str]) -> None:
        self._metric = self._metric or metric
        self._mode = self._mode or mode
        self._header = header
        self._start = time.monotonic()
        self._drawn_lines = 0
        if self._parameter_columns is None:
            self._param_keys = ["/".join(map(str, p)) for p, v in vg.leaves(param_space)
                                if p and (vg.is_unresolved({"x": v}))]

    @property
    def stream(self) -> TextIO:
        return self._out or sys.stdout

    def _live(self) -> bool:
        if self._intermediate is not None:
            return self._intermediate
        try:
            return self.stream.isatty()
        except (AttributeError, ValueError):
            return False

    def update(self, trials: list, status_lines: list[str], force: bool = False) -> None:
        """Redraw the live table if it is due (terminals only)."""
        if not self._live():
            return
        now = time.monotonic()
        if not force and now - self._last_draw < self.max_report_frequency:
            return
        self._last_draw = now
        self._draw(self.render(trials, status_lines), in_place=True)

    def final(self, trials: list, status_lines: list[str]) -> None:
        self._draw(self.render(trials, status_lines), in_place=self._live())
        self._drawn_lines = 0

    def _draw(self, text: str, in_place: bool) -> None:
        lines = text.splitlines()
        if in_place:  # no wrapping on a terminal: the cursor-up count must be exact
            width = shutil.get_terminal_size((120, 40)).columns
            lines = [line[:width] for line in lines]
        prefix = f"\x1b[{self._drawn_lines}F\x1b[J" if in_place and self._drawn_lines else ""
        self.stream.write(prefix + "\n".join(lines) + "\n")
        self.stream.flush()
        self._drawn_lines = len(lines) if in_place else 0

    # -- rendering ---------------------------------------------------------------------------------------
    def _params(self, trials: list) -> list[str]:
        if isinstance(self._parameter_columns, dict):
            return list(self._parameter_columns)
        if self._parameter_columns is not None:
            return list(self._parameter_columns)
        if self._param_keys:
            return self._param_keys
        keys: list[str] = []  # a searcher with its own space: show the config's scalar entries
        for t in trials[:5]:
            keys += [k for k, v in vg.flatten(t.config).items() if k not in keys and _scalar(v)]
        return keys[:6]

    def _metrics(self, trials: list) -> list[str]:
        if self._metric_columns is not None:
            return list(self._metric_columns)
        keys: list[str] = [self._metric] if self._metric else []
        for t in trials:
            for k, v in t.last_result.items():
                if k not in AUTO_METRICS and k not in keys and _scalar(v) and len(keys) < 4:
                    keys.append(k)
        return keys

    def render(self, trials: list, status_lines: list[str]) -> str:
        params, metrics = self._params(trials), self._metrics(trials)
        counts: dict[str, int] = {}
        for t in trials:
            counts[t.status] = counts.get(t.status, 0) + 1
        elapsed = time.monotonic() - self._start
        lines = ["== Status ==", f"Current time: {time.strftime('%Y-%m-%d %H:%M:%S')} "
                 f"(running for {elapsed:.1f} s)", *self._header, *status_lines,
                 f"Number of trials: {len(trials)} ("
                 + ", ".join(f"{counts[s]} {s}" for s in STATUS_ORDER if s in counts) + ")"]
        shown = sorted(trials, key=lambda t: STATUS_ORDER.index(t.status) if t.status in STATUS_ORDER else 9)
        if self._sort and self._metric:
            sign = -1.0 if self._mode == "max" else 1.0

            def key(t: Any) -> float:
                value = t.last_result.get(self._metric)
                return sign * float(value) if isinstance(value, numbers.Real) else float("inf")
            shown.sort(key=key)
        hidden = max(len(shown) - self.max_progress_rows, 0)
        shown = shown[:self.max_progress_rows]
        header = ["Trial name", "status", *_labels(params, self._parameter_columns),
                  "iter", "total time (s)", *_labels(metrics, self._metric_columns)]
        rows = [header]
        for t in shown:
            flat = vg.flatten(t.config)
            rows.append([str(t), t.status, *[_fmt(flat.get(k, "")) for k in params],
                         _fmt(t.last_result.get("training_iteration", "")),
                         _fmt(t.last_result.get("time_total_s", "")),
                         *[_fmt(t.last_result.get(k, "")) for k in metrics]])
        lines += _table(rows)
        if hidden:
            lines.append(f"... {hidden} more trials not shown")
        errored = [t for t in trials if t.status == ERROR][:self.max_error_rows]
        if errored:
            lines.append(f"Number of errored trials: {len([t for t in trials if t.status == ERROR])}")
            lines += _table([["Trial name", "# failures", "error file"]] +
                            [[str(t), str(t.num_failures), f"{t.local_path}/error.txt"] for t in errored])
        return "\n".join(lines)


def _labels(keys: list[str], columns: Any) -> list[str]:
    return [columns.get(k, k) for k in keys] if isinstance(columns, dict) else list(keys)


def _scalar(value: Any) -> bool:
    return isinstance(value, (numbers.Real, str)) or value is None


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    sep = "+-" + "-+-".join("-" * w for w in widths) + "-+"
    fmt = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    return [sep, fmt[0], sep, *fmt[1:], sep]
