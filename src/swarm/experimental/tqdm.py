"""Progress bars from inside tasks that the driver draws as one bar per description (as Ray's
``tqdm_ray``): ``from swarm.experimental.tqdm import tqdm``.

    task:   tqdm(...).update() ──▶ a state line "__swarm_tqdm__{json}" on the worker's stdout
            (at most 10 per second per bar, always on close)
                  │ worker stdout pipe ──▶ node manager ──LOG_LINES──▶ driver's core worker
                  ▼
    driver: _print_worker_lines ──▶ ProgressView.apply(state)   (the line itself is not printed)
            tqdm(...) in the driver ──▶ ProgressView.apply(state)   (directly)
                  ▼
            one display per description: the bars of every task that share it add up (n and total),
            drawn with the ``tqdm`` package when it is installed, as plain text otherwise

A finished group (all its bars closed) stays open a moment (``LINGER_S``) in case more tasks with the
same description start — tasks running in waves would otherwise split one bar into several — and is
closed when that moment has passed without one, or at exit (after waiting briefly for the last states
of bars still open in tasks, which travel apart from the tasks' results).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, Callable

from swarm.core import core_worker

MAGIC = core_worker.PROGRESS_MAGIC
LINGER_S = 0.5
EXIT_WAIT_S = 2.0

# display options of tqdm that mean nothing for a bar drawn elsewhere: accepted and ignored
_COSMETIC = frozenset(("leave", "ncols", "nrows", "dynamic_ncols", "mininterval", "maxinterval", "miniters",
                       "ascii", "colour", "smoothing", "bar_format", "file", "unit_scale", "unit_divisor",
                       "postfix", "lock_args", "delay", "write_bytes"))


def _in_worker() -> bool:
    w = core_worker.current()
    return w is not None and w.mode == "worker"


class tqdm:  # noqa: N801  (tqdm's name, so that it is a drop-in)
    """A progress bar. In a task or actor method its state goes to the driver, which draws the bars of
    all tasks with the same ``desc`` as one; in the driver it is drawn right here.

    Supports the common part of tqdm's interface: iterating (``for x in tqdm(items)``), ``update(n)``,
    ``set_description``, ``refresh``, ``reset``, ``close``, ``n``, ``total``, use as a context manager.
    ``position`` is accepted for compatibility: bars appear in the order their descriptions first did.
    """

    def __init__(self, iterable: Iterable | None = None, desc: str | None = None, total: float | None = None,
                 *, unit: str = "it", position: int | None = None, initial: float = 0, disable: bool = False,
                 flush_interval_s: float = 0.1, **display_options: Any) -> None:
        unknown = sorted(set(display_options) - _COSMETIC)
        if unknown:
            raise TypeError(f"swarm.experimental.tqdm.tqdm() got unsupported argument(s) "
                            f"{', '.join(unknown)}; it takes iterable, desc, total, unit, position, initial, "
                            f"disable and flush_interval_s (tqdm's display options are accepted and ignored)")
        if flush_interval_s < 0:
            raise ValueError("flush_interval_s must be >= 0")
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except (TypeError, AttributeError):
                total = None
        self.iterable = iterable
        self.desc = desc
        self.total = total
        self.unit = unit
        self.position = position
        self.n = initial
        self.disable = disable
        self._interval = flush_interval_s
        self._id = f"{os.getpid()}-{os.urandom(6).hex()}"
        self._remote = _in_worker()
        self._last = 0.0
        self._closed = False
        if not disable:
            self._send()

    # -- the tqdm interface -----------------------------------------------------------------------
    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError("this tqdm bar has no iterable: create it with tqdm(iterable) to iterate, or "
                            "call update() yourself")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __len__(self) -> int:
        if self.total is None:
            raise TypeError("this tqdm bar has no total")
        return int(self.total)

    def __enter__(self) -> tqdm:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # an interpreter shutting down may have torn down what close needs
            pass

    def update(self, n: float = 1) -> None:
        self.n += n
        if self.disable or self._closed:
            return
        now = time.monotonic()
        reached = self.total is not None and self.n >= self.total > self.n - n   # crossed it just now
        if reached or now - self._last >= self._interval:
            self._send(now=now)

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc
        if refresh:
            self.refresh()

    def set_description_str(self, desc: str | None = None, refresh: bool = True) -> None:
        self.set_description(desc, refresh)

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        """Accepted for compatibility; postfixes are not shown by aggregated bars."""

    def refresh(self) -> None:
        if not self.disable and not self._closed:
            self._send()

    def reset(self, total: float | None = None) -> None:
        self.n = 0
        if total is not None:
            self.total = total
        self.refresh()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self.disable:
            self._send()

    @staticmethod
    def write(s: str, file: Any = None, end: str = "\n") -> None:
        """Print a line without breaking the bars (in the driver they are cleared around it)."""
        out = file or sys.stdout
        if _in_worker():
            out.write(s + end)
            return
        with bars_hidden():
            out.write(s + end)
            out.flush()

    # -- where the state goes ---------------------------------------------------------------------
    def _state(self) -> dict:
        return {"id": self._id, "desc": self.desc, "n": self.n, "total": self.total, "unit": self.unit,
                "pos": self.position, "closed": self._closed}

    def _send(self, now: float | None = None) -> None:
        self._last = now if now is not None else time.monotonic()
        state = self._state()
        if not self._remote:
            view().apply(state)
            return
        _write_state_line(MAGIC + json.dumps(state, separators=(",", ":")))


def _write_state_line(line: str) -> None:
    """To the worker's real stdout (its lines reach the driver), on a line of its own."""
    from swarm.core.worker_main import TaggedStream
    out = sys.stdout if isinstance(sys.stdout, TaggedStream) else sys.__stdout__
    if out is None:
        return
    if getattr(out, "_open_line", False):   # the task printed part of a line: ours must not join it
        line = "\n" + line
    try:
        out.write(line + "\n")
        out.flush()
    except (OSError, ValueError):   # stdout closed: the bar just is not shown
        pass


# -- the driver's side ------------------------------------------------------------------------------
class _TqdmDisplay:
    """One group drawn by the tqdm package."""

    def __init__(self, tqdm_cls: Any, desc: str | None, unit: str, total: float | None, stream: Any) -> None:
        self.bar = tqdm_cls(total=total, desc=desc, unit=unit, file=stream, dynamic_ncols=True, leave=True)

    def show(self, n: float, total: float | None) -> None:
        bar = self.bar
        total_changed = total != bar.total
        if total_changed:
            bar.total = total
        delta = n - bar.n
        if delta > 0:
            bar.update(delta)   # tqdm limits how often it redraws
        elif delta < 0 or total_changed:
            bar.n = n
            bar.refresh()

    def clear(self) -> None:
        self.bar.clear()

    def redraw(self) -> None:
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


class _TextDisplay:
    """One group as plain text: redrawn in place on a terminal, a line a second (and the last) otherwise."""

    def __init__(self, desc: str | None, unit: str, total: float | None, stream: Any) -> None:
        self.desc = desc or "progress"
        self.unit = unit
        self.stream = stream
        try:
            self.tty = bool(stream.isatty())
        except (AttributeError, ValueError):
            self.tty = False
        self.n: float = 0
        self.total = total
        self.width = 0
        self.printed_at = 0.0
        self.shown = ""

    def _text(self) -> str:
        n = f"{self.n:g}"
        if self.total:
            return (f"{self.desc}: {100 * self.n / self.total:3.0f}% {n}/{self.total:g} {self.unit}")
        return f"{self.desc}: {n} {self.unit}"

    def _write(self, s: str) -> None:
        try:
            self.stream.write(s)
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def show(self, n: float, total: float | None) -> None:
        self.n, self.total = n, total
        text = self._text()
        if text == self.shown:
            return
        now = time.monotonic()
        if self.tty:
            self._write("\r" + text.ljust(self.width))
            self.width = len(text)
            self.shown = text
        elif now - self.printed_at >= 1.0:
            self._write(text + "\n")
            self.printed_at = now
            self.shown = text

    def clear(self) -> None:
        if self.tty and self.width:
            self._write("\r" + " " * self.width + "\r")

    def redraw(self) -> None:
        if self.tty and self.shown:
            self._write("\r" + self.shown)

    def close(self) -> None:
        text = self._text()
        if self.tty:
            self._write("\r" + text.ljust(self.width) + "\n")
        elif text != self.shown:
            self._write(text + "\n")


class _Group:
    """The bars that share one description."""

    __slots__ = ("desc", "unit", "members", "display", "complete_since")

    def __init__(self, desc: str | None, unit: str, display: Any) -> None:
        self.desc = desc
        self.unit = unit
        self.members: dict[str, tuple[float, float | None, bool]] = {}   # bar id -> (n, total, closed)
        self.display = display
        self.complete_since: float | None = None

    def totals(self) -> tuple[float, float | None]:
        n = sum(m[0] for m in self.members.values())
        totals = [m[1] for m in self.members.values()]
        known = [t for t in totals if t is not None]
        return n, (sum(known) if len(known) == len(totals) else None)

    def complete(self) -> bool:
        return all(m[2] for m in self.members.values())


class ProgressView:
    """The driver's bars: bar states come in (from tasks, or from bars made in the driver), one display
    per description goes out. Thread-safe: states arrive on the connection thread and the main thread."""

    def __init__(self, stream: Any = None, display_factory: Callable[..., Any] | None = None) -> None:
        self._cond = threading.Condition(threading.RLock())
        self._groups: dict[str | None, _Group] = {}
        self._where: dict[str, str | None] = {}     # bar id -> its group's description
        self._stream = stream
        self._factory = display_factory or _default_factory()

    def _new_display(self, desc: str | None, unit: str, total: float | None) -> Any:
        return self._factory(desc, unit, total, self._stream or sys.stderr)

    def apply(self, state: dict) -> None:
        bar_id = str(state["id"])
        desc = state.get("desc")
        desc = None if desc is None else str(desc)
        unit = str(state.get("unit") or "it")
        n = _number(state.get("n") or 0)
        total = state.get("total")
        total = None if total is None else _number(total)
        closed = bool(state.get("closed"))
        with self._cond:
            self._close_lingering(time.monotonic())
            old = self._where.get(bar_id, desc)
            if old != desc and old in self._groups:   # set_description moved the bar to another group
                left = self._groups[old]
                left.members.pop(bar_id, None)
                if not left.members:
                    self._close_group(old)
                else:
                    left.display.show(*left.totals())
            group = self._groups.get(desc)
            if group is None:
                group = self._groups[desc] = _Group(desc, unit, self._new_display(desc, unit, total))
            group.members[bar_id] = (n, total, closed)
            self._where[bar_id] = desc
            group.display.show(*group.totals())
            if group.complete():
                if group.complete_since is None:
                    group.complete_since = time.monotonic()
                    _call_later(LINGER_S + 0.05, self._linger_check)
            else:
                group.complete_since = None
            self._cond.notify_all()

    def _close_group(self, desc: str | None) -> None:
        group = self._groups.pop(desc)
        for bar_id in group.members:
            self._where.pop(bar_id, None)
        group.display.close()

    def _close_lingering(self, now: float) -> None:
        for desc in [d for d, g in self._groups.items()
                     if g.complete_since is not None and now - g.complete_since >= LINGER_S]:
            self._close_group(desc)

    def _linger_check(self) -> None:
        with self._cond:
            self._close_lingering(time.monotonic())

    def active(self) -> bool:
        return bool(self._groups)

    @contextlib.contextmanager
    def hidden(self) -> Iterator[None]:
        """Clear the bars while other output is written, then draw them again below it."""
        with self._cond:
            groups = list(self._groups.values())
            for g in groups:
                g.display.clear()
            try:
                yield
            finally:
                for g in groups:
                    g.display.redraw()

    def close_all(self, wait_s: float = 0.0) -> None:
        """Close every display; first wait up to ``wait_s`` for bars still open in tasks to report their
        end (their last states may still be on the way)."""
        deadline = time.monotonic() + wait_s
        with self._cond:
            while any(not g.complete() for g in self._groups.values()):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            for desc in list(self._groups):
                self._close_group(desc)

    def take_forwarded(self, lines: list) -> list:
        """Apply the bar states among forwarded worker lines; returns the other lines."""
        rest = []
        for item in lines:
            line = item[2]
            if line.startswith(MAGIC):
                try:
                    state = json.loads(line[len(MAGIC):])
                    if isinstance(state, dict) and "id" in state:
                        self.apply(state)
                        continue
                except (ValueError, TypeError):
                    pass   # not one of ours after all: print it
            rest.append(item)
        return rest


def _number(x: Any) -> float:
    """A count from a state line: ints stay ints (so bars read 50/100, not 50.0/100.0)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError(f"not a count: {x!r}")
    return x


def _default_factory() -> Callable[..., Any]:
    try:
        import tqdm as tqdm_package  # the real one (absolute import), when installed
        tqdm_cls = tqdm_package.tqdm
    except ImportError:
        return _TextDisplay
    return lambda desc, unit, total, stream: _TqdmDisplay(tqdm_cls, desc, unit, total, stream)


def _call_later(delay: float, fn: Callable[[], None]) -> None:
    """On the core worker's timer thread (owned and stopped by it); without one, the next state that
    arrives or the exit closes lingering bars instead."""
    w = core_worker.current()
    timers = getattr(w, "timers", None)
    if timers is not None and not getattr(w, "shutting_down", False):
        timers.call_later(delay, fn)


_view: ProgressView | None = None
_view_lock = threading.Lock()


def view() -> ProgressView:
    """This process's progress view (made on first use; its bars are closed at exit)."""
    global _view
    if _view is None:
        with _view_lock:
            if _view is None:
                _view = ProgressView()
                atexit.register(_close_at_exit)
    return _view


def _close_at_exit() -> None:
    v = _view
    if v is None:
        return
    from swarm import api
    # while this driver is still attached, the last states of tasks' bars may still be on the way
    try:
        v.close_all(EXIT_WAIT_S if api.is_initialized() else 0.0)
    except KeyboardInterrupt:   # Ctrl-C while waiting: close what there is and go
        v.close_all(0.0)


@contextlib.contextmanager
def bars_hidden() -> Iterator[None]:
    v = _view
    if v is None or not v.active():
        yield
        return
    with v.hidden():
        yield


def print_forwarded(lines: list, write: Callable[[list], None]) -> None:
    """For the driver's core worker: draw the bar states among forwarded worker lines and ``write``
    the other lines, with the bars cleared around them."""
    v = view()
    rest = v.take_forwarded(lines)
    if not rest:
        return
    if not v.active():
        write(rest)
        return
    with v.hidden():
        write(rest)


def safe_print(*args: Any, **kwargs: Any) -> None:
    """``print`` that does not break the bars (Ray's ``tqdm_ray.safe_print``)."""
    with bars_hidden():
        print(*args, **kwargs)


__all__ = ["tqdm", "safe_print", "ProgressView"]
