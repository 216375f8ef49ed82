"""`synthset card RUN`: render the dataset card and its figures."""

from __future__ import annotations

import argparse

from synthset.cli.output import show

HELP = "write the dataset card (README.md) and samples.jpg of a built run"
DESCRIPTION = (
    "Render RUN/dataset/README.md from the card template: license, configs and dataset_info, how the "
    "data was made (models with revisions, recipe hash, the command that regenerates it), per-config "
    "and per-class counts, prompt examples, limitations, citations; and RUN/dataset/samples.jpg, one "
    "row per config. With --clip-model, adds per-config mean CLIP score and Vendi diversity."
)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("card", help=HELP, description=DESCRIPTION)
    parser.add_argument("run", help="run directory after `synthset build`, e.g. runs/demo")
    parser.add_argument(
        "--license",
        default=None,
        help="Hub license id, when the generator's model card states none (e.g. apache-2.0; `other` for any "
        "license not on the Hub's list, with --license-name and --license-link)",
    )
    parser.add_argument("--license-name", default=None, help="with --license other: an id for it, e.g. my-license-1.0")
    parser.add_argument(
        "--license-link", default=None, help="with --license other: a URL, or LICENSE (a file you put in dataset/)"
    )
    parser.add_argument(
        "--repo", default=None, help="the repo the local card's examples name; push always names the repo it pushes to"
    )
    parser.add_argument(
        "--clip-model",
        default=None,
        help="open_clip model for quality figures: a name (with --clip-pretrained), hf-hub:<id>, local-dir:<path>, "
        "a directory, or synthset-testing:tiny-clip",
    )
    parser.add_argument("--clip-pretrained", default=None, help="open_clip pretrained tag, e.g. openai")
    parser.add_argument("--quality-per-class", type=int, default=50, help="images scored per class (default 50)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from synthset import api

    result = api.card(
        args.run,
        license=args.license,
        repo=args.repo,
        clip_model=args.clip_model,
        clip_pretrained=args.clip_pretrained,
        quality_per_class=args.quality_per_class,
        license_name=args.license_name,
        license_link=args.license_link,
    )
    show(result)
    return 0
