"""The processes of a generate run: the accelerate state, and workers that end with their launcher.

On a machine without CUDA, a multi-process launch gives every process a plain `PartialState()` that says
"rank 0 of 1", and each would generate everything; `cpu=True` makes them a real gloo group, and a launch
that started more processes than accelerate joined is refused.

`accelerate launch` and `torchrun` start each worker in a session of its own (torch elastic does), so
killing the launcher's process group leaves the workers running: orphans that would finish the run in
the background, beside a restart. A worker under a launcher therefore watches its parent and exits as
soon as the launcher is gone. (Shard claims keep a restart and an orphan from writing the same shard
meanwhile; this stops the orphan from spending the GPU at all.)
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from synthset.errors import SynthsetError, first_line

if TYPE_CHECKING:
    from accelerate import PartialState

logger = logging.getLogger(__name__)

PARENT_POLL_SECONDS = 0.5
LAUNCHER_ENV = ("TORCHELASTIC_RUN_ID", "LOCAL_RANK")  # set by torchrun / accelerate launch in each worker
LAUNCHER_COMMANDS = ("accelerate", "torchrun", "torch.distributed.run", "torch.distributed.launch")


def check_world_size(launched: int, seen: int) -> None:
    """Refuse to run when the launcher started more processes than accelerate has joined into a group."""
    if launched != seen:
        raise SynthsetError(
            f"the launcher started {launched} processes but accelerate sees {seen}: each would generate every "
            "shard; on CPU launch with `accelerate launch --multi_gpu --num_processes N` "
            "or `torchrun --nproc_per_node N`"
        )


def make_process_state() -> PartialState:
    """The accelerate state, with the launcher's process count checked against what accelerate sees."""
    import torch
    from accelerate import PartialState

    try:
        state = PartialState(cpu=not torch.cuda.is_available())
    except ValueError as error:  # e.g. WORLD_SIZE set by hand without MASTER_ADDR
        raise SynthsetError(f"accelerate could not set up the processes: {first_line(error)}") from None
    check_world_size(int(os.environ.get("WORLD_SIZE", "1")), state.num_processes)
    return state


def under_launcher() -> bool:
    return any(name in os.environ for name in LAUNCHER_ENV)


ORPHANED_AT_START = "the launcher is gone: it died while this worker started (its parent is now init, pid 1)"


def command_line(pid: int) -> str | None:
    """A process's command line (Linux /proc), or None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None


def orphaned_at_start(parent: int, parent_command: str | None) -> bool:
    """Whether a worker's launcher died before the worker could watch it: its parent is init (pid 1) and
    init is not itself the launcher (in a container, `accelerate launch` is often pid 1, alive and well:
    its workers must not stop, nor say that pid 1 is gone). Where /proc cannot tell, pid 1 is init."""
    if parent != 1:
        return False
    return parent_command is None or not any(name in parent_command for name in LAUNCHER_COMMANDS)


def _stop_orphan(message: str) -> None:
    print(f"synthset: error: {message}; worker {os.getpid()} stops (its unfinished shard is left to a restart)",
          file=sys.stderr, flush=True)  # fmt: skip
    os._exit(3)  # no cleanup: temp files and claims of a dead pid are cleared by whoever comes next


def _watch_parent(parent: int) -> None:
    while not threading.Event().wait(PARENT_POLL_SECONDS):
        if os.getppid() != parent:
            _stop_orphan(f"the launcher (pid {parent}) is gone")


def exit_with_launcher() -> None:
    """Under a launcher, end this process when its parent (the launcher) dies; else do nothing."""
    if not under_launcher():
        return
    parent = os.getppid()
    if orphaned_at_start(parent, command_line(parent)):
        _stop_orphan(ORPHANED_AT_START)
    threading.Thread(target=_watch_parent, args=(parent,), name="synthset-launcher-watch", daemon=True).start()


# A scheduler's warnings: SLURM sends the job's `--signal` (USR1 here) before its time limit and SIGTERM
# when it preempts, requeues or cancels a job (then SIGKILL after its KillWait).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


@dataclass
class StopRequest:
    """Set by a stop signal: the generate loop takes no more work once `event` is set; `signal` says which."""

    event: threading.Event = field(default_factory=threading.Event)
    signal: str | None = None

    def handle(self, signum: int, frame: object = None) -> None:
        self.signal = signal.Signals(signum).name
        logger.warning("%s received: finishing the batch in hand, then releasing this worker's shards", self.signal)
        self.event.set()


def stop_on_signals() -> StopRequest:
    """Make SIGTERM and SIGUSR1 a request to stop (the loop checks it between batches) instead of death.

    A worker that dies mid-shard leaves its claim to expire (a whole lease on another host); one that stops
    drops its unfinished shard and releases the claim at once, so another worker takes the shard straight away.
    Must be called from the main thread (Python installs signal handlers there only).
    """
    request = StopRequest()
    for signum in STOP_SIGNALS:
        signal.signal(signum, request.handle)
    return request
