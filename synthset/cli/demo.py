"""`synthset demo`: the whole pipeline on the tiny offline models, from the recipes shipped in the package.

It builds the tiny models first (as `synthset tiny-models` does: only the CLI may reach `synthset.testing`),
then runs plan -> generate -> build -> card -> review for each demo recipe in the current directory.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from synthset.cli.output import show

HELP = "run the demo pipeline on tiny offline models, in the current directory (no GPU, no network)"
DESCRIPTION = (
    "Build the tiny offline models (under $SYNTHSET_HOME, default ~/.cache/synthset), then plan, generate, "
    "build, card and review the demo recipes shipped inside the package: paper A's prompt ladder on 10 "
    "ImageNet classes (runs/demo) and paper B's augmentation-conditioning on its naive images "
    "(runs/demo-augcond). Everything is written under ./runs; a rerun skips finished work. "
    "`synthset demo --quick` runs 2 classes x 4 images per config (seconds)."
)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("demo", help=HELP, description=DESCRIPTION)
    parser.add_argument("--directory", type=Path, default=Path("."), help="where to work (default: here)")
    parser.add_argument("--quick", action="store_true", help="2 classes x 4 images per config: an install check")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from synthset import api, testing

    testing.build_all()
    show(api.demo(args.directory, quick=args.quick))
    return 0
