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
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pyarrow.parquet as pq

from synthset.fsutil import sha256_file
from synthset.run.mirror import listed, stored_object
from synthset.run.paths import RunDir, is_data_file

HASH_CHUNK = 8 * 1024 * 1024  # bytes read per request while hashing an object: memory stays at this


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
    with run.store.open(run.rel(path), size=size(run, path)) as file:
        yield file


@contextlib.contextmanager
def parquet_file(run: RunDir, path: Path) -> Iterator[pq.ParquetFile]:
    """A Parquet file's reader: its footer is read at once, columns and row groups only when asked for."""
    if not in_store(run, path):
        yield pq.ParquetFile(path)
        return
    with open_data(run, path) as file:
        yield pq.ParquetFile(file)


def sha256(run: RunDir, path: Path) -> str:
    """The file's SHA-256 (hex): the store's own checksum where it keeps one, else streamed in chunks."""
    if not in_store(run, path):
        return sha256_file(path)
    assert run.store is not None
    kept = run.store.sha256(run.rel(path))
    if kept is not None:
        return kept
    digest = hashlib.sha256()
    with run.store.open(run.rel(path), size=size(run, path), block_size=HASH_CHUNK) as file:
        while chunk := file.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def local_files(folder: Path) -> set[str]:
    """Every visible file under a local folder, relative to it."""
    found = set()
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


def fetch(run: RunDir, path: Path, dest: Path) -> None:
    """Copy a store object into a local file (push hands the Hub files it can read)."""
    assert run.store is not None
    run.store.download(run.rel(path), dest)
