"""What was submitted for a run and where its tasks stand, read from the run directory and from `squeue`.

`RUN/logs/slurm/jobs.json` lists every submission (job id, workers, when, cancelled or not); it is replaced
atomically, so a reader never sees half of it. Each worker writes `RUN/logs/slurm/workers/<job>_<task>.<rank>.json`
(its claim identity `host.pid.id`, its restarts, and `running`, `stopped` or `finished`), which is how
`synthset status` puts a SLURM job and array task beside each worker of the claims and records.

The task states come from `squeue --states=all` (the controller keeps finished jobs for `MinJobAge`, 300 s
by default; after that a task's own file says how it ended). No accounting database (`sacct`) is needed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from synthset.errors import SchedulerError
from synthset.fsutil import write_text_atomic

JOBS_FILE = "jobs.json"
WORKERS_DIR = "workers"
SQUEUE_FIELDS = "ArrayJobID:|,ArrayTaskID:|,State:|,RestartCnt:|,NodeList:|"
# squeue's states, in the words `synthset status` uses.
STATE_WORDS = {
    "PENDING": "pending",
    "CONFIGURING": "running",
    "RUNNING": "running",
    "COMPLETING": "running",
    "REQUEUED": "requeued",
    "REQUEUE_FED": "requeued",
    "REQUEUE_HOLD": "requeued",
    "RESV_DEL_HOLD": "pending",
    "COMPLETED": "finished",
    "CANCELLED": "cancelled",
    "TIMEOUT": "timed out",
    "PREEMPTED": "preempted",
    "FAILED": "failed",
    "NODE_FAIL": "failed",
    "OUT_OF_MEMORY": "failed",
    "BOOT_FAIL": "failed",
    "DEADLINE": "timed out",
    "SUSPENDED": "suspended",
}


@dataclass(frozen=True)
class Submission:
    job_id: str
    workers: int
    ranks: int
    submitted: float
    cancelled: bool = False


@dataclass
class TaskState:
    """One array task: its state (pending, running, requeued, finished, ...), restarts and its workers."""

    job_id: str
    task_id: int
    state: str
    restarts: int = 0
    node: str = ""
    workers: list[str] = field(default_factory=list)  # host.pid.id of each rank's newest worker

    @property
    def name(self) -> str:
        return f"{self.job_id}_{self.task_id}"

    @property
    def label(self) -> str:
        """`12_0 running (requeued 2x)`: what status prints beside a worker."""
        again = f" (requeued {self.restarts}x)" if self.restarts and self.state != "requeued" else ""
        return f"{self.name} {self.state}{again}"


def read_submissions(slurm_dir: Path) -> list[Submission]:
    path = slurm_dir / JOBS_FILE
    if not path.exists():
        return []
    return [Submission(**entry) for entry in json.loads(path.read_text())["submissions"]]


def write_submissions(slurm_dir: Path, submissions: list[Submission]) -> None:
    """Replace jobs.json whole (temp file + rename): a reader sees the old list or the new one."""
    slurm_dir.mkdir(parents=True, exist_ok=True)
    body = {"submissions": [asdict(s) for s in submissions]}
    write_text_atomic(slurm_dir / JOBS_FILE, json.dumps(body, indent=1) + "\n")


def record_submission(slurm_dir: Path, job_id: str, workers: int, ranks: int) -> Submission:
    submission = Submission(job_id, workers, ranks, time.time())
    write_submissions(slurm_dir, [*read_submissions(slurm_dir), submission])
    return submission


def record_worker(slurm_dir: Path, job_id: str, task_id: int, rank: int, worker: str, state: str) -> None:
    """Written by a worker as it starts and as it ends: which claim identity runs in which task."""
    folder = slurm_dir / WORKERS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    body = {
        "job_id": job_id, "task_id": task_id, "rank": rank, "worker": worker, "state": state,
        "restarts": int(os.environ.get("SLURM_RESTART_COUNT", "0")), "updated": time.time(),
    }  # fmt: skip
    write_text_atomic(folder / f"{job_id}_{task_id}.{rank}.json", json.dumps(body) + "\n")


def read_workers(slurm_dir: Path) -> list[dict]:
    folder = slurm_dir / WORKERS_DIR
    if not folder.is_dir():
        return []
    return [json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))]


def squeue_states(job_ids: list[str]) -> dict[tuple[str, int], tuple[str, int, str]]:
    """(job, task) -> (squeue state, restart count, node) for every task the controller still knows.

    Raises:
        SchedulerError: squeue is not installed or the controller cannot be reached.
    """
    if not job_ids:
        return {}
    if shutil.which("squeue") is None:
        raise SchedulerError("squeue not found: run `synthset status` where SLURM's commands are installed")
    command = ["squeue", "-h", "-r", "--states=all", "-j", ",".join(job_ids), "-O", SQUEUE_FIELDS]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if done.returncode != 0 and "Invalid job id" not in done.stderr:
        raise SchedulerError(f"squeue failed: {done.stderr.strip() or done.returncode}")
    states = {}
    for line in done.stdout.splitlines():
        parts = line.split("|")
        if len(parts) >= 5:  # a one-worker submission is a plain job: task "N/A", counted as task 0
            task = int(parts[1]) if parts[1].isdigit() else 0
            states[(parts[0], task)] = (parts[2], int(parts[3] or 0), parts[4])
    return states


def task_states(slurm_dir: Path) -> list[TaskState]:
    """Every task of every submission of the run, with its state and the workers it ran."""
    submissions = read_submissions(slurm_dir)
    live = squeue_states([s.job_id for s in submissions])
    workers: dict[tuple[str, int], list[dict]] = {}
    for entry in read_workers(slurm_dir):
        workers.setdefault((entry["job_id"], entry["task_id"]), []).append(entry)
    tasks = []
    for submission in submissions:
        for task_id in range(submission.workers):
            tasks.append(_task_state(submission, task_id, live.get((submission.job_id, task_id)), workers))
    return tasks


def _task_state(submission: Submission, task_id: int, live, workers: dict) -> TaskState:
    own = workers.get((submission.job_id, task_id), [])
    keys = [entry["worker"] for entry in own]
    if live is not None:
        state, restarts, node = live
        word = STATE_WORDS.get(state, state.lower())
        if word == "pending" and restarts:
            word = "requeued"  # back in the queue after a requeue, waiting to start again
        return TaskState(submission.job_id, task_id, word, restarts, node, keys)
    # Gone from the controller (older than MinJobAge): the worker's own file says how it ended.
    ended = {entry["state"] for entry in own}
    word = "finished" if "finished" in ended else ("cancelled" if submission.cancelled else "gone")
    restarts = max((entry["restarts"] for entry in own), default=0)
    return TaskState(submission.job_id, task_id, word, restarts, "", keys)
