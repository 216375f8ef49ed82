"""Shard records: the truth about which work is finished.

Each finished shard `shards/<config>/<split>-b<band>-NNNNN.parquet` has a record `...-NNNNN.json` beside
it, written (atomically) only after the shard itself was renamed into place. The manifest is the set of
those records, read as one. No file is ever appended to by two processes: ranks on several nodes share
one network filesystem, and a resumed run may have another world size. A record whose shard is missing,
short or fails its sha256, or whose sample ids or generation settings differ from the plan, does not
count: that shard is made again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from synthset.fsutil import write_text_atomic
from synthset.run import objects
from synthset.run.mirror import committed, put_finished_shard, refresh_file
from synthset.run.paths import RunDir
from synthset.run.plan import PlannedShard


@dataclass(frozen=True)
class ShardRecord:
    shard: str  # e.g. "naive/train-b0-00003"
    file: str  # path relative to shards/
    rows: int
    sample_ids: list[str]
    sha256: str
    bytes: int
    generation_key: str
    plan_digest: str  # hash of the shard's plan rows: a re-plan with other prompts invalidates the shard
    rank: int
    world_size: int
    seconds: float
    worker: str = ""  # host.pid.id of the worker that made it (records before claims have none)
    # The quality gate's planned samples that have no row: {sample_id, label, reason, attempts: [...]}, each
    # attempt {attempt, seed, reason, clip_score, nsfw_score, nsfw}. rows + len(dropped) = planned samples.
    dropped: list[dict] = field(default_factory=list)
    rejects_sha256: str = ""  # the shard's rejects file (thumbnails of rejected attempts), when it has one
    rejects_bytes: int = 0
    device: str = ""  # the device type the worker generated on (cuda, cpu); "" in records made before it was kept

    @property
    def settled(self) -> int:
        """Planned samples this shard finished: written as rows, or dropped by the quality gate."""
        return self.rows + len(self.dropped)


def write_record(run: RunDir, record: ShardRecord) -> None:
    """Commit a finished shard: its record, written after the shard (on an object store, put after it)."""
    write_text_atomic(run.record_file(record.shard), json.dumps(asdict(record)))
    if run.store is not None:
        put_finished_shard(run, record.shard)


def read_record_of(run: RunDir, shard: str) -> ShardRecord | None:
    """A shard's record as it is now, also when other workers (on other hosts) commit shards meanwhile."""
    path = run.record_file(shard)
    if run.store is not None and not refresh_file(run, path):
        return None
    return read_record(path)


def read_record(path) -> ShardRecord | None:
    """One record file, or None when it is unreadable (its shard is then simply redone)."""
    try:
        return ShardRecord(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def recorded_shards(run: RunDir) -> Iterator[str]:
    """The shard name of every record file on disk, in no order, without reading them (temp files are
    invisible: they start with '.'). Only names: a walk over a whole run holds no list of paths."""
    for folder in run.shard_folders():
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.endswith(".json") and not entry.name.startswith("."):
                    yield f"{folder.name}/{entry.name.removesuffix('.json')}"


def record_paths(run: RunDir) -> list[Path]:
    """Every record file on disk, sorted. For a run on an object store: every record the store held at the
    last `pull` (see run/mirror.py)."""
    paths = (run.record_file(name) for name in recorded_shards(run))
    return sorted(path for path in paths if run.store is None or committed(run, path))


def read_records(run: RunDir) -> dict[str, ShardRecord]:
    """Every record on disk, keyed by shard name. Holds them all (their sample ids too): a stage that walks
    a whole run reads them one at a time instead (`read_shard_record`)."""
    records: dict[str, ShardRecord] = {}
    for path in record_paths(run):
        record = read_record(path)
        if record is not None:
            records[record.shard] = record
    return records


def read_shard_record(run: RunDir, shard: str) -> ShardRecord | None:
    """The record of one shard as `read_records` would find it, read alone (None: no readable record)."""
    path = run.record_file(shard)
    if run.store is not None and not committed(run, path):
        return None
    record = read_record(path)
    return record if record is not None and record.shard == shard else None


def record_problem(
    run: RunDir,
    record: ShardRecord,
    sample_ids: list[str],
    key: str,
    digest: str,
    check_sha: bool = True,
    shard_sha256: str | None = None,
) -> str | None:
    """Why a record does not prove its shard finished for this plan, or None if it does.

    `shard_sha256` is the shard file's sha256 when the caller already read its bytes (validation reads each
    shard once: hashed and decoded from one read); else the file is hashed here.
    """
    problem = unfinished_problem(run, record, sample_ids, key, digest)
    if problem is None and check_sha:
        problem = checksum_problem(run, record, shard_sha256)
    return problem


def unfinished_problem(run: RunDir, record: ShardRecord, sample_ids: list[str], key: str, digest: str) -> str | None:
    """What a record lacks to prove its shard finished, checksums aside: settings, rows, files and sizes."""
    if record.generation_key != key:
        return "made with other generation settings"
    if record.sample_ids != sample_ids:
        return "sample ids differ from the plan"
    if record.plan_digest != digest:
        return "its plan rows (prompts, seeds) changed"
    problem = _size_problem(run, run.shard_file(record.shard), record.bytes)
    if problem is not None:
        return f"shard file {problem}" if problem == "missing" else problem
    if record.rejects_sha256:
        rejects = run.rejects_file(record.shard)
        problem = _size_problem(run, rejects, record.rejects_bytes)
        if problem is not None:
            return f"{rejects.name} {problem}" if problem == "missing" else f"{rejects.name}: {problem}"
    return None


def checksum_problem(run: RunDir, record: ShardRecord, shard_sha256: str | None = None) -> str | None:
    """ "sha256 mismatch" when the shard file (or its rejects file) is not the recorded bytes, else None.

    On an object store the files are checked in the store (run/objects.py): the sha256 the store keeps of
    each, else the object hashed streamed once; nothing is fetched into scratch.
    """
    shard = run.shard_file(record.shard)
    if objects.exists(run, shard) and (shard_sha256 or objects.sha256(run, shard)) != record.sha256:
        return "sha256 mismatch"
    rejects = run.rejects_file(record.shard)
    if record.rejects_sha256 and objects.exists(run, rejects) and objects.sha256(run, rejects) != record.rejects_sha256:
        return f"{rejects.name}: sha256 mismatch"
    return None


def _size_problem(run: RunDir, path: Path, size: int) -> str | None:
    """Why a file is not the recorded size ("missing", or the sizes), or None; on an object store, a shard
    or rejects file is checked by its size in the store's listing."""
    found = objects.size(run, path)
    if found is None:
        return "missing"
    if found != size:
        return f"size {found} != recorded {size}"
    return None


def shard_problem(
    run: RunDir, shard: PlannedShard, records: dict[str, ShardRecord], generation_key: str, verify: bool = True
) -> str | None:
    """Why `shard` is not finished for this plan ("no record", a checksum mismatch...), or None if it is."""
    record = records.get(shard.name)
    if record is None:
        return "no record"
    return record_problem(run, record, shard.sample_ids, generation_key, shard.digest, verify)


def compact_manifest(run: RunDir):
    """Write shards/manifest.jsonl from the records, for readers who want one file; the records stay the truth."""
    records = read_records(run)
    lines = [json.dumps(asdict(records[name])) for name in sorted(records)]
    write_text_atomic(run.manifest_file, "".join(line + "\n" for line in lines))
    return run.manifest_file
