"""Where the offline test models live, and how one is written there without ever being seen half-built."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from synthset.models import synthset_home


def models_dir(home: Path | None) -> Path:
    """`<home>/models`, home defaulting to $SYNTHSET_HOME: the directory `synthset-testing:<name>` names."""
    return Path(home if home is not None else synthset_home()) / "models"


def build_atomically(target: Path, build: Callable[[Path], None]) -> Path:
    """Run ``build(tmp_dir)`` beside ``target`` and rename the result into place.

    A directory only appears at ``target`` fully written, so ``target`` existing means the build is
    complete.  If another process renamed its build there first we drop ours and use theirs (the
    builds are seeded, so both are identical).
    """
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # mkdtemp rather than a bare pid suffix so two threads of one process cannot share a temp dir.
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-{os.getpid()}-", dir=target.parent))
    try:
        build(tmp)
        try:
            # On POSIX a directory rename is atomic and fails if target is a non-empty directory.
            os.rename(tmp, target)
        except OSError:
            if not target.exists():
                raise
            # Lost the race: another process finished first and its copy is already in place.
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
