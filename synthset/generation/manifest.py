"""Shard records: the truth about which work is finished.

Each finished shard `shards/<config>/<split>-NNNNN.parquet` has a record `...-NNNNN.json` beside it,
written (atomically) only after the shard itself was renamed into place. The manifest is the set of
those records, read as one. No file is ever appended to by two processes: ranks on several nodes share
one network filesystem, and a resumed run may have another world size. A record whose shard is missing,
short or fails its sha256, or whose sample ids or generation settings differ from the plan, does not
count: that shard is made again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa

from synthset.fsutil import sha256_file, write_text_atomic

SHARDS_DIR = "shards"
MANIFEST_FILE = "manifest.jsonl"


@dataclass(frozen=True)
class ShardRecord:
    shard: str  # e.g. "naive/train-00003"
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


def shard_file(run_dir: Path, shard: str) -> Path:
    return run_dir / SHARDS_DIR / f"{shard}.parquet"


def record_file(run_dir: Path, shard: str) -> Path:
    return run_dir / SHARDS_DIR / f"{shard}.json"


def write_record(run_dir: Path, record: ShardRecord) -> None:
    write_text_atomic(record_file(run_dir, record.shard), json.dumps(asdict(record)))


def read_records(run_dir: Path) -> dict[str, ShardRecord]:
    """Every record on disk, keyed by shard name (temp files are invisible: they start with '.')."""
    records = {}
    root = run_dir / SHARDS_DIR
    if not root.is_dir():
        return records
    for path in sorted(root.glob("*/*.json")):
        if path.name.startswith("."):
            continue
        try:
            record = ShardRecord(**json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, TypeError):
            continue  # an unreadable record is no record: its shard is redone
        records[record.shard] = record
    return records


def plan_digest(plan_rows: pa.Table) -> str:
    """A hash of a shard's plan rows (prompts, seeds, ids...), stored in its record."""
    return hashlib.sha256(json.dumps(plan_rows.to_pylist(), sort_keys=True).encode()).hexdigest()[:16]


def record_problem(
    run_dir: Path, record: ShardRecord, sample_ids: list[str], key: str, digest: str, check_sha: bool = True
) -> str | None:
    """Why a record does not prove its shard finished for this plan, or None if it does."""
    if record.generation_key != key:
        return "made with other generation settings"
    if record.sample_ids != sample_ids:
        return "sample ids differ from the plan"
    if record.plan_digest != digest:
        return "its plan rows (prompts, seeds) changed"
    path = shard_file(run_dir, record.shard)
    if not path.is_file():
        return "shard file missing"
    if path.stat().st_size != record.bytes:
        return f"size {path.stat().st_size} != recorded {record.bytes}"
    if check_sha and sha256_file(path) != record.sha256:
        return "sha256 mismatch"
    return None


def compact_manifest(run_dir: Path) -> Path:
    """Write shards/manifest.jsonl from the records, for readers who want one file; the records stay the truth."""
    records = read_records(run_dir)
    lines = [json.dumps(asdict(records[name])) for name in sorted(records)]
    path = run_dir / SHARDS_DIR / MANIFEST_FILE
    write_text_atomic(path, "".join(line + "\n" for line in lines))
    return path
