"""`synthset tiny-models`: build the tiny offline models (and full-size replicas) used by tests and the demo.

The one command that reaches `synthset.testing`: the product never builds a test model itself.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from synthset.errors import SynthsetError

HELP = "build the tiny offline models used by tests and the demo"
DESCRIPTION = (
    "Build tiny models from configs (no download) and save them with save_pretrained under "
    "$SYNTHSET_HOME (default ~/.cache/synthset). Recipes name them as synthset-testing:<name>. "
    "With --replicas, build replicas of the real generators (SD 1.5, SD 2.1-base, SD 2.1, SD 2.1-unCLIP, "
    "SDXL base, the SDXL fp16-fix VAE, the CompVis safety checker) as replica-<name>[-small]; with "
    "SYNTHSET_TEST_REPLICAS=small|full and SYNTHSET_TEST_RESOLVER=synthset.testing.replicas:resolve_replica "
    "set, a recipe naming their Hub ids runs on them offline (tests only)."
)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("tiny-models", help=HELP, description=DESCRIPTION)
    parser.add_argument("--home", type=Path, default=None, help="where to save them (default: $SYNTHSET_HOME)")
    parser.add_argument(
        "--replicas",
        choices=("small", "full"),
        default=None,
        help="build the replicas of the real generators instead (published configs, random weights): small = "
        "scaled down for tests; full = published sizes, ~21 GB of disk for all (SDXL alone 6.9 GB)",
    )
    parser.add_argument("--only", default=None, help="with --replicas: comma-separated names, e.g. sd15,sdxl-base")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from synthset import testing

    if args.replicas is None:
        built = testing.build_all(args.home)
    else:
        names = args.only.split(",") if args.only else None
        unknown = sorted(set(names or []) - set(testing.REPLICAS))
        if unknown:
            raise SynthsetError(f"--only: unknown replica {unknown[0]!r} (known: {', '.join(testing.REPLICAS)})")
        built = testing.build_replicas(args.replicas, names, args.home)
    for name, path in built.items():
        print(f"{name}: {path}")
    return 0
