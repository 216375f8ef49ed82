"""`synthset clean RUN [--yes]`: list (and remove) what no plan row owns."""

from __future__ import annotations

import argparse

from synthset.cli.output import show

HELP = "list (and with --yes remove) files of a run that no plan row owns"
DESCRIPTION = (
    "List the shard files and records that the current plan.parquet does not own (left by an earlier, "
    "larger plan), temp files of killed processes of this host and half-assembled builds; with --yes, "
    "remove them. Nothing the plan owns, and nothing of a live process, is touched."
)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("clean", help=HELP, description=DESCRIPTION)
    parser.add_argument("run", help="run directory, e.g. runs/demo")
    parser.add_argument("--yes", action="store_true", help="remove what is listed")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from synthset import api

    show(api.clean(args.run, remove=args.yes))
    return 0
