"""`synthset <stage>`: a thin shell over the stage functions.

Heavy libraries (torch, diffusers, datasets) are imported inside each command, so `synthset --help`
answers at once. A `SynthsetError` becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from synthset import __version__
from synthset.errors import SynthsetError

DESCRIPTION = """\
Make a synthetic image-classification dataset with an off-the-shelf diffusion model.

A run goes through three stages, each restartable and each reading the previous one's files
in the run directory <output_dir>/<name>/ that the recipe names:

  synthset plan recipes/demo.yaml          recipe -> recipe.lock.yaml, classes.parquet, plan.parquet
  accelerate launch -m synthset generate runs/demo
                                           plan -> shards/ (any number of processes; resumable)
  synthset build runs/demo                 shards -> dataset/ (load it with datasets.load_dataset)
"""


def _cmd_plan(args: argparse.Namespace) -> int:
    from synthset.generation.plan import plan_run
    from synthset.recipe import load_recipe

    summary = plan_run(load_recipe(args.recipe))
    per_config = ", ".join(f"{name}: {rows}" for name, rows in summary.rows_per_config.items())
    print(f"planned {summary.rows} images in {summary.shards} shards ({per_config})")
    print(f"run directory: {summary.run_dir}")
    print(f"next: accelerate launch -m synthset generate {summary.run_dir}")
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from synthset.generation.runner import generate_run

    summary = generate_run(Path(args.run), verify=not args.no_verify)
    print(
        f"rank {summary.rank}/{summary.world_size}: made {summary.images_made} images in "
        f"{summary.shards_made} shards ({summary.shards_assigned - summary.shards_made} already done, "
        f"{summary.shards_redone} redone) in {summary.seconds:.1f} s"
    )
    if summary.all_shards_done:
        print(f"all shards done; next: synthset build {args.run}")
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from synthset.builders.assemble import build_dataset

    dataset_dir, splits = build_dataset(Path(args.run))
    for split in splits:
        print(f"{split.config}/{split.split}: {split.num_examples} images in {len(split.files)} files")
    print(f"dataset: {dataset_dir}")
    print(f'load it: datasets.load_dataset("{dataset_dir}", "{splits[0].config}", split="{splits[0].split}")')
    return 0


def _cmd_tiny_models(args: argparse.Namespace) -> int:
    from synthset import testing

    for name, path in testing.build_all(args.home).items():
        print(f"{name}: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synthset", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"synthset {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", metavar="<stage>", required=True)

    plan = commands.add_parser(
        "plan", help="resolve a recipe and write the plan: one row per image to make", description=(
            "Validate RECIPE, pin its model to a commit (recipe.lock.yaml), write the class table "
            "(classes.parquet) and the plan (plan.parquet: prompt, seed and shard of every image). "
            "Nothing is generated yet; review the plan before spending GPU hours."
        ),
    )  # fmt: skip
    plan.add_argument("recipe", help="recipe YAML file, e.g. recipes/demo.yaml")
    plan.set_defaults(func=_cmd_plan)

    generate = commands.add_parser(
        "generate", help="generate the planned images into shards (run under `accelerate launch`)", description=(
            "Generate every planned image exactly once. Run it plainly for one process, or as "
            "`accelerate launch [--multi_gpu --num_processes N] -m synthset generate RUN` for many. "
            "Restartable: finished shards (checked by sha256) are skipped, so an interrupted run loses at "
            "most the shards in progress, and may resume with another number of processes."
        ),
    )  # fmt: skip
    generate.add_argument("run", help="run directory written by `synthset plan`, e.g. runs/demo")
    generate.add_argument(
        "--no-verify",
        action="store_true",
        help="trust finished shards' sizes without re-hashing them on start",
    )
    generate.set_defaults(func=_cmd_generate)

    build = commands.add_parser(
        "build", help="assemble finished shards into dataset/ for load_dataset and the Hub", description=(
            "Link the finished shards into RUN/dataset/ in the Hub layout (<config>/<split>-NNNNN-of-MMMMM.parquet) "
            "and write its README.md with `configs` and `dataset_info`. Refuses while a shard is missing."
        ),
    )  # fmt: skip
    build.add_argument("run", help="run directory, e.g. runs/demo")
    build.set_defaults(func=_cmd_build)

    tiny = commands.add_parser(
        "tiny-models", help="build the tiny offline models used by tests and the demo", description=(
            "Build tiny models from configs (no download) and save them with save_pretrained under "
            "$SYNTHSET_HOME (default ~/.cache/synthset). Recipes name them as synthset-testing:<name>."
        ),
    )  # fmt: skip
    tiny.add_argument("--home", type=Path, default=None, help="where to save them (default: $SYNTHSET_HOME)")
    tiny.set_defaults(func=_cmd_tiny_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="synthset: %(levelname)s: %(message)s",
    )
    logging.getLogger("synthset").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return args.func(args)
    except SynthsetError as error:
        print(f"synthset: error: {error}", file=sys.stderr)
        return 2
