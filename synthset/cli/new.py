"""`synthset new --classes FILE|DATASET`: write a commented recipe for your own classes."""

from __future__ import annotations

import argparse

from synthset.cli.output import show

HELP = "write a commented recipe for your own classes (a class list file or a dataset's label names)"
DESCRIPTION = (
    "Write a recipe that `synthset plan --check` accepts: your classes (a .txt file with one name per line, a "
    ".csv with a name column and optional description and wnid columns, a named set such as caltech101, or a "
    "`datasets` source whose label names become the classes), the model, images per class and strategies. "
    "Every other setting is written out with a comment, ready to edit."
)
TEXT_STRATEGIES = ["naive", "lar", "lar_cd", "lar_cd_sd"]


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("new", help=HELP, description=DESCRIPTION)
    parser.add_argument("--classes", required=True, metavar="FILE|DATASET", help="class list file, set or dataset")
    parser.add_argument("--model", default=None, help="generator: a Hub id or local directory (default: SD 1.5)")
    parser.add_argument("--images-per-class", type=int, default=100, metavar="N", help="per config (default 100)")
    parser.add_argument(
        "--strategies",
        nargs="+",
        default=TEXT_STRATEGIES,
        metavar="S",
        help="naive lar lar_cd lar_cd_sd (default: all four), or augcond alone (with --real-images)",
    )
    parser.add_argument("--real-images", default=None, metavar="DIR|DATASET", help="your photos of the classes")
    parser.add_argument("--name", default=None, help="the run's name (default: the class list's file name)")
    parser.add_argument("-o", "--out", default=None, metavar="FILE", help="the recipe file (default: NAME.yaml)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing recipe file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from synthset import api

    if args.images_per_class <= 0:
        from synthset.errors import RecipeError

        raise RecipeError(f"--images-per-class: must be at least 1, got {args.images_per_class}")
    show(
        api.new(
            args.classes,
            out=args.out,
            model=args.model,
            images_per_class=args.images_per_class,
            strategies=args.strategies,
            real_images=args.real_images,
            name=args.name,
            overwrite=args.force,
        )
    )
    return 0
