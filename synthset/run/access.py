"""Opening a run: the one place that knows whether a run directory is local or lives on an object store.

Every stage opens its run through `open_run`, declaring what it reads and whether it writes. For a local
run that is all there is to it. For an `s3://` run the stage works on a local scratch copy (see
run/mirror.py): `open_run` fetches the files the stage reads before it starts and puts back what it
wrote after it ends, so a stage called from Python on a fresh host works exactly as from the CLI, and no
code outside `synthset.run` needs to know where a run lives.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from synthset.run import mirror
from synthset.run.paths import RunDir

# What a stage reads, as a predicate over a file's path relative to the run root (a store key).
Reads = Callable[[str], bool]

READS_ALL_BUT_CACHE: Reads = mirror.all_but_cache
READS_PLAN_FILES: Reads = mirror.plan_files
READS_PLAN_AND_RECORDS: Reads = mirror.plan_and_records
READS_NOTHING: Reads = mirror.nothing
READS_ALL_BUT_DATA: Reads = mirror.all_but_data  # image data stays in the store: read by range requests


@contextlib.contextmanager
def open_run(
    path: str | Path | RunDir, reads: Reads = READS_ALL_BUT_CACHE, writes: bool = True, planned: bool = False
) -> Iterator[RunDir]:
    """The run at `path` (a directory, an `s3://` URL or a RunDir), in step with its store for one stage.

    Args:
        path: where the run lives.
        reads: the files the stage reads; for a store run they are fetched into scratch first.
        writes: whether the stage writes; for a store run what it wrote is put back when it ends
            (not when it raises: a failed stage leaves the store as it was).
        planned: require `synthset plan` to have written the run (else one line saying so).

    Raises:
        RunStateError: `planned` is set and the run has no lock or plan.
        StoreError: the store cannot be reached.
    """
    run = RunDir.at(path)
    mirror.pull(run, reads)
    if planned:
        run = RunDir.planned(run)
    yield run
    if writes:
        mirror.push(run, reads)


def refresh(run: RunDir, reads: Reads) -> None:
    """Fetch again what other workers may have finished meanwhile (a no-op for a local run)."""
    mirror.pull(run, reads)


def put_file(run: RunDir, path: Path) -> None:
    """Put one file a stage wrote outside `open_run`'s end (a no-op for a local run)."""
    if run.store is not None:
        run.store.upload(path, run.rel(path))
