"""`synthset submit RUN --slurm`: the run's generate workers as one SLURM array job (through submitit)."""

from __future__ import annotations

import argparse

from synthset.cli.output import show

HELP = "submit a run's generate workers to SLURM as an array job (or --cancel them)"
DESCRIPTION = (
    "Submit N generate workers for RUN as one SLURM array job, through submitit. Each task is one worker "
    "(of G ranks with --gpus-per-worker G, run as one accelerate process group); the workers claim shards, "
    "so they share the run with any other worker exactly once. The job asks for USR1 before its time limit: "
    "a worker that gets it, or SIGTERM (preemption, scontrol requeue), finishes the batch in hand, releases "
    "its shard at once and its task is requeued. Logs: RUN/logs/slurm/<job>_<task>_0_log.out; job ids: "
    "RUN/logs/slurm/jobs.json. `synthset status RUN` shows the tasks beside the workers."
)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("submit", help=HELP, description=DESCRIPTION)
    parser.add_argument("run", help="planned run directory on a filesystem the nodes share, e.g. runs/demo")
    parser.add_argument("--slurm", action="store_true", help="submit to SLURM (the scheduler supported today)")
    parser.add_argument("--cancel", action="store_true", help="scancel every job submitted for RUN")
    parser.add_argument("--dry-run", action="store_true", help="print the sbatch script instead of submitting it")
    parser.add_argument("--workers", type=int, default=1, metavar="N", help="array tasks, one worker each")
    parser.add_argument("--gpus-per-worker", type=int, default=0, metavar="G", help="GPUs (and ranks) per worker")
    parser.add_argument("--time", metavar="T", help="time limit per task, as sbatch --time (e.g. 4:00:00)")
    parser.add_argument("--partition", metavar="P")
    parser.add_argument("--account", metavar="A")
    parser.add_argument("--qos", metavar="Q")
    parser.add_argument("--mem", metavar="M", help="memory per worker, as sbatch --mem (e.g. 64G)")
    parser.add_argument("--cpus-per-worker", type=int, metavar="C")
    parser.add_argument(
        "--setup", action="append", default=[], metavar="CMD", help="a shell line run before the worker "
        "(`module load cuda`, `source .venv/bin/activate`); repeatable",
    )  # fmt: skip
    parser.add_argument(
        "--sbatch", action="append", default=[], metavar="OPTION", help="any other sbatch option, passed "
        "through: --sbatch=--constraint=a100; repeatable",
    )  # fmt: skip
    parser.add_argument(
        "--signal-seconds", type=int, default=120, metavar="S",
        help="warn a worker S seconds before its time limit (sbatch --signal=USR1@S; default 120)",
    )  # fmt: skip
    parser.add_argument(
        "--lease-seconds", type=float, default=300.0, metavar="S", help="the workers' claim lease (default 300)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from synthset import api
    from synthset.errors import SchedulerError
    from synthset.scheduling.options import SlurmOptions

    if args.cancel:
        show(api.cancel_submitted(args.run))
        return 0
    if not args.slurm:
        raise SchedulerError("say where to submit: --slurm (the only scheduler supported today)")
    options = SlurmOptions(
        workers=args.workers, gpus_per_worker=args.gpus_per_worker, time=args.time, partition=args.partition,
        account=args.account, qos=args.qos, mem=args.mem, cpus_per_worker=args.cpus_per_worker,
        setup=args.setup, sbatch=args.sbatch, signal_seconds=args.signal_seconds,
    )  # fmt: skip
    show(api.submit(args.run, options, dry_run=args.dry_run, lease_seconds=args.lease_seconds))
    return 0
