"""`synthset submit RUN --slurm`: the run's generate workers as one SLURM array job, through submitit.

Every task runs `GenerateTask` (scheduling/worker.py), one generate worker. The job asks for the time-limit
warning `--signal=USR1@<s>` (the worker stops, releases its shard and requeues its task) and is requeueable,
so a time limit or a preemption costs at most the batch in hand. submitit's folder is RUN/logs/slurm/:
the sbatch script, the pickled task, and each task's log as `<job>_<task>_0_log.out` / `.err`. The job id is
added to RUN/logs/slurm/jobs.json (replaced atomically) for `synthset status` and `synthset submit --cancel`.
"""

from __future__ import annotations

import contextlib
import io
import shlex
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from synthset.errors import RunStateError, SchedulerError, first_line
from synthset.run.claims import DEFAULT_LEASE_SECONDS
from synthset.run.paths import RunDir
from synthset.scheduling.jobs import Submission, read_submissions, record_submission, write_submissions
from synthset.scheduling.options import SlurmOptions, sbatch_option
from synthset.scheduling.worker import GenerateTask

# Exported in the script before the worker starts: submitit's own handler (active until the worker installs
# its own) then treats our time-limit signal as a checkpoint-and-requeue too, rather than letting USR1 kill.
SIGNAL_ENV_LINE = "export SUBMITIT_PREEMPT_SIGNAL=USR1"


@dataclass(frozen=True)
class Submitted:
    """One array job: its SLURM id, workers and ranks per worker."""

    job_id: str
    workers: int
    ranks: int
    logs: str  # the folder of the tasks' logs


def submitit_parameters(options: SlurmOptions) -> dict[str, Any]:
    """The submitit SlurmExecutor parameters of a submission (named as submitit names them)."""
    extra: dict[str, Any] = {"signal": f"USR1@{options.signal_seconds}", "requeue": True}
    if options.time is not None:
        extra["time"] = options.time  # as written: sbatch reads every SLURM time format
    for text in options.sbatch:
        name, value = sbatch_option(text)
        extra[name] = value
    params: dict[str, Any] = {
        "job_name": options.job_name,
        "time": options.minutes,  # None: the partition's default limit (submitit would write 5 minutes)
        "ntasks_per_node": options.ranks,
        "setup": [SIGNAL_ENV_LINE, *options.setup],
        "additional_parameters": extra,
    }
    if options.gpus_per_worker:
        params["gpus_per_node"] = options.gpus_per_worker
    named = {"partition": options.partition, "account": options.account, "qos": options.qos}
    params.update({key: value for key, value in named.items() if value is not None})
    if options.cpus_per_worker is not None:  # submitit's cpus_per_task is per rank
        params["cpus_per_task"] = max(1, options.cpus_per_worker // options.ranks)
    if options.mem is not None:
        extra["mem"] = options.mem  # as written (e.g. 64G): submitit's mem_gb takes a number only
    return params


def _submitit():
    try:
        import submitit
    except ImportError:
        raise SchedulerError(
            "submit needs submitit (pip install submitit; or see docs/clusters.md for a plain sbatch script)"
        ) from None
    return submitit


def sbatch_script(run: RunDir, options: SlurmOptions) -> str:
    """The sbatch script `submit` would hand to sbatch (for --dry-run): submitit's own rendering of it."""
    _submitit()
    from submitit.slurm.slurm import _make_sbatch_string

    folder = run.slurm_dir
    command = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))])
    params = submitit_parameters(options)
    map_count = options.workers if options.workers > 1 else None
    return _make_sbatch_string(command=command, folder=folder, map_count=map_count, **params)


def _local_run(run_path) -> RunDir:
    run = RunDir.planned(run_path)
    if run.store is not None:
        raise RunStateError(
            f"{run_path}: SLURM workers write their logs beside the run, so submit needs a run directory on a "
            "filesystem the nodes share, not an object store"
        )
    return run


def submit_array(run_path, options: SlurmOptions, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> Submitted:
    """Submit the run's workers as one array job; the job id is recorded in the run directory.

    Raises:
        RunStateError: the run is not planned or lives on an object store.
        SchedulerError: SLURM is not installed here, or sbatch refused the job (its message, one line).
    """
    submitit = _submitit()
    run = _local_run(run_path)
    try:
        executor = submitit.SlurmExecutor(folder=run.slurm_dir, max_num_timeout=1_000_000)
    except RuntimeError as error:  # "Could not detect srun"
        raise SchedulerError(f"SLURM's commands are not installed here ({first_line(error)})") from None
    executor.update_parameters(**submitit_parameters(options))
    task = GenerateTask(str(run.root), str(run.slurm_dir), lease_seconds)
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # submitit echoes sbatch's stderr; we say it in one line
            jobs = executor.map_array(task, range(options.workers))
    except (subprocess.CalledProcessError, submitit.core.utils.FailedJobError) as error:
        raise SchedulerError(f"sbatch refused the job: {_sbatch_message(error)}") from None
    job_id = jobs[0].job_id.split("_")[0]
    record_submission(run.slurm_dir, job_id, options.workers, options.ranks)
    return Submitted(job_id, options.workers, options.ranks, str(run.slurm_dir))


def _sbatch_message(error: Exception) -> str:
    text = str(error)
    for line in reversed(text.splitlines()):
        if "error" in line.lower():
            return line.strip()
    return first_line(error)


def cancel(run_path) -> list[str]:
    """scancel every job submitted for the run and not cancelled yet; -> the job ids cancelled.

    Raises:
        SchedulerError: scancel refused (its message, one line).
    """
    run = _local_run(run_path)
    submissions = read_submissions(run.slurm_dir)
    live = [s.job_id for s in submissions if not s.cancelled]
    if live:
        done = subprocess.run(["scancel", *live], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise SchedulerError(f"scancel failed: {done.stderr.strip() or done.returncode}")
    marked = [Submission(s.job_id, s.workers, s.ranks, s.submitted, True) for s in submissions]
    write_submissions(run.slurm_dir, marked)
    return live
