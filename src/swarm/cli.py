"""The ``swarm`` command."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="swarm", description="swarm: distributed execution for Python")
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("microbenchmark", help="run the microbenchmark suite on a local cluster",
                           add_help=False)
    bench.add_argument("args", nargs=argparse.REMAINDER)
    sub.add_parser("version", help="print the version")
    ns, rest = parser.parse_known_args(argv)
    if ns.command == "microbenchmark":
        from swarm import microbenchmark
        return microbenchmark.main(list(ns.args) + rest)
    if ns.command == "version":
        import swarm
        print(swarm.__version__)
        return 0
    parser.error(f"unknown command {ns.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
