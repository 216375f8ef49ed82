"""`synthset versions ORG/NAME`: a dataset repo's tagged versions."""

from __future__ import annotations

import argparse

from synthset.cli.output import show

HELP = "list a dataset repo's tagged versions with their configs and row counts"
DESCRIPTION = (
    "List the tags of a Hub dataset repo, each with its commit, its configs and their row counts "
    "(from that version's dataset_info), and the branches whose head it is."
)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("versions", help=HELP, description=DESCRIPTION)
    parser.add_argument("repo", help="dataset repo id, org/name")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from synthset import api

    show(api.versions(args.repo))
    return 0
