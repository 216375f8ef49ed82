"""The generate stage: make every planned image exactly once, with any number of workers.

Work is divided by shard, and shards are fixed by the plan. A worker makes a shard only while it holds
the shard's claim (`synthset.run.claims`), so the ranks of one `accelerate launch`, a second launch on
the same run directory, or a worker started by hand later all share a run safely: no shard is made by
two live workers, and a shard whose worker died is taken over. Rank r of w first tries the shards whose
index i satisfies i % w == r (a plain fixed-size launch thus claims without contention), then the others'
(which helps with a straggler). A sample's bytes depend only on the plan, never on who makes it.

Ranks never wait on each other inside the loop: there is no collective call at all. A worker that finds
nothing left to claim waits only while other live workers hold unfinished shards (to take one over if its
worker dies) and ends when every shard is recorded; whichever worker sees that compacts the manifest.

Before any work, the lock is checked against its recipe (`read_lock`) and a local model's files against
the hash the plan pinned, so a run never mixes images made under two settings or two sets of weights.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synthset.fsutil import remove_dead_temp_files
from synthset.generation.processes import exit_with_launcher, make_process_state
from synthset.generation.progress import GlobalProgress
from synthset.models import check_local_model
from synthset.run.access import READS_PLAN_AND_RECORDS, put_file, refresh
from synthset.run.claims import DEFAULT_LEASE_SECONDS, ClaimBook, ClaimLost, Worker, current_claim
from synthset.run.classes_table import read_label_names
from synthset.run.lock import read_lock
from synthset.run.paths import RunDir
from synthset.run.plan import PlannedShard, open_plan, plan_shard_names, read_planned_shard
from synthset.run.records import (
    ShardRecord,
    compact_manifest,
    read_record_of,
    read_records,
    record_problem,
    shard_problem,
)
from synthset.run.schema import dataset_features, rejects_features

if TYPE_CHECKING:
    from accelerate import PartialState

    from synthset.run.lock import Lock

logger = logging.getLogger(__name__)

MAX_WAIT_POLL_SECONDS = 5.0


@dataclass(frozen=True)
class GenerateSummary:
    rank: int
    world_size: int
    worker: str
    shards_made: int  # recorded by this worker (a shard whose claim was taken over meanwhile is not)
    images_made: int  # rows written
    shards_redone: int  # of shards_made: made again because their record failed its check
    shards_already_done: int  # recorded before this worker started
    shards_done_by_others: int  # recorded by other workers while this one ran
    all_shards_done: bool
    seconds: float
    stopped: bool = False  # a stop signal (SIGTERM, SIGUSR1) ended it before every shard was recorded
    redraws: int = 0  # images made again because the quality gate rejected an attempt
    dropped: int = 0  # planned samples the quality gate dropped
    near_duplicates: int = 0
    shards_dropped: int = 0  # made, but dropped unrecorded: another worker had taken over its claim


def preferred_order(num_shards: int, rank: int, world_size: int) -> list[int]:
    """Rank r's own share (i % w == r) first, then the other shards, each in plan order."""
    own = [i for i in range(num_shards) if i % world_size == rank]
    return own + [i for i in range(num_shards) if i % world_size != rank]


def check_generator_unchanged(run: RunDir, lock: Lock) -> None:
    """A local model's files must still be those the plan pinned (edited weights or configs change images)."""
    if lock.model.source == "local":
        check_local_model(Path(lock.model.load_path), lock.model.revision, run.cache_dir, "generator.model")


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


class Stopped(Exception):
    """The worker was asked to stop (a scheduler's SIGTERM or time-limit warning): it takes no more work."""


class ShardMaker:
    """The loaded pipeline and the shard writer of one process: makes whole shards, one call per batch."""

    def __init__(
        self,
        run: RunDir,
        lock: Lock,
        state: PartialState,
        progress: GlobalProgress,
        claims: ClaimBook,
        stop: threading.Event,
    ) -> None:
        from synthset.generation.diffusion import generator_columns, load_generator
        from synthset.generation.writer import ShardWriter, WriterIdentity

        self.generator = load_generator(lock, state.device, run, show_progress=state.is_main_process)
        self.constant_columns = generator_columns(self.generator, lock)
        self.batch_size = lock.recipe.generator.batch_size
        self.recipe_seed = lock.recipe.seed
        self.quality = lock.recipe.quality
        self.screener = None
        self._preparing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="synthset-gate-prepare")
        if self.quality is not None:
            from synthset.generation.screening import Screener

            self.screener = Screener(lock, run, state.device, self.generator.dtype)
        self.progress = progress
        self.claims = claims
        self.stop = stop
        self.images_made = self.redraws = self.dropped = self.near_duplicates = 0
        # what became of each shard this maker finished, as the writer thread reports it: only a recorded
        # shard counts as made (a worker whose claim was taken over drops its copy, unrecorded)
        self.recorded: list[str] = []
        self.discarded: list[str] = []
        worker = claims.worker
        label_names = read_label_names(run)
        self.writer = ShardWriter(
            run,
            dataset_features(label_names),
            lock.recipe.storage,
            lock.generation_key,
            WriterIdentity(
                f"{worker.host}.{worker.pid}.{worker.id}", state.process_index, state.num_processes, state.device.type
            ),
            may_publish=self._still_ours,
            on_shard_done=self._recorded,
            on_shard_discarded=self._discarded,
            rejects_features=rejects_features(label_names),
        )

    def _still_ours(self, shard: str) -> bool:
        try:
            self.claims.check_held(shard)
        except ClaimLost as lost:
            logger.warning("%s; this worker's copy is dropped", lost)
            return False
        return True

    def _recorded(self, record: ShardRecord) -> None:
        self.progress.recorded(record)
        self.claims.release(record.shard)
        self.recorded.append(record.shard)

    def _discarded(self, shard: str) -> None:
        self.progress.discarded(shard)
        self.claims.release(shard)
        self.discarded.append(shard)

    def make(self, shard: PlannedShard) -> None:
        """Make every planned sample of the shard: round 0 in plan order, then each round of redraws.

        With a quality gate, batch i is judged after batch i + 1 was generated: the gate's CPU half (resizing
        and normalizing for CLIP and the checker) runs on a worker thread while the pipeline makes the next
        batch. The judging order (and so the shard's bytes) is the batch order all the same.
        """
        from synthset.generation.gate import Attempt, NearDuplicates

        self.writer.start_shard(shard.name, shard.sample_ids, shard.digest)
        pending = [Attempt(row) for row in shard.rows.to_pylist()]
        twins = None
        if self.quality is not None and self.quality.near_duplicates is not None:
            twins = NearDuplicates(self.quality.near_duplicates.threshold)
        while pending:
            redraw: list[Attempt] = []
            waiting: _MadeBatch | None = None
            for batch in _batches(pending, self.batch_size):
                if self.stop.is_set():  # abandon the shard: closing the writer drops its unfinished file
                    raise Stopped(shard.name)
                made = self._generate(batch)
                if made.prepared is None:  # no gate: straight to the writer
                    self._write_unscreened(shard.name, made)
                    continue
                if waiting is not None:
                    redraw += self._judge(shard.name, waiting, twins)
                waiting = made
            if waiting is not None:
                redraw += self._judge(shard.name, waiting, twins)
            self.redraws += len(redraw)
            pending = redraw
        self.writer.finish_shard()

    def _generate(self, batch: list) -> _MadeBatch:
        """One pipeline call, padded to the recipe's batch size; the gate's preprocessing starts beside it."""
        from synthset.generation.diffusion import generate_images

        # Every call has the recipe's batch size: reduction order depends on the batch shape.
        padded = batch + [batch[-1]] * (self.batch_size - len(batch))
        rows = [attempt.pipeline_row(self.recipe_seed) for attempt in padded]
        images, decided = generate_images(self.generator, rows)
        prepared = None
        if self.screener is not None:  # the padding too: the gate's models see the full batch shape
            prepared = self._preparing.submit(self.screener.prepare, images)
        return _MadeBatch(batch, rows, images, decided, prepared)

    def _write_unscreened(self, shard: str, made: _MadeBatch) -> None:
        from synthset.generation.gate import UNSCREENED_COLUMNS

        count = len(made.attempts)
        out_rows = [
            {**row, **self.constant_columns, **d, **UNSCREENED_COLUMNS}
            for row, d in zip(made.rows[:count], made.decided, strict=False)
        ]
        self.writer.add_batch(out_rows, made.images[:count])
        self.images_made += count
        self.progress.generated(shard, count)

    def _judge(self, shard: str, made: _MadeBatch, twins) -> list:
        """Score a generated batch, apply the policy, feed the writer; returns the attempts to redraw."""
        from synthset.generation.gate import judge_batch

        assert self.screener is not None and self.quality is not None and made.prepared is not None
        scores = self.screener.score_prepared(made.prepared.result(), made.rows)
        count = len(made.attempts)
        outcome = judge_batch(
            self.quality, made.attempts, made.rows[:count], made.images, scores, made.decided,
            self.constant_columns, twins,
        )  # fmt: skip
        self.writer.add_batch(outcome.kept_rows, outcome.kept_images)
        self.writer.add_rejected(outcome.rejected_rows, outcome.rejected_images)
        self.writer.add_dropped(outcome.dropped)
        self.images_made += len(outcome.kept_rows)
        self.dropped += len(outcome.dropped)
        self.near_duplicates += outcome.near_duplicates
        self.progress.generated(shard, outcome.settled)
        return outcome.redraw

    def close(self) -> None:
        self._preparing.shutdown(wait=True)
        self.writer.close()


@dataclass
class _MadeBatch:
    """A generated batch waiting to be judged: its attempts, pipeline rows (padded), images, and the
    future of the gate's preprocessing (None without a gate)."""

    attempts: list[Any]
    rows: list[dict[str, Any]]
    images: list[Any]
    decided: list[dict[str, Any]]
    prepared: Future | None


def _batches(rows: list[Any], size: int) -> list[list[Any]]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


class _Worker:
    """One generate process: walks the shards in its preferred order, claiming and making what it can."""

    def __init__(
        self, run: RunDir, lock: Lock, state: PartialState, verify: bool, lease_seconds: float, options: WorkerOptions
    ) -> None:
        self.run, self.lock, self.state, self.verify = run, lock, state, verify
        self.plan = open_plan(run)
        self.names = plan_shard_names(self.plan)
        self.claims = ClaimBook(run, worker=options.worker, lease_seconds=lease_seconds)
        self.stop = options.stop or threading.Event()
        self.stopped = False
        self.progress = GlobalProgress(run, self.plan.num_rows, lock.generation_key, state.is_main_process)
        self.maker: ShardMaker | None = None
        self.by_others = 0
        self.redo_names: set[str] = set()  # shards made again because their record failed its check
        self.last_wait = ""

    def shard(self, i: int) -> PlannedShard:
        return read_planned_shard(self.plan, i, self.names[i])

    def _load_maker(self) -> ShardMaker:
        if self.maker is None:  # loaded only when there is something to make
            self.maker = ShardMaker(self.run, self.lock, self.state, self.progress, self.claims, self.stop)
            logger.debug(
                "worker %s (rank %d/%d): attention=%s, dtype=%s", self.claims.worker.id, self.state.process_index,
                self.state.num_processes, self.maker.generator.attention, self.maker.generator.dtype,
            )  # fmt: skip
        return self.maker

    def attempt(self, i: int, redo: bool = False) -> str:
        """Claim shard i and make it: "made", "done" (someone recorded it meanwhile) or "held" (a live claim)."""
        name = self.names[i]
        if self.stop.is_set():
            raise Stopped(name)
        if self.claims.try_claim(name) is None:
            return "held"
        shard = self.shard(i)
        record = read_record_of(self.run, name)
        key = self.lock.generation_key
        if record is not None and record_problem(self.run, record, shard.sample_ids, key, shard.digest, redo) is None:
            self.claims.release(name)  # finished by another worker between our look and our claim
            return "done"
        if redo:
            self.progress.redoing(name)
        self._load_maker().make(shard)
        if redo:
            self.redo_names.add(name)
        return "made"

    @property
    def recorded(self) -> list[str]:
        """The shards this worker recorded (read once the writer is closed: it reports them)."""
        return self.maker.recorded if self.maker is not None else []

    def is_recorded(self, i: int) -> bool:
        record = read_record_of(self.run, self.names[i])
        return record is not None and record.generation_key == self.lock.generation_key

    def wait_for(self, held: list[int], redo: set[int]) -> list[int]:
        """Sleep while other workers hold `held`; return those to try again (not recorded, or to redo)."""
        holders = set()
        for i in held:
            claim = current_claim(self.run, self.names[i])
            if claim is not None:
                holders.add(f"{claim.worker.host}:{claim.worker.pid}")
        message = f"waiting for {len(held)} shards held by other workers ({', '.join(sorted(holders))})"
        if message != self.last_wait:  # said once while nothing changes, not once per poll
            logger.info("%s", message)
            self.last_wait = message
        self.stop.wait(min(MAX_WAIT_POLL_SECONDS, self.claims.lease_seconds / 4))
        return [i for i in held if i in redo or not self.is_recorded(i)]

    def pass_over(self, indices: list[int], redo: set[int]) -> list[int]:
        """Try every shard of `indices` once; the ones other live workers hold are returned.

        After each shard this worker makes, the shards it found held are tried again: a holder that died
        meanwhile loses its shard about a lease after its last heartbeat, not at the end of this pass.
        """
        held: list[int] = []
        for i in indices:
            outcome = self.attempt(i, redo=i in redo)
            if outcome == "held":
                held.append(i)
                continue
            redo.discard(i)
            self.by_others += outcome == "done"
            if outcome == "made" and held:
                held = self.pass_over(held, redo)
        return held

    def run_all(self, order: list[int], recorded: set[str]) -> None:
        """Make every unrecorded shard (and every recorded one of our share that fails its check)."""
        rank, world_size = self.state.process_index, self.state.num_processes
        own_recorded = [i for i in order if i % world_size == rank and self.names[i] in recorded]
        records = {name: r for name, r in read_records(self.run).items() if name in recorded}
        stop_check = threading.Event()
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="synthset-record-check")
        checking = pool.submit(
            recorded_shard_problems, self.run, own_recorded, self.names, records, self.lock.generation_key,
            self.verify, stop_check,
        )  # fmt: skip
        try:
            redo: set[int] = set()
            held = self.pass_over([i for i in order if self.names[i] not in recorded], redo)
            for i, problem in checking.result():
                logger.warning("shard %s is made again: %s", self.names[i], problem)
                redo.add(i)
            held += self.pass_over(sorted(redo, key=order.index), redo)
            while held:
                held = self.pass_over(self.wait_for(held, redo), redo)
        except Stopped as stopped:
            self.stopped = True
            logger.warning("stop requested: shard %s and those after it are left to other workers", stopped)
        finally:
            stop_check.set()
            pool.shutdown(wait=False)
            try:
                if self.maker is not None:
                    self.maker.close()
            finally:
                self.claims.close()
                self.progress.close()  # ends the bar's line, so an error prints on a line of its own


@dataclass(frozen=True)
class WorkerOptions:
    """How a scheduler drives one worker: the identity its claims carry (so that `synthset status` can name
    the job a worker runs in), and an event that, once set, makes it stop taking work."""

    worker: Worker | None = None
    stop: threading.Event | None = None


def generate_run(
    run_dir: str | Path | RunDir,
    verify: bool = True,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    options: WorkerOptions | None = None,
) -> GenerateSummary:
    """Generate this worker's share of a planned run's unfinished shards; see the module docstring.

    When `options.stop` is set (by a signal handler, see `synthset.generation.processes.stop_on_signals`) the
    worker finishes the pipeline call in hand, drops its unfinished shard, releases its claims at once (so
    another worker takes them without waiting for the lease) and returns with `stopped` set.
    """
    started = time.monotonic()
    run = RunDir.at(run_dir)
    refresh(run, READS_PLAN_AND_RECORDS)  # the plan, and which shards other workers already finished
    run = RunDir.planned(run)
    lock = read_lock(run)
    check_generator_unchanged(run, lock)
    exit_with_launcher()
    state = make_process_state()
    for folder in run.shard_folders():
        remove_dead_temp_files(folder)  # left by killed workers of this host (other hosts' stay: see clean)
    worker = _Worker(run, lock, state, verify, lease_seconds, options or WorkerOptions())
    recorded_at_start = {
        name for name, record in read_records(run).items() if record.generation_key == lock.generation_key
    }
    order = preferred_order(len(worker.names), state.process_index, state.num_processes)
    worker.run_all(order, recorded_at_start)

    refresh(run, READS_PLAN_AND_RECORDS)
    final_records = read_records(run)
    all_done = all(
        name in final_records and final_records[name].generation_key == lock.generation_key for name in worker.names
    )
    if all_done:
        compact_manifest(run)
        put_file(run, run.manifest_file)
    return GenerateSummary(
        rank=state.process_index,
        world_size=state.num_processes,
        worker=worker.claims.worker.id,
        shards_made=len(worker.recorded),
        images_made=worker.maker.images_made if worker.maker is not None else 0,
        redraws=worker.maker.redraws if worker.maker is not None else 0,
        dropped=worker.maker.dropped if worker.maker is not None else 0,
        near_duplicates=worker.maker.near_duplicates if worker.maker is not None else 0,
        shards_redone=len(set(worker.recorded) & worker.redo_names),
        shards_dropped=len(worker.maker.discarded) if worker.maker is not None else 0,
        shards_already_done=len(recorded_at_start & set(worker.names)),
        shards_done_by_others=worker.by_others,
        all_shards_done=all_done,
        stopped=worker.stopped,
        seconds=round(time.monotonic() - started, 2),
    )
