"""`synthset generate RUN`: make the planned images (run under `accelerate launch` for many processes)."""

from __future__ import annotations

import argparse

from synthset.cli.output import show

STOPPED_EXIT_STATUS = 75  # EX_TEMPFAIL: SIGTERM or SIGUSR1 stopped the worker before the run was done

HELP = "generate the planned images into shards (run under `accelerate launch`)"
DESCRIPTION = (
    "Generate every planned image exactly once. Run it plainly for one process, or as "
    "`accelerate launch [--multi_gpu --num_processes N] -m synthset generate RUN` for many. "
    "Workers claim shards, so several launches (other nodes, a job array, a second command started "
    "later) can work on one run directory at once; a worker whose claim goes unrenewed for the lease "
    "time is taken to be dead and its shard is taken over. Restartable: finished shards (checked by "
    "sha256) are skipped, so an interrupted run loses at most the shards in progress, and may resume "
    "with another number of processes. SIGTERM or SIGUSR1 stop a worker cleanly (the batch in hand ends, its "
    "shard is released at once) with exit status 75, on which a job script may requeue itself."
)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("generate", help=HELP, description=DESCRIPTION)
    parser.add_argument("run", help="run directory written by `synthset plan`, e.g. runs/demo")
    parser.add_argument(
        "--no-verify", action="store_true", help="trust finished shards' sizes without re-hashing them on start"
    )
    parser.add_argument(
        "--lease-seconds",
        type=float,
        default=300.0,
        metavar="S",
        help="a shard claim not renewed for S seconds is taken over by another worker (default 300; claims of "
        "a dead process on this host are taken over at once)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from synthset import api

    result = api.generate(args.run, verify=not args.no_verify, lease_seconds=args.lease_seconds, stop_on_signals=True)
    show(result)
    if result.summary.stopped and not result.summary.all_shards_done:
        return STOPPED_EXIT_STATUS  # a job script requeues on it (docs/clusters.md)
    return 0
