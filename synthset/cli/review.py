"""`synthset review RUN`: the contact sheets to look at before publishing."""

from __future__ import annotations

import argparse
from pathlib import Path

from synthset.cli.output import show

HELP = "write an HTML contact sheet of every class to look at before publishing"
DESCRIPTION = (
    "Write RUN/review.html: a self-contained static page (no server; open it from disk) with one contact "
    "sheet per class, worst classes first, flagged images (NSFW, below the minimum CLIP score, "
    "near-duplicates) first; each thumbnail shows its CLIP score and NSFW result, and its prompt, seed and "
    "attempt on hover. The samples the quality gate redrew and dropped are shown apart. Works on the "
    "shards made so far, before `synthset build`. With --publish it goes into RUN/dataset/ (and so to "
    "the Hub with `synthset push`), without the images of rejected attempts."
)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("review", help=HELP, description=DESCRIPTION)
    parser.add_argument("run", help="run directory, e.g. runs/demo")
    parser.add_argument("--out", type=Path, default=None, help="where to write the page (default RUN/review.html)")
    parser.add_argument(
        "--per-class", type=int, default=16, metavar="N", help="published images shown per class (default 16)"
    )
    parser.add_argument(
        "--publish", action="store_true", help="write it into RUN/dataset/ to be published beside the card"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from synthset import api

    show(api.review(args.run, out=args.out, per_class=args.per_class, publish=args.publish))
    return 0
