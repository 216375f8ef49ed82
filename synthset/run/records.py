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
from dataclasses import asdict, dataclass, field

from synthset.fsutil import sha256_file, write_text_atomic
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

    @property
    def settled(self) -> int:
        """Planned samples this shard finished: written as rows, or dropped by the quality gate."""
        return self.rows + len(self.dropped)


def write_record(run: RunDir, record: ShardRecord) -> None:
    write_text_atomic(run.record_file(record.shard), json.dumps(asdict(record)))


def read_record(path) -> ShardRecord | None:
    """One record file, or None when it is unreadable (its shard is then simply redone)."""
    try:
        return ShardRecord(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def read_records(run: RunDir) -> dict[str, ShardRecord]:
    """Every record on disk, keyed by shard name (temp files are invisible: they start with '.')."""
    records = {}
    if not run.shards_dir.is_dir():
        return records
    for path in sorted(run.shards_dir.glob("*/*.json")):
        if path.name.startswith("."):
            continue
        record = read_record(path)
        if record is not None:
            records[record.shard] = record
    return records


def record_problem(
    run: RunDir, record: ShardRecord, sample_ids: list[str], key: str, digest: str, check_sha: bool = True
) -> str | None:
    """Why a record does not prove its shard finished for this plan, or None if it does."""
    if record.generation_key != key:
        return "made with other generation settings"
    if record.sample_ids != sample_ids:
        return "sample ids differ from the plan"
    if record.plan_digest != digest:
        return "its plan rows (prompts, seeds) changed"
    path = run.shard_file(record.shard)
    if not path.is_file():
        return "shard file missing"
    if path.stat().st_size != record.bytes:
        return f"size {path.stat().st_size} != recorded {record.bytes}"
    if check_sha and sha256_file(path) != record.sha256:
        return "sha256 mismatch"
    if record.rejects_sha256:
        rejects = run.rejects_file(record.shard)
        if not rejects.is_file():
            return f"{rejects.name} missing"
        if rejects.stat().st_size != record.rejects_bytes:
            return f"{rejects.name}: size {rejects.stat().st_size} != recorded {record.rejects_bytes}"
        if check_sha and sha256_file(rejects) != record.rejects_sha256:
            return f"{rejects.name}: sha256 mismatch"
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
