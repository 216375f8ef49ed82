"""Row 8e: the scheduler's overhead — 3 workers submitted to a local SLURM ÷ 3 `synthset generate` by hand.

Both cases make the same plan (two runs planned from one recipe) with 3 workers on this machine: by hand,
three `synthset generate RUN` processes started at once; through SLURM, `synthset submit RUN --slurm
--workers 3` to the one-node test cluster of tests/test_slurm.py (slurmctld, slurmd, munged on loopback,
synthset.testing.slurm_cluster). Each case's wall time runs from the command to the last worker's end (for
SLURM: every array task gone from squeue's running and pending states, polled every 0.2 s), so the ratio
holds what SLURM adds: scheduling, the batch script, srun, submitit's unpickling. Goal ≤ 1.10. The cases
alternate over the rounds and each round's ratio is kept; the row gives the median.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from pathlib import Path

from benchmarks.common import PYTHON, Context, Row, child_env, judged, planned_run

WORKERS = 3
GOAL = 1.10


def by_hand(run_dir: Path) -> float:
    """Three `synthset generate` processes started together; seconds until the last one exits."""
    started = time.monotonic()
    processes = [
        subprocess.Popen([*PYTHON, "-m", "synthset", "generate", str(run_dir)], env=child_env(),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(WORKERS)
    ]  # fmt: skip
    for process in processes:
        assert process.wait(timeout=1800) == 0
    return time.monotonic() - started


def through_slurm(run_dir: Path, env: dict[str, str]) -> float:
    """`synthset submit --slurm --workers 3`; seconds until every task has left the queue."""
    started = time.monotonic()
    command = [*PYTHON, "-m", "synthset", "submit", str(run_dir), "--slurm", "--workers", str(WORKERS)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    job_id = done.stdout.split("submitted SLURM job ", 1)[1].split(":", 1)[0]
    while True:
        queue = subprocess.run(
            ["squeue", "-h", "-r", "-j", job_id, "-o", "%T"], env=env, capture_output=True, text=True
        )
        if queue.returncode == 0 and not queue.stdout.strip():
            return time.monotonic() - started
        time.sleep(0.2)


def measure(ctx: Context) -> list[Row]:
    from synthset.testing.slurm_cluster import start_cluster

    cluster = start_cluster(ctx.work / "slurm")
    env = {**child_env(), **cluster.env}
    rounds = []
    try:
        for round_ in range(ctx.args.slurm_rounds):
            runs = {case: planned_run(ctx.work, f"slurm-{case}-{round_}", ctx.args.slurm_images)
                    for case in ("hand", "slurm")}  # fmt: skip
            order = ["hand", "slurm"] if round_ % 2 == 0 else ["slurm", "hand"]
            seconds = {}
            for case in order:
                seconds[case] = by_hand(runs[case]) if case == "hand" else through_slurm(runs[case], env)
            ctx.check_long_enough("slurm by hand", seconds["hand"])
            rounds.append(seconds)
            print(f"  round {round_}: by hand {seconds['hand']:.1f} s, through SLURM {seconds['slurm']:.1f} s "
                  f"({seconds['slurm'] / seconds['hand']:.3f})", flush=True)  # fmt: skip
    finally:
        cluster.stop()
    ratios = [r["slurm"] / r["hand"] for r in rounds]
    median = statistics.median(ratios)
    value = f"{median:.3f} (" + ", ".join(f"{r['slurm']:.1f} s / {r['hand']:.1f} s" for r in rounds) + ")"
    data = {"ratio": median, "ratios": ratios, "rounds": rounds, "images": ctx.args.slurm_images}
    return [
        Row(
            f"8e. {WORKERS} workers via SLURM / {WORKERS} by hand, wall time",
            value,
            f"<= {GOAL:.2f}",
            judged(median <= GOAL),
            {**data, "cpus": os.cpu_count()},
        )  # fmt: skip
    ]
