"""`synthset verify ORG/NAME`: check a published version against its manifest."""

from __future__ import annotations

import argparse

from synthset.cli.output import show

HELP = "check a published version against its manifest, without downloading it"
DESCRIPTION = (
    "Compare REPO at REVISION with its published manifest.jsonl without downloading the data: every "
    "file's size and sha256 as the Hub lists them, no file the manifest lacks, every Parquet footer "
    "(rows, Features; read with range requests), each config's rows against dataset_info, and a "
    "streamed load_dataset of every config. --sample N also downloads N random files and decodes "
    "every image; --full downloads everything and loads every config. With --run, also compares with "
    "the run's shard records. Exit 2 on any mismatch."
)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("verify", help=HELP, description=DESCRIPTION)
    parser.add_argument("repo", help="dataset repo id, org/name")
    parser.add_argument("--revision", default="main", help="tag, branch or commit (default main)")
    parser.add_argument("--run", default=None, help="also compare with this run directory's shards")
    parser.add_argument(
        "--sample", type=int, default=0, metavar="N", help="download N random files, decode every image"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of --sample's choice (default: random)")
    parser.add_argument("--full", action="store_true", help="download every file and load every config (slow)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from synthset import api

    result = api.verify(
        args.repo, revision=args.revision, run=args.run, sample=args.sample, full=args.full, seed=args.seed
    )
    show(result)
    return 0
