"""Reading a run's image data where it lives: a local file, or an object in the store read by range requests.

On an `s3://` run the shards, rejects files and published Parquet files (`paths.is_data_file`) never pass
through scratch (run/mirror.py): a stage reads a Parquet footer, a few columns or a few row groups through a
seekable file whose every read is a range request (pyarrow on such a file reads only what it is asked for),
and hashes an object streamed once in bounded memory when the store keeps no SHA-256 of it. For a local run
every function here is the plain file operation.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from synthset.fsutil import sha256_file
from synthset.run.mirror import listed, stored_object
from synthset.run.paths import RunDir, is_data_file
from synthset.run.store import StoredObject

HASH_CHUNK = 8 * 1024 * 1024  # bytes read per request while hashing an object: memory stays at this
WHOLE_READ = 2 * 1024 * 1024  # a Parquet object up to this size is read in one request, not by parts
STORE_THREADS = 8  # requests a stage keeps in flight where it has many objects to ask about (a round trip each)
READ_AHEAD = 16  # small objects fetched at once ahead of a pass (two batches of WHOLE_READ: half of RECENT_BYTES)
RECENT_BYTES = 128 * 1024 * 1024  # small objects kept after a read (a stage's next pass reads them again)


class _Recent:
    """Small objects kept after a read, by (store, path, ETag), least recent first, RECENT_BYTES in all."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str, str], bytes] = {}
        self.size = 0
        self.lock = threading.Lock()  # stages read several objects at once (STORE_THREADS)

    def take(self, key: tuple[str, str, str]) -> bytes | None:
        with self.lock:
            data = self.items.pop(key, None)
            self.size -= len(data) if data is not None else 0
            return data

    def keep(self, key: tuple[str, str, str], data: bytes) -> None:
        with self.lock:
            self.items[key] = data
            self.size += len(data)
            while self.size > RECENT_BYTES:
                self.size -= len(self.items.pop(next(iter(self.items))))


_RECENT = _Recent()
T = TypeVar("T")


class Named(Protocol):
    """A planned shard, or anything else that names its shard file."""

    @property
    def name(self) -> str: ...


S = TypeVar("S", bound=Named)
R = TypeVar("R")


def in_store(run: RunDir, path: Path) -> bool:
    """Whether `path` is read in the store rather than in scratch (image data of an object-store run)."""
    return run.store is not None and is_data_file(run.rel(path))


def exists(run: RunDir, path: Path) -> bool:
    return stored_object(run, path) is not None if in_store(run, path) else path.is_file()


def size(run: RunDir, path: Path) -> int | None:
    """The file's size in bytes, None if it does not exist."""
    if in_store(run, path):
        stored = stored_object(run, path)
        return stored.size if stored is not None else None
    return path.stat().st_size if path.is_file() else None


@contextlib.contextmanager
def open_data(run: RunDir, path: Path) -> Iterator[BinaryIO]:
    """The file opened for reading: local, or a range-reading file over its object."""
    if not in_store(run, path):
        with open(path, "rb") as file:
            yield file
        return
    assert run.store is not None
    listed_size, etag = _listed(stored_object(run, path))
    with run.store.open(run.rel(path), size=listed_size, etag=etag) as file:
        yield file


@contextlib.contextmanager
def parquet_file(run: RunDir, path: Path) -> Iterator[pq.ParquetFile]:
    """A Parquet file's reader: its footer is read at once, columns and row groups only when asked for.

    In a store, an object of at most `WHOLE_READ` bytes is read whole, in one request (a footer alone would
    take two or three), and kept while the process reads others (`_RECENT`, at most `RECENT_BYTES`), so the
    passes of one stage over the same small file cost one request.
    """
    if not in_store(run, path):
        yield pq.ParquetFile(path)
        return
    small = small_object(run, path)
    if small is not None:
        yield pq.ParquetFile(pa.BufferReader(small))
        return
    with open_data(run, path) as file:  # pre_buffer: a row group's wanted columns in one request, not one each
        yield pq.ParquetFile(file, pre_buffer=True)


def _listed(stored: StoredObject | None) -> tuple[int | None, str | None]:
    """(size, ETag) as the listing has them, for `RunStore.open` (which then asks the store for neither)."""
    return (stored.size, stored.etag) if stored is not None else (None, None)


def small_object(run: RunDir, path: Path) -> bytes | None:
    """The bytes of a store object of at most `WHOLE_READ` bytes, read in one request (or found in `_RECENT`);
    None for a larger or missing object. A stage that would hash a small object and read its rows reads it
    whole once instead: one request, where asking the store for its checksum and then its footer is two."""
    stored = stored_object(run, path) if in_store(run, path) else None
    if stored is None or stored.size > WHOLE_READ:
        return None
    return _whole(run, path, stored.etag)


def _whole(run: RunDir, path: Path, etag: str) -> bytes:
    assert run.store is not None
    key = (run.store.url, run.rel(path), etag)
    data = _RECENT.take(key) or run.store.read_whole(run.rel(path))
    _RECENT.keep(key, data)
    return data


def sha256(run: RunDir, path: Path) -> str:
    """The file's SHA-256 (hex): the store's own checksum where it keeps one, else streamed in chunks."""
    if not in_store(run, path):
        return sha256_file(path)
    assert run.store is not None
    kept = run.store.sha256(run.rel(path))
    if kept is not None:
        return kept
    digest = hashlib.sha256()
    listed_size, etag = _listed(stored_object(run, path))
    with run.store.open(run.rel(path), size=listed_size, block_size=HASH_CHUNK, etag=etag) as file:
        while chunk := file.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def local_files(folder: Path) -> set[str]:
    """Every visible file under a local folder, relative to it."""
    found: set[str] = set()
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        base = Path(root).relative_to(folder).as_posix()
        found.update(name if base == "." else f"{base}/{name}" for name in names if not name.startswith("."))
    return found


def data_files(run: RunDir, folder: Path) -> list[str]:
    """Every visible file under `folder`, relative to it, sorted: the local ones and, on an object-store
    run, the image data that stays in the store."""
    found = local_files(folder)
    if run.store is not None:
        start = run.rel(folder) + "/"
        found.update(rel[len(start) :] for rel in listed(run, start) if is_data_file(rel))
    return sorted(f for f in found if not any(part.startswith(".") for part in f.split("/")))


def fetch(run: RunDir, paths: list[Path], targets: list[Path]) -> None:
    """Copy store objects into local files, concurrently (push hands the Hub files it can read)."""
    assert run.store is not None
    run.store.download_many([(run.rel(path), target) for path, target in zip(paths, targets, strict=True)])


def each_at_once(run: RunDir, function: Callable[[T], R], items: list[T]) -> list[R]:
    """`function` over `items`, in order; on an object store `STORE_THREADS` at a time (each is round trips
    to the store, which overlap), locally one by one."""
    if run.store is None:
        return [function(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(STORE_THREADS) as pool:
        return list(pool.map(function, items))


def read_ahead(run: RunDir, paths: list[Path]) -> Iterator[Path]:
    """`paths` in order; on an object store the small Parquet objects among them are fetched `READ_AHEAD` at a
    time, concurrently, the next batch while the caller works on this one, so a pass over thousands of small
    shards is neither one round trip after another nor fetching and working by turns (`parquet_file` then
    finds them in `_RECENT`)."""
    batches = (paths[start : start + READ_AHEAD] for start in range(0, len(paths), READ_AHEAD))
    yield from _fetched_ahead(run, batches, lambda batch: batch)


def read_ahead_shards(run: RunDir, shards: Iterable[S]) -> Iterator[S]:
    """Planned shards (anything with a `name`) in order, their files fetched ahead as `read_ahead` does."""
    iterator = iter(shards)
    batches = iter(lambda: list(itertools.islice(iterator, READ_AHEAD)), [])
    yield from _fetched_ahead(run, batches, lambda batch: [run.shard_file(shard.name) for shard in batch])


def _fetched_ahead(run: RunDir, batches: Iterator[list[T]], paths_of: Callable[[list[T]], list[Path]]) -> Iterator[T]:
    """The items of `batches` in order, each batch's objects warmed (in a helper thread) while the caller
    works on the batch before: two batches at most are in `_RECENT` at once (2 x READ_AHEAD x WHOLE_READ)."""
    if run.store is None:
        yield from itertools.chain.from_iterable(batches)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as fetcher:
        current: list[T] = []
        for batch in batches:
            ahead = fetcher.submit(warm, run, paths_of(batch))
            yield from current
            ahead.result()
            current = batch
        yield from current


def warm(run: RunDir, paths: list[Path]) -> None:
    """Fetch the small store objects among `paths` into `_RECENT`, `STORE_THREADS` at a time (local: nothing)."""
    if run.store is not None:
        each_at_once(run, lambda path: _warm(run, path), paths)


def _warm(run: RunDir, path: Path) -> None:
    small_object(run, path)
