"""`synthset <stage>`: the command line, a thin shell over the Python API (synthset.api).

One module per command (as `datasets`' commands/ and huggingface_hub's cli/): each registers its
arguments, calls the API and prints the result. Heavy libraries (torch, diffusers, datasets) are imported
inside the API's functions, so `synthset --help` answers at once. A `SynthsetError` becomes one line on
stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from types import ModuleType

from synthset import __version__
from synthset.cli import (
    build,
    card,
    clean,
    demo,
    generate,
    new,
    plan,
    push,
    review,
    schema,
    status,
    submit,
    tiny_models,
    train,
    validate,
    verify,
    versions,
)
from synthset.cli.quiet import configure_output
from synthset.errors import SynthsetError

# The commands in the order `synthset --help` lists them.
COMMANDS: dict[str, ModuleType] = {
    "new": new,
    "plan": plan,
    "generate": generate,
    "submit": submit,
    "build": build,
    "train": train,
    "card": card,
    "review": review,
    "push": push,
    "versions": versions,
    "verify": verify,
    "validate": validate,
    "status": status,
    "clean": clean,
    "schema": schema,
    "tiny-models": tiny_models,
    "demo": demo,
}


DESCRIPTION = """\
Make a synthetic image-classification dataset with an off-the-shelf diffusion model.

A run goes through these stages, each restartable and each reading the previous one's files
in the run directory <output_dir>/<name>/ that the recipe names:

  synthset new --classes foxes.txt         your classes -> a commented recipe (foxes.yaml)
  synthset plan recipes/demo.yaml          recipe -> recipe.lock.yaml, classes.parquet, plan.parquet
  accelerate launch -m synthset generate runs/demo
                                           plan -> shards/ (any number of processes; resumable)
  synthset build runs/demo                 shards -> dataset/ (validated; load it with datasets.load_dataset)
  synthset card runs/demo                  dataset/README.md: the full dataset card, samples.jpg
  synthset review runs/demo                review.html: every class's images, the gate's rejects, to look at
  synthset push runs/demo --repo org/name --tag v1.0
                                           a new version on the Hub, tagged; `synthset verify` checks it

`synthset demo` runs them all on tiny offline models, from recipes shipped in the package.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synthset", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"synthset {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log debug messages, every rank's, and the libraries' bars"
    )
    commands = parser.add_subparsers(dest="command", metavar="<stage>", required=True)
    for command in COMMANDS.values():
        command.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_output(args.verbose)
    try:
        return args.func(args)
    except SynthsetError as error:
        print(f"synthset: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        # A full disk, a quota, a file size limit, a read-only or forbidden path: the user's to fix, in one line.
        from synthset.fsutil import FILESYSTEM_FAULTS, describe_os_error

        if error.errno not in FILESYSTEM_FAULTS:
            raise  # anything else is a bug and keeps its traceback

        print(f"synthset: error: {describe_os_error(error, error.filename or 'writing the run')}", file=sys.stderr)
        return 2
