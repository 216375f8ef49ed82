"""`synthset status RUN`: where a generate run stands, once or refreshed with --watch."""

from __future__ import annotations

import argparse
import sys
import time

HELP = "where a generate run stands: shards done / being made / pending, workers, ETA"
DESCRIPTION = (
    "Read RUN's shard records and claims (nothing is asked of the workers) and print shards done, "
    "being made, with an expired lease and pending; per worker its shards, images per second, last "
    "heartbeat and the shards it holds; the ETA at the live workers' rate; and the worker-hours spent "
    "(GPU-hours for GPU workers)."
)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("status", help=HELP, description=DESCRIPTION)
    parser.add_argument("run", help="run directory, e.g. runs/demo")
    parser.add_argument("--watch", type=float, metavar="S", default=None, help="refresh every S seconds")
    parser.add_argument(
        "--lease-seconds", type=float, default=300.0, metavar="S", help="the workers' lease (default 300)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from synthset import api

    while True:
        result = api.status(args.run, lease_seconds=args.lease_seconds)
        report = str(result)
        for warning in result.warnings:  # e.g. squeue unreachable: the shards' status is still shown
            print(f"synthset: {warning}", file=sys.stderr)
        if not args.watch:
            print(report)
            return 0
        print("\033[2J\033[H" + time.strftime("%H:%M:%S ") + str(args.run) + "\n" + report, flush=True)
        time.sleep(args.watch)
