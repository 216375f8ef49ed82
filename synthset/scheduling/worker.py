"""What each array task runs: one generate worker that stops cleanly on the scheduler's warnings.

submitit pickles a `GenerateTask` into RUN/logs/slurm/ and each array task calls it. The task turns SIGUSR1
(the job's `--signal`, sent before its time limit) and SIGTERM (preemption, `scontrol requeue`, `scancel`)
into a stop request: the worker finishes the pipeline call in hand, drops its unfinished shard and releases
its claims at once, so another worker takes them without waiting for a lease. After SIGUSR1 the task asks
SLURM to requeue it (submitit's requeue: `scontrol requeue <job>_<task>`) and exits; after SIGTERM the
scheduler has already decided (a requeue or preemption requeues it, a cancel does not) and it just exits.
A requeued task starts again as a fresh worker: nothing is carried over but the run directory itself.

A worker of G GPUs is G tasks of one step (srun starts them): each rank reads its place from SLURM's
environment (exported for torch.distributed by submitit) and they form one accelerate process group.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path

from synthset.generation.processes import stop_on_signals
from synthset.generation.runner import WorkerOptions, generate_run
from synthset.run.claims import DEFAULT_LEASE_SECONDS, Worker
from synthset.scheduling.jobs import record_worker

logger = logging.getLogger(__name__)

STOPPED_EXIT_STATUS = 75  # EX_TEMPFAIL: stopped by the scheduler before the run was done; try again later


class GenerateTask:
    """The callable submitit runs in every array task (pickled by reference: only its fields travel)."""

    def __init__(self, run: str, slurm_dir: str, lease_seconds: float = DEFAULT_LEASE_SECONDS, verify: bool = True):
        self.run, self.slurm_dir = run, slurm_dir
        self.lease_seconds, self.verify = lease_seconds, verify

    def __call__(self, task_index: int) -> str:
        """Run one worker; returns its summary line, or exits for a requeue when the scheduler stops it."""
        import submitit

        logging.basicConfig(level=logging.INFO, format="synthset: %(levelname)s: %(message)s")
        stop = stop_on_signals()  # replaces submitit's handlers: the loop decides when to stop
        env = submitit.JobEnvironment()
        if env.num_tasks > 1:  # a multi-GPU worker: its ranks form one process group
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        job_id, task_id = _job_and_task(env)
        worker = Worker.this_process()
        identity = f"{worker.host}.{worker.pid}.{worker.id}"
        slurm_dir = Path(self.slurm_dir)
        record_worker(slurm_dir, job_id, task_id, env.global_rank, identity, "running")
        options = WorkerOptions(worker=worker, stop=stop.event)
        summary = generate_run(self.run, verify=self.verify, lease_seconds=self.lease_seconds, options=options)
        if summary.stopped and not summary.all_shards_done:
            record_worker(slurm_dir, job_id, task_id, env.global_rank, identity, "stopped")
            if stop.signal == "SIGUSR1" and env.global_rank == 0:
                env._requeue(0)  # submitit's requeue (`scontrol requeue`), as its own time-limit handler does
            raise SystemExit(STOPPED_EXIT_STATUS)
        # Done: a time-limit warning from now on means nothing, and Python restores the default action of
        # its handled signals as it exits (a late USR1 would kill the finished task and mark it FAILED).
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        record_worker(slurm_dir, job_id, task_id, env.global_rank, identity, "finished")
        return f"worker {identity}: made {summary.images_made} images in {summary.shards_made} shards"

    def checkpoint(self, task_index: int):
        """submitit's hook for a signal that arrives before `__call__` installs its own: requeue as is.

        Nothing needs saving: a worker's progress is the run directory's shard records.
        """
        import submitit

        return submitit.helpers.DelayedSubmission(self, task_index)


def _job_and_task(env) -> tuple[str, int]:
    """(array job id, task id); a one-worker submission is a plain job: task 0."""
    if env.array_job_id is not None:
        return str(env.array_job_id), int(env.array_task_id)
    return str(env.job_id), 0
