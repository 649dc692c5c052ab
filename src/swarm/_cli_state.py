"""``swarm list | summary | get | logs``: the state API (``swarm.util.state``) from the command line.

    swarm list tasks --filter state=FAILED ──┐   find the cluster (``swarm start`` nodes, else a
    swarm summary tasks                      ├──▶ cluster that ``init()`` started on this machine),
    swarm get actor 3f2a                     │   attach as a quiet driver, call swarm.util.state,
    swarm logs --task 3f2a --follow ─────────┘   print a table (or json / yaml), detach

Ids can be given as unambiguous prefixes, as with git; an ambiguous one lists its candidates.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from typing import Any, Callable

KINDS = ("tasks", "actors", "nodes", "objects", "workers", "jobs")
COMMANDS = ("list", "summary", "get", "logs")
STATE_ORDER = ("RUNNING", "PENDING", "FINISHED", "FAILED", "ALIVE", "RESTARTING", "DEAD")

# table columns per kind: (key, header, max width); the last column takes what is left of the line
COLUMNS: dict[str, list[tuple[str, str, int]]] = {
    "tasks": [("task_id", "TASK_ID", 32), ("state", "STATE", 8), ("name", "NAME", 24),
              ("duration_s", "SECONDS", 8), ("error", "ERROR / DETAIL", 60)],
    "actors": [("actor_id", "ACTOR_ID", 40), ("class_name", "CLASS", 18), ("state", "STATE", 10),
               ("name", "NAME", 14), ("pid", "PID", 7), ("death_cause", "DEATH CAUSE", 60)],
    "nodes": [("node_id", "NODE_ID", 16), ("state", "STATE", 5), ("node_ip", "IP", 15),
              ("is_head_node", "HEAD", 5), ("resources_total", "RESOURCES", 60)],
    "objects": [("object_id", "OBJECT_ID", 40), ("size", "SIZE", 11), ("where", "WHERE", 22),
                ("owner_pid", "OWNER PID", 9), ("owner", "OWNER", 16)],
    "workers": [("worker_id", "WORKER_ID", 16), ("state", "STATE", 8), ("pid", "PID", 7),
                ("node_id", "NODE_ID", 16), ("name", "RUNS / RAN LAST", 40)],
    "jobs": [("submission_id", "SUBMISSION_ID", 28), ("status", "STATUS", 9),
             ("entrypoint", "ENTRYPOINT", 30), ("message", "MESSAGE", 60)],
}


class CliError(Exception):
    """Said to the user as it is (no traceback), exit status 1."""


# -- parser -----------------------------------------------------------------------------------------
def add_parsers(sub: Any) -> None:
    """Register ``list``, ``summary``, ``get`` and ``logs`` on the ``swarm`` command's subparsers."""
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--address", default=os.environ.get("SWARM_ADDRESS", "auto"),
                       help="cluster address (default: the cluster running on this machine)")
        p.add_argument("--token-file", help="file holding the cluster token (else SWARM_TOKEN)")

    p = sub.add_parser("list", help="list tasks, actors, nodes, objects, workers or jobs")
    p.add_argument("kind", choices=KINDS)
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="keep rows where KEY=VALUE (or KEY!=VALUE); repeat to combine")
    p.add_argument("--limit", type=int, default=100, help="at most this many rows (default 100)")
    p.add_argument("--detail", action="store_true", help="every field of each row")
    p.add_argument("--format", choices=("table", "json", "yaml"), default="table")
    common(p)
    p = sub.add_parser("summary", help="counts of tasks or actors by name and state; objects by place")
    p.add_argument("kind", choices=("tasks", "actors", "objects"))
    p.add_argument("--format", choices=("table", "json", "yaml"), default="table")
    common(p)
    p = sub.add_parser("get", help="one actor, task, node or worker by id (or id prefix)")
    p.add_argument("kind", choices=("actor", "task", "node", "worker"))
    p.add_argument("id")
    p.add_argument("--format", choices=("table", "json", "yaml"), default="table")
    common(p)
    p = sub.add_parser("logs", help="what a task, actor or worker printed, or a node's log file",
                       description="swarm logs ID guesses whether ID is a task, an actor or a worker; "
                                   "without arguments it lists the log files of every node.")
    p.add_argument("id", nargs="?", help="a task, actor or worker id (prefix), or with --node a file name")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--task", metavar="ID")
    which.add_argument("--actor", metavar="ID")
    which.add_argument("--worker", metavar="ID")
    p.add_argument("--node", metavar="ID", help="with FILE: that node's log file; alone: list its files")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new lines as they come")
    p.add_argument("--tail", type=int, default=1000, help="last N lines (-1: all; default 1000)")
    p.add_argument("--err", action="store_true", help="stderr instead of stdout")
    p.add_argument("--timeout", type=float, help="with --follow: stop after this many seconds")
    common(p)


def run(ns: argparse.Namespace) -> int:
    """Run one of COMMANDS; returns the exit status."""
    import swarm
    from swarm.exceptions import SwarmError
    prog = f"swarm {ns.command}"
    try:
        if getattr(ns, "format", None) == "yaml":
            _yaml()   # say it before connecting
        _connect(ns.address, ns.token_file)
        try:
            return {"list": _list, "summary": _summary, "get": _get, "logs": _logs}[ns.command](ns)
        finally:
            swarm.shutdown()
    except (CliError, SwarmError, ConnectionError, ValueError) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:   # `swarm logs ... | head`
        sys.stderr.close()
        return 0


# -- connecting -------------------------------------------------------------------------------------
def _connect(address: str, token_file: str | None) -> None:
    """Attach to the cluster as a driver that prints nothing of what workers print."""
    import swarm
    from swarm.node import discovery
    local = discovery.local_clusters()
    if address == "auto" and not any(n.get("head") for n in discovery.live_nodes()):
        if not local:
            raise CliError("no swarm cluster is running on this machine: start one with `swarm start "
                           "--head` (or run a program that calls swarm.init()), or pass --address "
                           "HOST:PORT of a running cluster")
        if len(local) > 1:
            print(f"(several swarm clusters run on this machine; using the one started last, by pid "
                  f"{local[-1]['driver_pid']}: pass --address {local[-1]['unix_address']} or another's "
                  f"to choose)", file=sys.stderr)
        address = local[-1]["unix_address"]
    found = next((c for c in local if address in (c["unix_address"], c["node_id"])), None)
    if found is not None:   # a cluster init() started: its token is in its session directory
        address, token_file = found["unix_address"], token_file or found["token_file"]
    try:
        swarm.init(address=address, log_to_driver=False, _token_file=token_file)
    except (OSError, ConnectionError) as e:
        raise CliError(f"cannot connect to the cluster at {address}: {e}") from None


# -- list / summary / get ---------------------------------------------------------------------------
def _parse_filters(items: list[str]) -> list[tuple[str, str, str]]:
    out = []
    for item in items:
        key, op, value = item.partition("!=") if "!=" in item else item.partition("=")
        if not op or not key.strip():
            raise CliError(f"bad --filter {item!r}: use KEY=VALUE or KEY!=VALUE, e.g. --filter state=FAILED")
        key, value = key.strip(), value.strip()
        if key in ("state", "type"):
            value = value.upper()   # states are upper case; accept `state=failed`
        out.append((key, op, value))
    return out


def _list_fn(kind: str) -> Callable[..., list[dict]]:
    from swarm.util import state
    fn = getattr(state, f"list_{kind}", None)
    if fn is None:
        raise CliError(f"`swarm list {kind}` is not available in this version of swarm")
    return fn  # type: ignore[no-any-return]


def _list(ns: argparse.Namespace) -> int:
    filters = _parse_filters(ns.filter)
    if ns.limit < 1:
        raise CliError(f"--limit must be at least 1, not {ns.limit}")
    rows = _list_fn(ns.kind)(filters=filters or None, limit=ns.limit + 1, detail=ns.detail)
    if not rows and filters:
        _check_filter_keys(ns.kind, filters)
    more = len(rows) > ns.limit
    rows = rows[:ns.limit]
    if ns.format != "table":
        _dump(rows, ns.format)
        return 0
    if ns.detail:
        for row in rows:
            _print_record(row)
    else:
        _print_table(rows, COLUMNS.get(ns.kind) or _guess_columns(rows), ns.kind)
    if more:
        print(f"(showing the first {ns.limit}; --limit N shows more, --filter narrows them)")
    return 0


def _check_filter_keys(kind: str, filters: list[tuple[str, str, str]]) -> None:
    """Nothing matched: a misspelt key is the likely reason, so say which keys there are."""
    sample = _list_fn(kind)(limit=1)
    unknown = [k for k, _, _ in filters if sample and k not in sample[0]]
    if unknown:
        raise CliError(f"{kind} have no field {unknown[0]!r}; filter on one of: {', '.join(sample[0])}")


def _summary(ns: argparse.Namespace) -> int:
    from swarm.util import state
    data = {"tasks": state.summarize_tasks, "actors": state.summarize_actors,
            "objects": state.summarize_objects}[ns.kind]()
    if ns.format != "table":
        _dump(data, ns.format)
        return 0
    if ns.kind == "objects":
        print(f"{data['total_objects']} objects, {_size(data['total_size_bytes'])}"
              + (f"; {data['spilled']} spilled ({_size(data.get('spilled_bytes', 0))})"
                 if data.get("spilled") else ""))
        by_where = [{"where": k, **v} for k, v in data.get("by_where", {}).items()]
        _print_table(by_where, [("where", "WHERE", 40), ("objects", "OBJECTS", 9),
                                ("size_bytes", "BYTES", 16)], "places")
        by_owner = [{"owner": k, **v} for k, v in data.get("by_owner", {}).items()]
        _print_table(sorted(by_owner, key=lambda r: -r["size_bytes"]),
                     [("owner", "OWNER", 16), ("pid", "PID", 7), ("objects", "OBJECTS", 9),
                      ("size_bytes", "BYTES", 16)], "owners")
        return 0
    counts = data["summary"]
    states = sorted({s for by_state in counts.values() for s in by_state},
                    key=lambda s: (STATE_ORDER.index(s) if s in STATE_ORDER else len(STATE_ORDER), s))
    label = "FUNCTION" if ns.kind == "tasks" else "CLASS"
    rows = [{"name": name, "total": sum(by_state.values()), **by_state}
            for name, by_state in sorted(counts.items())]
    _print_table(rows, [("name", label, 40), ("total", "TOTAL", 7)] + [(s, s, 10) for s in states],
                 ns.kind)
    print(f"total: {data['total']}")
    return 0


def _get(ns: argparse.Namespace) -> int:
    row = _resolve(ns.kind, ns.id)
    if ns.kind == "task":
        from swarm.util import state
        row = state.get_task(row["task_id"]) or row
    if ns.format != "table":
        _dump(row, ns.format)
    else:
        _print_record(row)
    return 0


_ID_KEYS = {"task": "task_id", "actor": "actor_id", "node": "node_id", "worker": "worker_id"}


def _resolve(kind: str, given: str) -> dict:
    """The row of the ``kind`` whose id is ``given`` or starts with it (exactly one)."""
    key = _ID_KEYS[kind]
    given = given.strip().lower()
    if kind == "task" and len(given) == 32:   # a whole id: found without listing
        from swarm.util import state
        row = state.get_task(given)
        if row is not None:
            return row
    rows = _list_fn(kind + "s")(limit=10**7)
    found = [r for r in rows if str(r.get(key)) == given] or \
            [r for r in rows if str(r.get(key) or "").startswith(given)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise CliError(f"no {kind} whose id starts with {given!r}: `swarm list {kind}s` shows them")
    shown = "\n".join(f"  {r[key]}  {r.get('name') or r.get('class_name') or ''} {r.get('state', '')}"
                      for r in found[:10])
    more = f"\n  ... and {len(found) - 10} more" if len(found) > 10 else ""
    raise CliError(f"{given!r} matches {len(found)} {kind}s; give more of the id:\n{shown}{more}")


# -- logs -------------------------------------------------------------------------------------------
def _logs(ns: argparse.Namespace) -> int:
    from swarm.util import state
    if ns.tail < -1:
        raise CliError(f"--tail must be -1 (everything) or at least 0, not {ns.tail}")
    opts: dict[str, Any] = {"tail": ns.tail, "follow": ns.follow, "timeout": ns.timeout,
                            "suffix": "err" if ns.err else "out"}
    what: str
    if ns.task or ns.actor or ns.worker:
        if ns.id:
            raise CliError(f"give either --task/--actor/--worker or an id, not both (got {ns.id!r} too)")
        kind = "task" if ns.task else "actor" if ns.actor else "worker"
        row = _resolve(kind, ns.task or ns.actor or ns.worker)
    elif ns.node is not None:
        if not ns.id:
            return _print_files(state.list_logs(ns.node))
        opts.pop("suffix")
        return _print_lines(state.get_log(node_id=ns.node, filename=ns.id, **opts), f"file {ns.id}", ns)
    elif ns.id:
        kind, row = _guess(ns.id)
    else:
        return _print_files(state.list_logs())
    key = _ID_KEYS[kind]
    what = f"{kind} {row[key]}"
    return _print_lines(state.get_log(**{key: row[key]}, **opts), what, ns)


def _guess(given: str) -> tuple[str, dict]:
    """``swarm logs ID``: a task, an actor or a worker — whichever the id names (a whole id wins
    over a prefix: task ids begin with the id of the worker that submitted them)."""
    matches: list[tuple[str, dict]] = []
    errors = []
    for kind in ("worker", "actor", "task"):
        try:
            row = _resolve(kind, given)
        except CliError as e:
            if "matches" in str(e):
                errors.append(str(e))
            continue
        if row[_ID_KEYS[kind]] == given.lower():
            return kind, row
        matches.append((kind, row))
    if len(matches) == 1 and not errors:
        return matches[0]
    if not matches and not errors:
        raise CliError(f"no task, actor or worker whose id starts with {given!r}: `swarm list tasks`, "
                       f"`swarm list actors` and `swarm list workers` show them; a node's log file: "
                       f"swarm logs --node NODE_ID FILE")
    names = [f"{kind} {row[_ID_KEYS[kind]]}" for kind, row in matches]
    raise CliError("\n".join([f"{given!r} is ambiguous: " + "; ".join(names)] + errors
                             + ["use --task, --actor or --worker, with more of the id"]))


def _print_lines(lines: Any, what: str, ns: argparse.Namespace) -> int:
    n = 0
    for line in lines:
        print(line, flush=ns.follow)
        n += 1
    if n == 0 and what.startswith("file "):
        print(f"({what[5:]} is empty)", file=sys.stderr)
    elif n == 0:
        stream = "stderr" if ns.err else "stdout"
        other = " (--err shows stderr)" if stream == "stdout" else ""
        print(f"({what} wrote nothing to {stream}{other})", file=sys.stderr)
    return 0


def _print_files(by_node: dict[str, list[str]]) -> int:
    for node_id, names in by_node.items():
        print(f"node {node_id}:")
        for name in names:
            print(f"  {name}")
    print("read one: swarm logs --node NODE_ID FILE (or --task / --actor / --worker ID)")
    return 0


# -- output ---------------------------------------------------------------------------------------
def _yaml() -> Any:
    try:
        import yaml
    except ImportError:
        raise CliError("--format yaml needs PyYAML, which is not installed: pip install pyyaml "
                       "(or use --format json)") from None
    return yaml


def _plain(value: Any) -> Any:
    """JSON/YAML-safe: bytes as hex, everything else as it is or as text."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _dump(data: Any, fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(_plain(data), indent=2))
    else:
        print(_yaml().safe_dump(_plain(data), sort_keys=False, width=100), end="")


def _cell(key: str, value: Any) -> str:
    if value is None:
        return ""
    if key == "error" or key == "death_cause":
        # the line that says what happened: a traceback's last line
        lines = [ln.strip() for ln in str(value).strip().splitlines() if ln.strip()]
        return lines[-1] if lines else ""
    if key == "duration_s" and isinstance(value, (int, float)):
        return f"{value:.3f}"
    if key in ("size", "size_bytes") and isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dict):   # resources
        return ", ".join(f"{k}={_amount(str(k), v)}" for k, v in value.items() if "_group_" not in str(k))
    return str(value).replace("\n", " ")


def _print_table(rows: list[dict], columns: list[tuple[str, str, int]], what: str) -> None:
    if not rows:
        print(f"(no {what})")
        return
    width = max(80, shutil.get_terminal_size((100, 24)).columns)
    cells = [[_cell(k, r.get("error") or r.get("detail") if k == "error" else r.get(k))
              for k, _, _ in columns] for r in rows]
    widths = [min(cap, max(len(h), *(len(c[i]) for c in cells))) for i, (_, h, cap) in enumerate(columns)]
    # the last column gets what is left of the line
    widths[-1] = max(len(columns[-1][1]), width - sum(widths[:-1]) - 2 * (len(widths) - 1))

    def fit(text: str, n: int) -> str:
        return text if len(text) <= n else text[:n - 1] + "…"
    print("  ".join(h.ljust(w) for (_, h, _), w in zip(columns, widths, strict=True)).rstrip())
    for c in cells:
        print("  ".join(fit(t, w).ljust(w) for t, w in zip(c, widths, strict=True)).rstrip())


def _guess_columns(rows: list[dict]) -> list[tuple[str, str, int]]:
    """A kind without a column set (e.g. jobs): its first keys, as many as fit."""
    keys = list(rows[0]) if rows else []
    return [(k, k.upper(), 32) for k in keys[:5]]


def _print_record(row: dict) -> None:
    """One row, a field a line; long text (tracebacks) indented under its key."""
    for key, value in _plain(row).items():
        if isinstance(value, str) and "\n" in value:
            print(f"{key}:")
            for line in value.rstrip("\n").splitlines():
                print(f"    {line}")
        elif isinstance(value, (dict, list)):
            print(f"{key}: {json.dumps(value)}")
        else:
            print(f"{key}: {'' if value is None else value}")
    print()


def _amount(key: str, v: Any) -> str:
    if not isinstance(v, (int, float)):
        return str(v)
    return _size(int(v)) if "memory" in key else f"{v:g}"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024   # type: ignore[assignment]
    return f"{n} B"
