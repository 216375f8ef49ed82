"""`synthset build RUN`: assemble the finished shards into dataset/ in the Hub layout."""

from __future__ import annotations

import argparse

from synthset.cli.output import show

HELP = "assemble finished shards into dataset/ for load_dataset and the Hub"
DESCRIPTION = (
    "Validate RUN's shards, then link them into RUN/dataset/ in the Hub layout "
    "(<config>/b<band>/<split>-NNNNN-of-MMMMM.parquet: one folder per scale band, so a 2x config lists the "
    "1x files plus the next band's) and write its README.md with `configs` and `dataset_info`. "
    "Refuses while a shard is missing."
)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("build", help=HELP, description=DESCRIPTION)
    parser.add_argument("run", help="run directory, e.g. runs/demo")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from synthset import api

    show(api.build(args.run))
    return 0
