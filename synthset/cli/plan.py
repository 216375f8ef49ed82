"""`synthset plan RECIPE`: resolve a recipe and write the plan (or, with --check, only validate it)."""

from __future__ import annotations

import argparse

from synthset.cli.output import show

HELP = "resolve a recipe and write the plan: one row per image to make"
DESCRIPTION = (
    "Validate RECIPE, pin its model to a commit (recipe.lock.yaml), write the class table "
    "(classes.parquet) and the plan (plan.parquet: prompt, seed and shard of every image). "
    "Nothing is generated yet; review the plan before spending GPU hours."
)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("plan", help=HELP, description=DESCRIPTION)
    parser.add_argument("recipe", help="recipe YAML file, e.g. recipes/demo.yaml")
    parser.add_argument(
        "--check",
        action="store_true",
        help="validate only: resolve the model, read train lists, open real images, draw shots and build the "
        "conditioning pools (the leak guards), then stop; writes nothing and calls no LLM",
    )
    parser.add_argument(
        "--run-dir",
        metavar="DIR_OR_URL",
        default=None,
        help="write the run here instead of <output_dir>/<name>: a local directory or an object-store URL, e.g. "
        "s3://bucket/runs/demo (credentials and AWS_ENDPOINT_URL from the environment, as for the AWS CLI)",
    )
    parser.add_argument(
        "--gpu-memory",
        metavar="SIZE",
        default=None,
        help="memory of one GPU, e.g. 80GB or 24GiB: print the generator's estimated peak at the recipe's batch "
        "size, and warn (with the largest batch size that fits) when it would not fit",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from synthset import api

    if args.check:
        show(api.check(args.recipe))
        return 0
    show(api.plan(args.recipe, run_dir=args.run_dir, gpu_memory=args.gpu_memory))
    return 0
