"""The generate stage: make every planned image exactly once, on one process or many.

Work is divided by shard, and shards are fixed by the plan: rank r of w takes the shards whose index
i satisfies i % w == r. A sample's shard is a function of its sample_id (through the plan), so the
assignment needs no communication, and a resumed run with another world size simply takes the shards
that have no valid record yet. Ranks never wait on each other: there is no collective call at all,
not even a final barrier (a rank that finishes an hour early would hit the process group's timeout).
Whichever rank finds every shard recorded when it finishes compacts the manifest.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synthset.errors import SynthsetError, first_line
from synthset.run.classes_table import read_label_names
from synthset.run.lock import read_lock
from synthset.run.paths import RunDir
from synthset.run.plan import PlannedShard, open_plan, plan_shard_names, read_planned_shard
from synthset.run.records import ShardRecord, compact_manifest, read_record, read_records, shard_problem
from synthset.run.schema import dataset_features

if TYPE_CHECKING:
    from accelerate import PartialState

    from synthset.run.lock import Lock

logger = logging.getLogger(__name__)

PROGRESS_REFRESH_SECONDS = 5.0


@dataclass(frozen=True)
class GenerateSummary:
    rank: int
    world_size: int
    shards_assigned: int
    shards_made: int
    images_made: int
    shards_redone: int
    all_shards_done: bool
    seconds: float


def check_world_size(launched: int, seen: int) -> None:
    """Refuse to run when the launcher started more processes than accelerate has joined into a group."""
    if launched != seen:
        raise SynthsetError(
            f"the launcher started {launched} processes but accelerate sees {seen}: each would generate every "
            "shard; on CPU launch with `accelerate launch --multi_gpu --num_processes N` "
            "or `torchrun --nproc_per_node N`"
        )


def make_process_state() -> PartialState:
    """The accelerate state, with the launcher's process count checked against what accelerate sees.

    On a machine without CUDA, a multi-process launch gives every process a plain `PartialState()` that
    says "rank 0 of 1", and each would generate everything; `cpu=True` makes them a real gloo group.
    """
    import torch
    from accelerate import PartialState

    try:
        state = PartialState(cpu=not torch.cuda.is_available())
    except ValueError as error:  # e.g. WORLD_SIZE set by hand without MASTER_ADDR
        raise SynthsetError(f"accelerate could not set up the processes: {first_line(error)}") from None
    check_world_size(int(os.environ.get("WORLD_SIZE", "1")), state.num_processes)
    return state


def assigned_shards(num_shards: int, rank: int, world_size: int) -> list[int]:
    return [i for i in range(num_shards) if i % world_size == rank]


class GlobalProgress:
    """One bar on the main process with the count of the whole run, from the shard records of all ranks.

    Records are immutable once written, so each is parsed once; the bar adds this process's images that
    are generated but not yet recorded.
    """

    def __init__(self, run: RunDir, total: int, generation_key: str, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.run = run
        self.generation_key = generation_key
        self._rows_by_record: dict[Path, tuple[float, int]] = {}
        self._own_generated = 0
        self._own_recorded = 0
        self._lock = threading.Lock()
        self._last_refresh = 0.0
        self.enabled = enabled
        initial = self._recorded_rows() if enabled else 0
        self.bar = tqdm(total=total, initial=initial, unit="img", desc="generate", disable=not enabled)

    def _recorded_rows(self) -> int:
        for path in self.run.shards_dir.glob("*/*.json"):
            if path.name.startswith("."):
                continue
            mtime = path.stat().st_mtime
            if self._rows_by_record.get(path, (None, 0))[0] != mtime:
                record = read_record(path)
                if record is None:
                    continue
                rows = record.rows if record.generation_key == self.generation_key else 0
                self._rows_by_record[path] = (mtime, rows)
        return sum(rows for _, rows in self._rows_by_record.values())

    def generated(self, count: int) -> None:
        self._own_generated += count
        self.refresh()

    def recorded(self, record: ShardRecord) -> None:
        with self._lock:
            self._own_recorded += record.rows

    def refresh(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last_refresh < PROGRESS_REFRESH_SECONDS:
            self.bar.update(0)
            return
        self._last_refresh = now
        with self._lock:
            in_flight = self._own_generated - self._own_recorded
        self.bar.update(self._recorded_rows() + in_flight - self.bar.n)

    def close(self) -> None:
        self.refresh(force=True)
        self.bar.close()


def _batches(rows: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def recorded_shard_problems(
    run: RunDir,
    indices: list[int],
    names: list[str],
    records: dict[str, ShardRecord],
    key: str,
    verify: bool,
    stop: threading.Event,
) -> list[tuple[int, str]]:
    """(shard index, why) for each recorded shard that must be made again; stops early once `stop` is set.

    It runs on a worker thread while the unrecorded shards are made: with verification on, a restart reads
    and hashes every shard the rank already finished, minutes of disk reading at ImageNet scale that would
    otherwise keep the GPU idle after every preemption. A shard's bytes do not depend on when it is made.
    """
    plan = open_plan(run)  # its own handle: not shared across threads
    problems = []
    for i in indices:
        if stop.is_set():
            break
        problem = shard_problem(run, read_planned_shard(plan, i, names[i]), records, key, verify)
        if problem is not None:
            problems.append((i, problem))
    return problems


def generate_run(run_dir: str | Path | RunDir, verify: bool = True) -> GenerateSummary:
    """Generate this process's unfinished shards of a planned run; see the module docstring."""
    started = time.monotonic()
    run = RunDir.planned(run_dir)
    lock = read_lock(run)
    state = make_process_state()
    rank, world_size = state.process_index, state.num_processes
    plan = open_plan(run)
    shard_names = plan_shard_names(plan)
    mine = assigned_shards(len(shard_names), rank, world_size)
    records = read_records(run)
    # Only shard indices are kept: a shard's plan rows are read when its turn comes, so memory does not
    # grow with the plan (at 6x ImageNet all rows of one rank would be gigabytes).
    fresh = [i for i in mine if shard_names[i] not in records]
    recorded = [i for i in mine if shard_names[i] in records]
    stop_check = threading.Event()
    check_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="synthset-record-check")
    checking = check_pool.submit(
        recorded_shard_problems, run, recorded, shard_names, records, lock.generation_key, verify, stop_check
    )

    progress = GlobalProgress(run, plan.metadata.num_rows, lock.generation_key, state.is_main_process)
    maker: ShardMaker | None = None
    redone = 0

    def make(i: int) -> None:
        nonlocal maker
        if maker is None:  # loaded only when there is something to make
            maker = ShardMaker(run, lock, state, progress)
            logger.info(
                "rank %d/%d: %d of %d assigned shards to make, %d recorded ones checked meanwhile, attention=%s, "
                "dtype=%s", rank, world_size, len(fresh), len(mine), len(recorded), maker.generator.attention,
                maker.generator.dtype,
            )  # fmt: skip
        maker.make(read_planned_shard(plan, i, shard_names[i]))

    try:
        for i in fresh:
            make(i)
        for i, problem in checking.result():
            logger.warning("shard %s is redone: %s", shard_names[i], problem)
            redone += 1
            make(i)
    finally:
        stop_check.set()
        check_pool.shutdown(wait=False)
        if maker is not None:
            maker.close()
    progress.close()

    final_records = read_records(run)
    all_done = all(
        name in final_records and final_records[name].generation_key == lock.generation_key for name in shard_names
    )
    if all_done:
        compact_manifest(run)
    return GenerateSummary(
        rank=rank,
        world_size=world_size,
        shards_assigned=len(mine),
        shards_made=len(fresh) + redone,
        images_made=maker.images_made if maker is not None else 0,
        shards_redone=redone,
        all_shards_done=all_done,
        seconds=round(time.monotonic() - started, 2),
    )


class ShardMaker:
    """The loaded pipeline and the shard writer of one process: makes whole shards, one call per batch."""

    def __init__(self, run: RunDir, lock: Lock, state: PartialState, progress: GlobalProgress) -> None:
        from synthset.generation.diffusion import generator_columns, load_generator
        from synthset.generation.writer import ShardWriter

        self.generator = load_generator(lock, state.device, run, show_progress=state.is_main_process)
        self.constant_columns = generator_columns(self.generator, lock)
        self.batch_size = lock.recipe.generator.batch_size
        self.progress = progress
        self.images_made = 0
        self.writer = ShardWriter(
            run,
            dataset_features(read_label_names(run)),
            lock.recipe.storage,
            lock.generation_key,
            state.process_index,
            state.num_processes,
            on_shard_done=progress.recorded,
        )

    def make(self, shard: PlannedShard) -> None:
        from synthset.generation.diffusion import generate_images

        rows = shard.rows.to_pylist()
        self.writer.start_shard(shard.name, shard.sample_ids, shard.digest)
        for batch in _batches(rows, self.batch_size):
            # Every call has the recipe's batch size: reduction order depends on the batch shape.
            padded = batch + [batch[-1]] * (self.batch_size - len(batch))
            images, decided = generate_images(self.generator, padded)
            out_rows = [{**row, **self.constant_columns, **d} for row, d in zip(batch, decided, strict=False)]
            self.writer.add_batch(out_rows, images[: len(batch)])
            self.images_made += len(batch)
            self.progress.generated(len(batch))
        self.writer.finish_shard()

    def close(self) -> None:
        self.writer.close()
