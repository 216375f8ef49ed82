"""`synthset validate`: check a generated run against its plan before anyone trains on it or downloads it.

Per planned shard: a record made with the lock's settings for exactly these plan rows, and a file whose
size and sha256 are the recorded ones (`fast=True` checks sizes only). Per generation config and split:
every planned sample present exactly once (no duplicate `sample_id`, no plan row missing, nothing
unplanned), exact per-class counts, labels inside the class set, and every image decodes at the size the
recipe stores. Every problem names the file or sample at fault.

One pass, shard by shard, in flat memory: each shard's plan rows, record and file are read once (the file
is mapped, hashed and decoded from that one read, and its footer's sizes kept for `build`), and nothing is
held across shards but counts. No set of every sample id is needed: a shard's rows must be exactly its
planned ids, and plan ids are unique by construction, so "exactly once" is checked within each shard.
`build` runs this same pass (`check_run`) and takes from it what it needs: the footers' sizes and the
planned counts per class.

On an object store each shard is read in the store (run/objects.py): a small one whole in one request, a
large one by range requests a row group at a time; its sha256 is the one the store keeps (else the object
hashed streamed). `build` of a store run passes `images=False`: no hash and no image column, so no image
byte comes to the host (records, sizes, footers, ids and labels prove the layout; `validate` does the rest).

With a quality gate, a planned sample may be *dropped* (its shard's record lists it, with the reason and
every attempt's scores) instead of written: it counts as settled, not missing, and a class's expected
count is its planned count less its dropped samples. A class that lost samples is not a problem but a
note, printed with the report; a class left with no image at all is named as such.
"""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from synthset.errors import first_line
from synthset.run import objects
from synthset.run.classes_table import read_label_names
from synthset.run.ids import parse_shard_name
from synthset.run.lock import Lock, read_lock
from synthset.run.mirror import committed
from synthset.run.paths import RunDir
from synthset.run.plan import PlannedShard, open_plan
from synthset.run.records import (
    ShardRecord,
    checksum_problem,
    read_record,
    read_shard_record,
    recorded_shards,
    unfinished_problem,
)

MAX_PROBLEMS_LISTED = 5
ROW_COLUMNS = ["sample_id", "config", "split", "label", "image"]
Key = tuple[str, str]  # (config, split)


@dataclass
class ConfigReport:
    config: str
    split: str
    planned: int = 0
    found: int = 0
    dropped: int = 0  # planned samples the quality gate dropped (recorded in their shards' records)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # not problems: e.g. classes that lost samples to the gate

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, problem: str) -> None:
        self.problems.append(problem)


@dataclass(frozen=True)
class FileSizes:
    """Sizes of Parquet files, summed, from their footers: what `build` writes into `dataset_info`."""

    rows: int = 0
    data_bytes: int = 0  # the row groups' uncompressed size: what `datasets` calls a split's num_bytes
    file_bytes: int = 0

    def __add__(self, other: FileSizes) -> FileSizes:
        return FileSizes(self.rows + other.rows, self.data_bytes + other.data_bytes, self.file_bytes + other.file_bytes)


def footer_sizes(metadata: pq.FileMetaData, file_bytes: int) -> FileSizes:
    data = sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
    return FileSizes(metadata.num_rows, data, file_bytes)


@dataclass
class RunCheck:
    """What one pass over a run found: the reports `synthset validate` prints, and what `build` needs."""

    reports: list[ConfigReport]
    shards: list[str]  # the plan's shard names, in plan order
    band_sizes: dict[tuple[str, int], FileSizes]  # per (generation config, band): its shards' files, summed
    planned: dict[Key, Counter]  # planned images per label
    unfinished: int = 0  # shards without a record that proves them finished (checksums aside)
    first_unfinished: tuple[str, str] | None = None  # (shard, why)


@dataclass
class _Tally:
    """The counts of one (config, split) while the pass runs."""

    report: ConfigReport
    planned: Counter = field(default_factory=Counter)
    found: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    reasons: dict[int, Counter] = field(default_factory=dict)  # label -> why its samples were dropped
    missing: int = 0
    first_missing: str | None = None

    def add_missing(self, missing: set[str]) -> None:
        self.missing += len(missing)
        self.first_missing = min(missing | ({self.first_missing} if self.first_missing else set()))


def _image_problem(data: bytes, expected: tuple[int, int]) -> str | None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            size = image.size
    except Exception as error:  # noqa: BLE001 - any decoder failure is a finding, not a crash
        return f"does not decode ({type(error).__name__})"
    return None if size == expected else f"is {size[0]}x{size[1]}, expected {expected[0]}x{expected[1]}"


def _relative(run: RunDir, path: Path) -> str:
    return path.relative_to(run.root).as_posix()


def _key_of(shard: str) -> Key:
    name = parse_shard_name(shard)
    return name.config, name.split


class _RunValidator:
    """The state of one pass: counts per (config, split), and the sizes `build` needs."""

    def __init__(
        self, run: RunDir, lock: Lock, label_names: list[str], fast: bool, stop_reading: bool, images: bool = True
    ) -> None:
        self.run, self.generation_key, self.label_names = run, lock.generation_key, label_names
        self.fast, self.stop_reading, self.images = fast, stop_reading, images
        self.expected_size = lock.recipe.storage.stored_size(lock.recipe.generator.width, lock.recipe.generator.height)
        self.tallies: dict[Key, _Tally] = {}
        self.band_sizes: dict[tuple[str, int], FileSizes] = {}
        self.unfinished = 0
        self.first_unfinished: tuple[str, str] | None = None

    def tally(self, key: Key) -> _Tally:
        return self.tallies.get(key) or self.tallies.setdefault(key, _Tally(ConfigReport(*key)))

    def check(self, shard: PlannedShard) -> None:
        """One planned shard: its record, then (when it proves the shard finished) its file, read once."""
        for row in shard.rows.select(["config", "split", "label"]).to_pylist():
            tally = self.tally((row["config"], row["split"]))
            tally.planned[row["label"]] += 1
            tally.report.planned += 1
        record = read_shard_record(self.run, shard.name)
        problem = "no record" if record is None else self._unfinished(shard, record)
        if problem is not None:
            self.unfinished += 1
            self.first_unfinished = self.first_unfinished or (shard.name, problem)
            self._shard_problem(shard, problem)
        elif record is not None and not (self.stop_reading and self.unfinished):  # else build stops anyway
            self._read(shard, record)

    def _unfinished(self, shard: PlannedShard, record: ShardRecord) -> str | None:
        return unfinished_problem(self.run, record, shard.sample_ids, self.generation_key, shard.digest)

    def _shard_problem(self, shard: PlannedShard, problem: str) -> None:
        """The shard's own problem is the finding; its samples are not reported missing one by one too."""
        for row in shard.rows.select(["config", "split", "label"]).to_pylist():
            self.tally((row["config"], row["split"])).found[row["label"]] += 1
        where, run = _relative(self.run, self.run.shard_file(shard.name)), self.run
        if problem in ("no record", "shard file missing"):
            self.tally(_key_of(shard.name)).report.add(f"{where}: {problem} (run `synthset generate {run}`)")
        else:
            self.tally(_key_of(shard.name)).report.add(f"{where}: {problem}; `synthset generate {run}` makes it again")

    def _read(self, shard: PlannedShard, record: ShardRecord) -> None:
        """Read the file once: a local file mapped, a small store object in one request (both hashed here);
        a larger store object where it is, by range requests (`_read_in_store`)."""
        path = self.run.shard_file(shard.name)
        if not objects.in_store(self.run, path):
            with pa.memory_map(str(path)) as source:
                self._read_bytes(shard, record, path, source.read_buffer())
            return
        small = objects.small_object(self.run, path)
        if small is None:
            self._read_in_store(shard, record, path)
        else:  # hashing the bytes already here costs less than asking the store for its checksum
            self._read_bytes(shard, record, path, pa.py_buffer(small))

    def _read_bytes(self, shard: PlannedShard, record: ShardRecord, path: Path, data: pa.Buffer) -> None:
        """Hash the file's bytes, then decode its rows and read its footer from the same bytes."""
        problem = None if self.fast else checksum_problem(self.run, record, hashlib.sha256(data).hexdigest())
        if problem is not None:
            self._shard_problem(shard, problem)
            return
        try:  # with --fast, a flipped byte in the footer gets this far
            parquet = pq.ParquetFile(pa.BufferReader(data))
            sizes = footer_sizes(parquet.metadata, data.size)
        except (OSError, pa.ArrowException) as error:
            self._shard_problem(shard, f"not a readable Parquet file ({first_line(error)})")
            return
        self._add_sizes(shard.name, sizes)
        self._check_rows(shard, record, parquet, _relative(self.run, path))

    def _read_in_store(self, shard: PlannedShard, record: ShardRecord, path: Path) -> None:
        """A shard of an object-store run, read where it is: its stored sha256, then its footer and rows."""
        problem = None if self.fast else checksum_problem(self.run, record)
        if problem is not None:
            self._shard_problem(shard, problem)
            return
        with objects.parquet_file(self.run, path) as parquet:
            self._add_sizes(shard.name, footer_sizes(parquet.metadata, objects.size(self.run, path) or 0))
            self._check_rows(shard, record, parquet, _relative(self.run, path))

    def _add_sizes(self, shard: str, sizes: FileSizes) -> None:
        """Sum by band, not kept by shard: a published config is a set of whole bands."""
        name = parse_shard_name(shard)
        band = (name.config, name.band)
        self.band_sizes[band] = self.band_sizes.get(band, FileSizes()) + sizes

    def _check_rows(self, shard: PlannedShard, record: ShardRecord, parquet: pq.ParquetFile, where: str) -> None:
        """The shard's rows and dropped samples are its planned ids, each exactly once."""
        planned = set(shard.sample_ids)
        settled = self._check_dropped(shard, record, planned)
        try:
            for batch in parquet.iter_batches(columns=ROW_COLUMNS if self.images else ROW_COLUMNS[:-1]):
                for row in batch.to_pylist():
                    self._check_row(shard.name, row, planned, settled, where)
        except (OSError, pa.ArrowException) as error:  # with --fast, a flipped byte in a page gets this far
            self._unreadable(shard, settled, error)
            return
        missing = planned - settled
        if missing:
            self.tally(_key_of(shard.name)).add_missing(missing)

    def _unreadable(self, shard: PlannedShard, settled: set[str], error: Exception) -> None:
        """A shard that breaks off while its rows are read: one problem; its rows not read yet count as found
        (as `_shard_problem` counts a whole faulty shard's), so they are not reported missing one by one."""
        for row in shard.rows.select(["sample_id", "config", "split", "label"]).to_pylist():
            if row["sample_id"] not in settled:
                self.tally((row["config"], row["split"])).found[row["label"]] += 1
        where, run = _relative(self.run, self.run.shard_file(shard.name)), self.run
        self.tally(_key_of(shard.name)).report.add(
            f"{where}: not a readable Parquet file ({first_line(error)}); `synthset generate {run}` makes it again"
        )

    def _check_dropped(self, shard: PlannedShard, record: ShardRecord, planned: set[str]) -> set[str]:
        """Count the samples the gate dropped (each must be planned here, once); -> their ids."""
        tally, settled = self.tally(_key_of(shard.name)), set()
        for entry in record.dropped:
            if entry["sample_id"] not in planned or entry["sample_id"] in settled:
                tally.report.add(f"{entry['sample_id']}: recorded as dropped but not planned in {shard.name}")
                continue
            settled.add(entry["sample_id"])
            tally.dropped[entry["label"]] += 1
            tally.reasons.setdefault(entry["label"], Counter())[entry["reason"]] += 1
            tally.report.dropped += 1
        return settled

    def _check_row(self, shard: str, row: dict, planned: set[str], settled: set[str], where: str) -> None:
        tally = self.tally((row["config"], row["split"]))
        report, sample_id, label = tally.report, row["sample_id"], row["label"]
        report.found += 1
        if sample_id in settled:
            report.add(f"{sample_id}: appears more than once (or is also recorded as dropped)")
        settled.add(sample_id)
        if sample_id not in planned:
            report.add(f"{sample_id}: not in the plan of {shard}")
        if not 0 <= label < len(self.label_names):
            report.add(f"{sample_id}: label {label} outside 0..{len(self.label_names) - 1}")
        tally.found[label] += 1
        problem = _image_problem(row["image"]["bytes"], self.expected_size) if "image" in row else None
        if problem:
            report.add(f"{sample_id}: image {problem} ({where})")

    def check_unplanned_records(self, planned: set[str]) -> None:
        """A record of a shard the plan no longer has (a re-plan with fewer images) is a problem to clean."""
        unplanned = sorted(name for name in recorded_shards(self.run) if name not in planned)
        for path in map(self.run.record_file, unplanned):
            if self.run.store is not None and not committed(self.run, path):
                continue
            record = read_record(path)
            if record is not None and record.shard not in planned:
                where = _relative(self.run, self.run.shard_file(record.shard))
                self.tally(_key_of(record.shard)).report.add(
                    f"{where}: not in the plan (`synthset clean {self.run}` removes it)"
                )

    def reports(self) -> list[ConfigReport]:
        for tally in self.tallies.values():
            self._compare_counts(tally)
        return sorted((t.report for t in self.tallies.values()), key=lambda r: (r.config, r.split))

    def _compare_counts(self, tally: _Tally) -> None:
        """Missing samples, then each class's count against its plan (less what the gate dropped)."""
        report = tally.report
        if tally.missing:
            report.add(f"{tally.missing} planned samples missing (first: {tally.first_missing})")
        for label, count in sorted(tally.planned.items()):
            lost = tally.dropped[label]
            if tally.found[label] != count - lost:
                less = f" less {lost} dropped" if lost else ""
                report.add(f"label {label}: {tally.found[label]} images, planned {count}{less}")
            elif lost:
                reasons = ", ".join(f"{n} {why}" for why, n in sorted(tally.reasons[label].items()))
                emptied = "; NO image left" if lost == count else ""
                name = f"label {label} ({self.label_names[label]})"
                report.notes.append(f"{name}: {lost} of {count} planned images dropped ({reasons}){emptied}")


def check_run(
    run: RunDir, lock: Lock, fast: bool = False, stop_reading_when_unfinished: bool = False, images: bool = True
) -> RunCheck:
    """Validate a run in one pass over its plan, records and shard files (module docstring).

    Args:
        run: the planned run; lock: its lock, as the caller read it.
        fast: check the files' sizes, not their sha256.
        stop_reading_when_unfinished: once a shard is found unfinished, read no more files (build refuses such
            a run whatever the files hold, and only counts the unfinished shards).
        images: read and decode the image column (build of an object-store run reads ids and labels only).

    Returns:
        The reports, and the footer sizes and planned counts that `build` writes into the README.
    """
    from tqdm.auto import tqdm

    plan = open_plan(run)
    validator = _RunValidator(run, lock, read_label_names(run), fast, stop_reading_when_unfinished, images)
    shards = objects.read_ahead_shards(run, plan.iter_shards())  # on a store: small shards fetched ahead
    for shard in tqdm(shards, total=len(plan.shard_names), desc="validate", unit="shard", disable=None):
        validator.check(shard)
    validator.check_unplanned_records(set(plan.shard_names))
    planned = {key: tally.planned for key, tally in validator.tallies.items()}
    reports = validator.reports()
    return RunCheck(
        reports, plan.shard_names, validator.band_sizes, planned, validator.unfinished, validator.first_unfinished
    )


def validate_run(run_dir: str | Path | RunDir, fast: bool = False) -> list[ConfigReport]:
    """`synthset validate`: one report per generation config and split (see the module docstring)."""
    run = RunDir.planned(run_dir)
    return check_run(run, read_lock(run), fast).reports


def format_reports(reports: list[ConfigReport]) -> str:
    lines = [f"{'config':<20} {'split':<8} {'planned':>9} {'found':>9} {'dropped':>9}  status"]
    for report in reports:
        status = "ok" if report.ok else f"{len(report.problems)} problems"
        lines.append(
            f"{report.config:<20} {report.split:<8} {report.planned:>9} {report.found:>9} {report.dropped:>9}  {status}"
        )
        for problem in report.problems[:MAX_PROBLEMS_LISTED]:
            lines.append(f"    {problem}")
        if len(report.problems) > MAX_PROBLEMS_LISTED:
            lines.append(f"    ... and {len(report.problems) - MAX_PROBLEMS_LISTED} more")
        lines += format_notes(report)
    return "\n".join(lines)


def format_notes(report: ConfigReport) -> list[str]:
    """The report's notes (classes that lost samples to the quality gate), emptied classes first."""
    notes = sorted(report.notes, key=lambda note: "NO image left" not in note)
    lines = [f"    note: {note}" for note in notes[:MAX_PROBLEMS_LISTED]]
    if len(notes) > MAX_PROBLEMS_LISTED:
        lines.append(f"    note: ... and {len(notes) - MAX_PROBLEMS_LISTED} more classes lost samples")
    return lines
