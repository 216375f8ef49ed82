"""The settings of a SLURM submission, checked before anything is submitted."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from synthset.errors import SchedulerError

# SLURM's time formats (sbatch --time): M, M:S, H:M:S, D-H, D-H:M, D-H:M:S, or UNLIMITED/INFINITE.
_TIME = re.compile(r"^(\d+-)?\d+(:\d+){0,2}$")
DEFAULT_SIGNAL_SECONDS = 120  # the time-limit warning's lead: a GPU batch plus a shard's release fit in it


@dataclass(frozen=True)
class SlurmOptions:
    """One array job of `workers` tasks; each task is one worker of `gpus_per_worker` ranks (one per GPU).

    `sbatch` holds any other sbatch option as written on sbatch's command line (`--constraint=a100`,
    `--exclusive`); `setup` the shell lines run before the worker (`module load cuda`, `source venv/bin/activate`).
    """

    workers: int = 1
    gpus_per_worker: int = 0
    time: str | None = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    mem: str | None = None
    cpus_per_worker: int | None = None
    setup: list[str] = field(default_factory=list)
    sbatch: list[str] = field(default_factory=list)
    signal_seconds: int = DEFAULT_SIGNAL_SECONDS
    job_name: str = "synthset-generate"

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise SchedulerError(f"--workers must be at least 1, got {self.workers}")
        if self.gpus_per_worker < 0:
            raise SchedulerError(f"--gpus-per-worker must be 0 (CPU) or more, got {self.gpus_per_worker}")
        if self.time is not None and not (_TIME.match(self.time) or self.time.upper() in ("UNLIMITED", "INFINITE")):
            raise SchedulerError(f"--time {self.time!r} is not a SLURM time (M, H:M:S or D-H:M:S)")
        if self.signal_seconds < 1:
            raise SchedulerError(f"--signal-seconds must be at least 1, got {self.signal_seconds}")
        for option in self.sbatch:
            sbatch_option(option)

    @property
    def minutes(self) -> int | None:
        """The time limit in whole minutes (submitit counts in minutes); None when unset or unlimited."""
        if self.time is None or not _TIME.match(self.time):
            return None
        days, _, clock = self.time.rpartition("-")
        parts = [int(p) for p in clock.split(":")]
        if days:  # D-H, D-H:M, D-H:M:S
            parts += [0] * (3 - len(parts))
            hours, minutes, seconds = parts
        else:  # M, M:S, H:M:S
            hours, minutes, seconds = [0, *parts, 0] if len(parts) == 1 else [0, *parts] if len(parts) == 2 else parts
        total = (int(days or 0) * 24 + hours) * 60 + minutes
        return total + (1 if seconds else 0)

    @property
    def ranks(self) -> int:
        """Processes per worker: one per GPU (run as one accelerate process group), else one on CPU."""
        return max(1, self.gpus_per_worker)


def sbatch_option(text: str) -> tuple[str, str | bool]:
    """`--constraint=a100` -> ("constraint", "a100"); `--exclusive` -> ("exclusive", True).

    Raises:
        SchedulerError: the option is not written as a long sbatch option.
    """
    if not text.startswith("--") or len(text) < 3:
        raise SchedulerError(f"--sbatch {text!r}: write it as sbatch's long option, e.g. --constraint=a100")
    name, sep, value = text[2:].partition("=")
    return name, value if sep else True
