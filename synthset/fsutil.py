"""Atomic file writes and checksums.

Every artifact of a run is written to a temporary name in its final directory and renamed into place,
so a reader (a later stage, a resumed run, `synthset build`) sees a whole file or none: a crash or a
preemption never leaves a half-written file where it would be taken for finished.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

_CHUNK = 1 << 20


def temp_path_for(path: Path) -> Path:
    """A temporary name beside `path`, unique to this process on this host, hidden from globs of `*.parquet`.

    Stale temp files of a killed process match `.tmp-*-<name>` and are removed by whoever next writes `path`.
    """
    return path.with_name(f".tmp-{socket.gethostname()}-{os.getpid()}-{path.name}")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path to write to; on success fsync it and rename it to `path`, on error remove it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_tree(root: Path) -> str:
    """One hash for a directory of files (relative paths and contents), e.g. a local model checkpoint.

    It stands in for a Hub commit hash when a model is given as a local path, so the lock still pins
    exactly which weights made the images.
    """
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue  # .cache/ and other tool droppings are not part of the model
        digest.update(rel.encode() + b"\0" + sha256_file(path).encode() + b"\n")
    return digest.hexdigest()
