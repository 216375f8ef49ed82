"""`manifest.jsonl`: the published list of every file of a version, its size, sha256 and rows.

JSON Lines, so that a reader streams it: the first line is the header (format, name, provenance,
generation key), then one line per file, ordered by folder and then name, so the files of one folder
(at most the Hub's 10k) are consecutive. Neither writing it nor reading it holds more than one folder's
entries: at 6x ImageNet the manifest has ~12k lines, and the Hub allows 100k files per repo.

The sha256 of a shard comes from its record (`synthset build` checked it) when the published file is the
very shard (same inode, not modified since its record was written; on an object store, a copy of it with
the shard's ETag), so a push does not re-read hundreds of GB; any other file is hashed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from synthset.fsutil import atomic_path, sha256_file
from synthset.run import objects
from synthset.run.lock import Lock
from synthset.run.mirror import last_listing
from synthset.run.paths import RunDir
from synthset.run.published import shard_of
from synthset.run.records import read_record

MANIFEST_FILE = "manifest.jsonl"
FORMAT = 2


@dataclass(frozen=True, slots=True)
class Entry:
    path: str  # relative to dataset/ (and to the repo root)
    bytes: int
    sha256: str
    rows: int | None = None  # Parquet files
    shard: str | None = None  # the generation shard it is, when its hash came from the shard's record

    @property
    def folder(self) -> str:
        return self.path.rsplit("/", 1)[0] if "/" in self.path else ""

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None}, sort_keys=True)


def sort_key(path: str) -> tuple[str, str]:
    """Manifest order: by folder, then by name, so that each folder's files are consecutive."""
    folder, _, name = path.rpartition("/")
    return folder, name


def local_files(dataset_dir: Path) -> list[str]:
    """Every file of dataset/ to publish (relative POSIX paths, manifest order), skipping hidden ones."""
    files = []
    for root, dirs, names in os.walk(dataset_dir):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        base = Path(root).relative_to(dataset_dir).as_posix()
        files += [name if base == "." else f"{base}/{name}" for name in names if not name.startswith(".")]
    return sorted((f for f in files if f != MANIFEST_FILE), key=sort_key)


def dataset_files(run: RunDir) -> list[str]:
    """Every file of dataset/ to publish, in manifest order: local, and on an object store its Parquet files."""
    files = objects.data_files(run, run.dataset_dir) if run.store is not None else local_files(run.dataset_dir)
    return sorted((f for f in files if f != MANIFEST_FILE), key=sort_key)


def _recorded(run: RunDir, relative: str, stat: os.stat_result) -> Any:
    """The shard record whose hash holds for this file, or None (not a shard, a copy, or changed since)."""
    shard = shard_of(relative)
    if shard is None:
        return None
    record = read_record(run.record_file(shard))
    source = run.shard_file(shard)
    if record is None or not source.is_file():
        return None
    source_stat = source.stat()
    if (source_stat.st_dev, source_stat.st_ino) != (stat.st_dev, stat.st_ino) or record.bytes != stat.st_size:
        return None
    if source_stat.st_mtime > run.record_file(shard).stat().st_mtime:
        return None
    return record


def _in_store_entry(run: RunDir, relative: str) -> Entry:
    """A published file that stays in the store: its shard's record when it is a copy of that very shard
    (same ETag and size in the listing), else hashed streamed and counted from its footer (range requests)."""
    path = run.dataset_dir / relative
    listing = last_listing(run)
    stored = listing[run.rel(path)]
    shard = shard_of(relative)
    record = read_record(run.record_file(shard)) if shard is not None else None
    source = listing.get(run.rel(run.shard_file(shard))) if shard is not None else None
    if record is not None and source is not None and (source.etag, source.size) == (stored.etag, record.bytes):
        return Entry(relative, stored.size, record.sha256, record.rows, record.shard)
    with objects.parquet_file(run, path) as parquet:
        rows = parquet.metadata.num_rows
    return Entry(relative, stored.size, objects.sha256(run, path), rows)


def iter_entries(run: RunDir, replaced: dict[str, Path] | None = None) -> Iterator[Entry]:
    """The manifest entries of `dataset/`, in manifest order; `replaced` maps a path to the file that is
    published under it instead (the README rendered for the target repo). On an object-store run the
    Parquet files stay in the store and come from its listing."""
    import pyarrow.parquet as pq

    replaced = replaced or {}
    for relative in dataset_files(run):
        path = replaced.get(relative, run.dataset_dir / relative)
        if relative not in replaced and objects.in_store(run, path):
            yield _in_store_entry(run, relative)
            continue
        stat = path.stat()
        record = None if relative in replaced else _recorded(run, relative, stat)
        if record is not None:
            yield Entry(relative, stat.st_size, record.sha256, record.rows, record.shard)
            continue
        rows = pq.ParquetFile(path).metadata.num_rows if relative.endswith(".parquet") else None
        yield Entry(relative, stat.st_size, sha256_file(path), rows)


def header(lock: Lock) -> dict[str, Any]:
    """The manifest's first line: which run's files these are."""
    return {
        "format": FORMAT,
        "name": lock.recipe.name,
        "provenance": lock.provenance,
        "generation_key": lock.generation_key,
    }


@dataclass(frozen=True)
class ManifestSummary:
    path: Path
    files: int
    bytes: int
    sha256: str  # of the manifest file itself: names this exact version


def write_manifest(run: RunDir, lock: Lock, target: Path, replaced: dict[str, Path] | None = None) -> ManifestSummary:
    """Stream the manifest of `dataset/` to `target` (atomically); `lock` is the run's, as the caller read it."""
    files = size = 0
    with atomic_path(target) as tmp, open(tmp, "w", encoding="utf-8") as out:
        out.write(json.dumps(header(lock), sort_keys=True) + "\n")
        for entry in iter_entries(run, replaced):
            out.write(entry.to_json() + "\n")
            files += 1
            size += entry.bytes
    return ManifestSummary(target, files, size, sha256_file(target))


def parse_header(line: str) -> dict[str, Any]:
    data = json.loads(line)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"not a synthset manifest of format {FORMAT}")
    return data


def parse_entry(line: str) -> Entry:
    data = json.loads(line)
    return Entry(data["path"], int(data["bytes"]), data["sha256"], data.get("rows"), data.get("shard"))


def read_manifest(lines: Iterator[str]) -> tuple[dict[str, Any], Iterator[Entry]]:
    """(header, entries) of a manifest given as lines (a local file or a stream from the Hub)."""
    lines = iter(lines)
    head = parse_header(next(lines))
    return head, (parse_entry(line) for line in lines if line.strip())


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
