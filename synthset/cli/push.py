"""`synthset push RUN --repo ORG/NAME`: publish dataset/ to the Hub as one new version."""

from __future__ import annotations

import argparse

from synthset.cli.output import show

HELP = "publish RUN/dataset/ to a Hub dataset repo as a new version, and tag it"
DESCRIPTION = (
    "Create the repo if needed and publish RUN/dataset/ (Parquet shards, README.md with this repo's "
    "id, recipe.lock.yaml, samples.jpg, manifest.jsonl) in commits of 50 files to a pull request, "
    "then merge it, so readers of the branch and of every tag see the previous version or the new "
    "one, never a mix; then tag it. Re-running an interrupted push resumes where it stopped and sends "
    "no file twice. The token comes from HF_TOKEN or `hf auth login`."
)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("push", help=HELP, description=DESCRIPTION)
    parser.add_argument("run", help="run directory after `synthset card`, e.g. runs/demo")
    parser.add_argument("--repo", required=True, help="dataset repo id, org/name")
    parser.add_argument("--private", action="store_true", help="create the repo private")
    parser.add_argument("--tag", default=None, help="version tag for this push, e.g. v1.0 (never moved once made)")
    parser.add_argument("--revision", default="main", help="branch to commit to (default main; created if missing)")
    parser.add_argument(
        "--allow-unscreened",
        action="store_true",
        help="publish even though no NSFW checker screened the images (the recipe has no quality.checker); "
        "the card says so in its first lines",
    )
    parser.add_argument(
        "--delete-unpublished",
        action="store_true",
        help="also delete files on the branch that synthset did not publish (another writer's); without it they "
        "stay, and the push names them",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from synthset import api

    result = api.push(
        args.run,
        args.repo,
        private=args.private,
        tag=args.tag,
        revision=args.revision,
        allow_unscreened=args.allow_unscreened,
        delete_unpublished=args.delete_unpublished,
    )
    show(result)
    return 0
