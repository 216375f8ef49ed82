"""`synthset validate RUN`: check a generated run against its plan; exit 1 on any problem."""

from __future__ import annotations

import argparse

from synthset.cli.output import show

HELP = "check a generated run against its plan (counts, ids, labels, every image)"
DESCRIPTION = (
    "Check every shard of RUN against its record (size and sha256) and every config and split against "
    "plan.parquet: each planned sample exactly once, exact per-class counts, labels in range, and every "
    "image decodes at the stored size. Prints a report naming each file or sample at fault; exits 1 on "
    "any problem. `synthset build` runs it too."
)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("validate", help=HELP, description=DESCRIPTION)
    parser.add_argument("run", help="run directory, e.g. runs/demo")
    parser.add_argument(
        "--fast", action="store_true", help="check each shard's size against its record instead of its sha256"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from synthset import api

    result = api.validate(args.run, fast=args.fast)
    show(result)
    return 0 if result.ok else 1
