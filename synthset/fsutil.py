"""Atomic file writes and checksums.

Every artifact of a run is written to a temporary name in its final directory and renamed into place,
so a reader (a later stage, a resumed run, `synthset build`) sees a whole file or none: a crash or a
preemption never leaves a half-written file where it would be taken for finished.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

_CHUNK = 1 << 20
TEMP_PREFIX = ".tmp-"


def owner_token() -> str:
    """`<host>.<pid>`: who made a temp file or directory, so that only its owner, or a process that can
    prove the owner dead, ever deletes it."""
    return f"{socket.gethostname()}.{os.getpid()}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def owner_is_dead(name: str) -> bool:
    """Whether `name` (`<host>.<pid>-...`, see `owner_token`) was made by a process of this host that no
    longer runs. A process on another host cannot be proven dead from here: its files stay."""
    prefix = f"{socket.gethostname()}."
    if not name.startswith(prefix):
        return False
    pid = name[len(prefix) :].split("-", 1)[0]
    return pid.isdigit() and not pid_alive(int(pid))


def temp_path_for(path: Path) -> Path:
    """A temporary name beside `path`, unique to this process on this host, hidden from globs of `*.parquet`."""
    return path.with_name(f"{TEMP_PREFIX}{owner_token()}-{path.name}")


def remove_dead_temp_files(directory: Path) -> int:
    """Delete the temp files in `directory` left by killed processes of this host; those of live owners stay.

    One listing of the directory: a shard folder at ImageNet scale holds tens of thousands of entries, so
    this runs once when a worker starts, not once per file written.
    """
    removed = 0
    if not directory.is_dir():
        return removed
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.startswith(TEMP_PREFIX) and owner_is_dead(entry.name.removeprefix(TEMP_PREFIX)):
                Path(entry.path).unlink(missing_ok=True)
                removed += 1
    return removed


@contextlib.contextmanager
def naming(path: Path) -> Iterator[None]:
    """An OSError raised while writing `path` names it: a write() or a pyarrow writer raises one without a
    filename, and `describe_os_error(error, error.filename)` (the CLI's one line) must say which file."""
    try:
        yield
    except OSError as error:
        if error.filename is None:
            error.filename = str(path)
        raise


def make_dirs(path: Path) -> None:
    """`mkdir -p path`, an error naming the directory it could not make (EPERM, EACCES, EROFS, ...)."""
    with naming(path):
        path.mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path to write to; on success fsync it and rename it to `path`, on error remove it.
    A filesystem error on the way names `path` (see `naming`)."""
    make_dirs(path.parent)
    tmp = temp_path_for(path)
    try:
        with naming(path):
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


def tree_files(root: Path) -> list[Path]:
    """The files of a directory tree in a stable order, without hidden ones (.cache/ and tool droppings)."""
    files = (p for p in root.rglob("*") if p.is_file())
    return sorted(p for p in files if not any(part.startswith(".") for part in p.relative_to(root).parts))


def sha256_tree(root: Path) -> str:
    """One hash for a directory of files (relative paths and contents), e.g. a local model checkpoint.

    It stands in for a Hub commit hash when a model is given as a local path, so the lock still pins
    exactly which weights made the images.
    """
    digest = hashlib.sha256()
    for path in tree_files(root):
        rel = path.relative_to(root).as_posix()
        digest.update(rel.encode() + b"\0" + sha256_file(path).encode() + b"\n")
    return digest.hexdigest()


def looks_local(value: str) -> bool:
    """Whether a dataset or model reference means a local path: `./`, `../`, `/`, `~`, or an existing
    directory. Such a value is never looked up on the Hub (where `data/photos` could be a repo id)."""
    return value.startswith(("./", "../", "/", "~")) or Path(value).expanduser().is_dir()


def current_umask() -> int:
    """The process's umask, read without changing it (from /proc where it is, else set and restored)."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        status = Path("/proc/self/status").read_text().splitlines()
        return int(next(line for line in status if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_temp_dir(prefix: str, parent: Path) -> Path:
    """A new uniquely named directory in `parent`, with the user's umask (mkdtemp alone makes it 0700,
    and it is renamed into place: a dataset others on a shared machine could not read)."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    path.chmod(0o777 & ~current_umask())
    return path


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one step with Linux's renameat2(RENAME_EXCHANGE); False where that is unavailable."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE)
    return result == 0


def replace_dir(new: Path, target: Path) -> None:
    """Make the finished directory `new` the one at `target`, and delete the directory it replaces.

    Readers of `target` see the old directory or the new one, never a mix: the two are exchanged in one
    step where the filesystem can (Linux renameat2); elsewhere (NFS, macOS) the old one is renamed away
    first, so for an instant there is no `target` at all, but never a partial one.
    """
    if not target.exists():
        os.rename(new, target)
        return
    if _exchange(new, target):
        shutil.rmtree(new)
        return
    old = new.with_name(new.name + "-old")
    os.rename(target, old)
    os.rename(new, target)
    shutil.rmtree(old)


# The filesystem's faults that are the user's to fix, each in one line (the CLI catches these errnos).
_OS_ERROR_ADVICE = {
    errno.ENOSPC: "no space left on the device: free some space, then run the same command again",
    errno.EDQUOT: "the disk quota is exceeded: free some space, then run the same command again",
    errno.EFBIG: "file too large for this process (see `ulimit -f`): raise the limit, then run the same command again",
    errno.EROFS: "the filesystem is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a parent of this path is a file, not a directory",
    errno.EISDIR: "is a directory",
}


FILESYSTEM_FAULTS = frozenset(_OS_ERROR_ADVICE)
SHARD_TOO_LARGE = (
    "file too large for this process (see `ulimit -f`): raise the limit or use a smaller storage.shard_size, "
    "then run the same command again"
)


def describe_os_error(error: OSError, path: Path | str, shard: bool = False) -> str:
    """One line for a filesystem error: the path it happened at and what to do about it. Only a shard's
    size follows from the recipe (storage.shard_size), so only for a shard (`shard`) is that advised."""
    reason = _OS_ERROR_ADVICE.get(error.errno) if error.errno is not None else None
    if shard and error.errno == errno.EFBIG:
        reason = SHARD_TOO_LARGE
    return f"{path}: {reason or error.strerror or error}"
