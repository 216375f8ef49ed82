"""An object-store run's local scratch copy, kept in step with the store stage by stage.

Every stage's code works on a local run directory: `RunDir.root`. For a run on `s3://`, that root is a
scratch folder, and this module moves files between it and the store:

- `pull(run, wanted)` before a stage fetches the store's files the stage reads (those that changed since
  the last pull: each file's ETag is remembered in the scratch's `.store-sync.sqlite`);
- `push(run)` after it puts the files the stage wrote or changed, and deletes in the store what the stage
  deleted (a rebuilt dataset's old files). The files that *commit* something go last: a shard's record,
  the plan's lock, the dataset's README, so a reader never sees a commit before what it names.
- `put_finished_shard` is generate's own path: a worker puts each shard (and its rejects file) the moment
  it is finished, then its record, so a preempted worker loses at most the shard it was making.

Image data (shards, rejects files, published Parquet files: `paths.is_data_file`) is never pulled by the
stages that read it: `build`, `card`, `review`, `validate` and `push` declare `all_but_data` and read it in
the store by range requests (run/objects.py); build places the published files by copies inside the store.
So scratch needs the plan stage's files, the records, the dataset's small files, and one shard at a time
while generating.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path

from synthset.fsutil import TEMP_PREFIX, temp_path_for
from synthset.run.paths import CACHE_DIR, DATASET_DIR, LOCK_FILE, README_FILE, SHARDS_DIR, RunDir, is_data_file
from synthset.run.store import StoredObject

PULL_BATCH = 256  # files fetched at once (concurrently) by a pull; each batch's sync state is kept with it
SYNC_STATE_FILE = ".store-sync.sqlite"  # in the scratch root: what was last pulled or pushed, per file

# The store's listing from the last pull, per run URL: a restart checks recorded shards against it
# rather than asking the store about each one.
_LISTINGS: dict[str, dict[str, StoredObject]] = {}


def everything(rel: str) -> bool:
    return True


def nothing(rel: str) -> bool:
    """For a stage that only adds files (e.g. `train --to-card`): fetch nothing, put what it wrote."""
    return False


def plan_files(rel: str) -> bool:
    """The plan stage's files: the lock, classes, plan, shots, pools and the reusable cache."""
    return "/" not in rel or rel.startswith(f"{CACHE_DIR}/")


def plan_and_records(rel: str) -> bool:
    """What generate reads before it starts: the plan, and which shards are finished.

    Not the cache: its LLM answers can be gigabytes at ImageNet scale, and generate never reads them.
    """
    return "/" not in rel or (rel.startswith(f"{SHARDS_DIR}/") and rel.endswith(".json"))


def all_but_cache(rel: str) -> bool:
    return not rel.startswith(f"{CACHE_DIR}/")


def all_but_data(rel: str) -> bool:
    """Everything but the cache and the image data, which stays in the store (read by range requests)."""
    return all_but_cache(rel) and not is_data_file(rel)


def _synced(rel: str) -> bool:
    """Files that live in the store: not temp files, claims, builds in progress or the sync state."""
    return not any(part.startswith(".") for part in rel.split("/"))


def _commits(rel: str) -> bool:
    """Files whose appearance says other files are complete: put after everything else."""
    return rel == LOCK_FILE or rel == f"{DATASET_DIR}/{README_FILE}" or _is_record(rel)


class _SyncState:
    """`.store-sync.sqlite`: per file, the store's ETag and the local size and mtime when last in step.

    One row per file, so a worker that puts its thousandth shard writes one row, not the whole table
    (a JSON file rewritten per shard grew quadratic over a run). The ranks of one `accelerate launch`
    share the scratch; SQLite serialises their writes.
    """

    def __init__(self, run: RunDir):
        self.path = run.root / SYNC_STATE_FILE

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=60.0)
        db.execute(
            "CREATE TABLE IF NOT EXISTS synced (rel TEXT PRIMARY KEY, etag TEXT, size INTEGER, mtime_ns INTEGER)"
        )
        return db

    def read(self) -> dict[str, dict]:
        with contextlib.closing(self._connect()) as db:
            rows = db.execute("SELECT rel, etag, size, mtime_ns FROM synced").fetchall()
        return {rel: {"etag": etag, "size": size, "mtime_ns": mtime_ns} for rel, etag, size, mtime_ns in rows}

    def get(self, rel: str) -> dict | None:
        with contextlib.closing(self._connect()) as db:
            row = db.execute("SELECT etag, size, mtime_ns FROM synced WHERE rel = ?", (rel,)).fetchone()
        return {"etag": row[0], "size": row[1], "mtime_ns": row[2]} if row is not None else None

    def update(self, changes: Mapping[str, dict | None]) -> None:
        gone = [(rel,) for rel, entry in changes.items() if entry is None]
        kept = [(rel, e["etag"], e["size"], e["mtime_ns"]) for rel, e in changes.items() if e is not None]
        with contextlib.closing(self._connect()) as db, db:
            db.executemany("DELETE FROM synced WHERE rel = ?", gone)
            db.executemany("INSERT OR REPLACE INTO synced VALUES (?, ?, ?, ?)", kept)


def _entry(path: Path, etag: str) -> dict:
    stat = path.stat()
    return {"etag": etag, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _unchanged_locally(path: Path, entry: dict | None) -> bool:
    if entry is None or not path.is_file():
        return False
    stat = path.stat()
    return stat.st_size == entry["size"] and stat.st_mtime_ns == entry["mtime_ns"]


def pull(run: RunDir, wanted: Callable[[str], bool] = everything) -> int:
    """Fetch the store's `wanted` files that changed since they were last in step; returns how many.

    A file the store no longer has, and that was not changed here, is removed from scratch too (a rebuilt
    dataset's old files, a record of a shard that is being redone).
    """
    if run.store is None:
        return 0
    run.root.mkdir(parents=True, exist_ok=True)
    listing = run.store.list()
    _LISTINGS[run.store.url] = listing
    state = _SyncState(run)
    known = state.read()
    changes: dict[str, dict | None] = {}
    stale = []
    for rel, stored in sorted(listing.items()):
        if not (_synced(rel) and wanted(rel)):
            continue
        entry = known.get(rel)
        if entry is None or entry["etag"] != stored.etag or not _unchanged_locally(run.root / rel, entry):
            stale.append(rel)
    stale = _records_from_manifest(run, listing, stale, changes)
    for start in range(0, len(stale), PULL_BATCH):
        batch = stale[start : start + PULL_BATCH]
        run.store.download_many([(rel, run.root / rel) for rel in batch])
        changes.update({rel: _entry(run.root / rel, listing[rel].etag) for rel in batch})
    fetched = len(changes)
    for rel, entry in known.items():
        if rel not in listing and wanted(rel):
            local = run.root / rel
            if _unchanged_locally(local, entry):
                local.unlink()
            changes[rel] = None
    if changes:
        state.update(changes)
    return fetched


def _is_record(rel: str) -> bool:
    return rel.startswith(f"{SHARDS_DIR}/") and rel.endswith(".json") and rel.count("/") == 2


def _records_from_manifest(
    run: RunDir, listing: Mapping[str, StoredObject], stale: list[str], changes: dict[str, dict | None]
) -> list[str]:
    """Bring stale records in step from the run's manifest instead of one request each; -> what is left.

    generate writes `shards/manifest.jsonl` when the last shard is done: every record's exact text, a line
    each. A line whose MD5 is a record's ETag in the listing (the ETag of an object put in one part, as
    records are, is its MD5 on S3 and moto) is that record byte for byte, however old the manifest; a record
    rewritten since (a shard redone), or whose store gives other ETags, matches no line and is fetched
    alone: any text with that MD5 is the stored record, wherever it came from. So a fresh host pulls a run's
    thousands of records in one request, not one each. Only where the stage pulls the manifest anyway (it is
    `wanted` and changed) or scratch has a copy: generate's pull never fetches it.
    """
    assert run.store is not None
    manifest = run.rel(run.manifest_file)
    wanted_records = {listing[rel].etag.strip('"'): rel for rel in stale if _is_record(rel)}
    if manifest not in listing or not wanted_records or not (manifest in stale or run.manifest_file.is_file()):
        return stale
    if manifest in stale:
        run.store.download(manifest, run.manifest_file)
        changes[manifest] = _entry(run.manifest_file, listing[manifest].etag)
    found = set()
    with open(run.manifest_file, "rb") as lines:
        for line in lines:
            text = line.rstrip(b"\n")
            rel = wanted_records.get(hashlib.md5(text, usedforsecurity=False).hexdigest())
            if rel is not None:
                _place(run.root / rel, text)
                changes[rel] = _entry(run.root / rel, listing[rel].etag)
                found.add(rel)
    return [rel for rel in stale if rel not in found and rel != manifest]


def _place(path: Path, data: bytes) -> None:
    """Write a file the store holds into scratch through a temp file, as `RunStore.download` does: a killed
    pull leaves no half file under its name, and its temp file is named by its owner (`temp_path_for`), so
    `remove_dead_temp_files` clears it. No fsync (unlike `atomic_path`): scratch is a copy, which the next
    pull re-fetches wherever its size or mtime is not the one the sync state noted."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_path_for(path)
    try:
        temp.write_bytes(data)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def _local_files(run: RunDir) -> dict[str, Path]:
    files = {}
    for directory, folders, names in os.walk(run.root):
        folders[:] = [f for f in folders if not f.startswith(".")]
        for name in names:
            path = Path(directory, name)
            rel = run.rel(path)
            if _synced(rel) and not name.startswith(TEMP_PREFIX):
                files[rel] = path
    return files


def push(run: RunDir, wanted: Callable[[str], bool] = everything) -> int:
    """Put every file the stage wrote or changed, commits last; delete what it deleted. Returns puts made.

    Only a file the stage could see (`wanted`: what it reads) counts as deleted when scratch lacks it: a
    stage that reads no image data never deletes it.
    """
    if run.store is None:
        return 0
    state = _SyncState(run)
    known = state.read()
    local = _local_files(run)
    changed = sorted((rel for rel, path in local.items() if not _unchanged_locally(path, known.get(rel))), key=_commits)
    changes: dict[str, dict | None] = {}
    for rel in changed:
        stored = run.store.upload(local[rel], rel)
        changes[rel] = _entry(local[rel], stored.etag if stored is not None else "")
    for rel, entry in known.items():
        if rel not in local and _synced(rel) and wanted(rel):
            run.store.delete(rel, if_etag=entry["etag"] or None)  # only if nobody replaced it since
            changes[rel] = None
    if changes:
        state.update(changes)
    return len(changed)


def put_finished_shard(run: RunDir, shard: str) -> None:
    """Put a shard this worker just finished: its rejects file and data first, its record last."""
    assert run.store is not None
    changes = {}
    for path in (run.rejects_file(shard), run.shard_file(shard), run.record_file(shard)):
        if path.is_file():
            rel = run.rel(path)
            stored = run.store.upload(path, rel)
            changes[rel] = _entry(path, stored.etag if stored is not None else "")
            if stored is not None:
                _LISTINGS.setdefault(run.store.url, {})[rel] = stored
    _SyncState(run).update(changes)


def refresh_file(run: RunDir, path: Path) -> bool:
    """Bring one small file (a record) in step with the store: fetch it if it changed there.

    Returns whether the store has it: a local copy the store lacks is not committed (its worker may be
    putting it now, or died before it could), and callers must not trust it. Workers call it for each
    shard they look at, since other workers finish shards all the time.
    """
    assert run.store is not None
    rel = run.rel(path)
    stored = run.store.stat(rel)
    known = _SyncState(run).get(rel)
    if stored is None:  # not committed: a worker of this host may be putting it right now, so it stays
        return False
    if known is None or known["etag"] != stored.etag or not _unchanged_locally(path, known):
        run.store.download(rel, path)
        _SyncState(run).update({rel: _entry(path, stored.etag)})
    return True


def committed(run: RunDir, path: Path) -> bool:
    """Whether the store had the file at the last pull (or this process put it since)."""
    assert run.store is not None
    return run.rel(path) in _LISTINGS.get(run.store.url, {})


def last_listing(run: RunDir) -> dict[str, StoredObject]:
    """The store's objects as the last pull listed them (and as this process put them since), by path."""
    assert run.store is not None
    return _LISTINGS.get(run.store.url, {})


def listed(run: RunDir, start: str) -> dict[str, StoredObject]:
    """The objects under `start` (a path relative to the root) as the last pull listed them."""
    return {rel: obj for rel, obj in last_listing(run).items() if rel.startswith(start)}


def stored_object(run: RunDir, path: Path) -> StoredObject | None:
    """A run file's object in the store (from the last pull's listing, else asked), None if missing."""
    assert run.store is not None
    rel = run.rel(path)
    return _LISTINGS.get(run.store.url, {}).get(rel) or run.store.stat(rel)
