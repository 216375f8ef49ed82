"""Running a run's generate workers on a cluster scheduler: `synthset submit RUN --slurm`.

The workers are the same `synthset generate` workers a user starts by hand: they claim shards, so any
number of them, started or stopped in any order, make every planned image exactly once. This package only
asks the scheduler for them (an array job through `submitit`), keeps the job ids in the run directory,
reads back the jobs' states for `synthset status`, and turns the scheduler's warnings (the time-limit
signal, preemption's SIGTERM) into a clean stop and a requeue.

    options.py   the submission's settings (workers, GPUs, time, partition, ... and raw sbatch options)
    jobs.py      what was submitted (RUN/logs/slurm/jobs.json), which worker runs in which task, squeue states
    slurm.py     submit, the --dry-run script, cancel
    worker.py    the function each array task runs (pickled by submitit)
"""
