"""`synthset clean`: find (and remove) what is in a run directory that no plan row owns.

After a recipe shrinks (fewer images per class, fewer bands, a config dropped) and is planned again, the
shards made for the old plan stay on disk, and `synthset build` refuses them as "not in the plan". Killed
processes also leave temp files and half-assembled build directories. This lists exactly those; nothing
the plan owns, nothing a live process is writing, and nothing on another host that cannot be proven dead
is ever touched.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from synthset.errors import RunStateError
from synthset.fsutil import TEMP_PREFIX, owner_is_dead
from synthset.run.paths import DATASET_BUILD_PREFIX, RunDir, shard_of_file
from synthset.run.plan import open_plan, plan_shard_names


@dataclass
class Unowned:
    stale_shards: list[Path] = field(default_factory=list)  # shard files and records of no planned shard
    dead_temp_files: list[Path] = field(default_factory=list)  # temp files of killed processes of this host
    dead_builds: list[Path] = field(default_factory=list)  # build directories of killed builds

    @property
    def paths(self) -> list[Path]:
        return [*self.stale_shards, *self.dead_temp_files, *self.dead_builds]


def check_cleanable(run: RunDir) -> None:
    """Clean works on local runs only: an object store holds nothing half-written to clean."""
    if run.store is not None:
        raise RunStateError(
            f"{run}: clean works on local run directories; an object store holds no temp files or killed builds "
            "(a put is whole or absent), and an expired claim is taken over by the next worker"
        )


def find_unowned(run: RunDir) -> Unowned:
    planned = set(plan_shard_names(open_plan(run)))
    found = Unowned()
    if run.shards_dir.is_dir():
        for config_dir in run.shard_folders():
            for path in sorted(config_dir.iterdir()):
                if path.name.startswith(TEMP_PREFIX):
                    if owner_is_dead(path.name.removeprefix(TEMP_PREFIX)):
                        found.dead_temp_files.append(path)
                elif (shard := shard_of_file(config_dir.name, path.name)) is not None and shard not in planned:
                    found.stale_shards.append(path)
    for build in sorted(run.root.glob(f"{DATASET_BUILD_PREFIX}*")):
        if owner_is_dead(build.name.removeprefix(DATASET_BUILD_PREFIX)):
            found.dead_builds.append(build)
    return found


def remove(paths: list[Path]) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
