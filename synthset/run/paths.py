"""The run directory: one object that knows where every artifact of a run lives.

`runs/<name>/` holds everything a run makes, each stage reading the previous stage's files:

    recipe.lock.yaml      the recipe plus what was resolved (model commits, versions, hashes)   plan
    classes.parquet       the label space, the classes generated, LAR's choices                 plan
    plan.parquet          one row per image to make, one row group per shard                    plan
    real_shots.parquet    few-shot runs: the k real images per class                            plan
    conditioning_pool.parquet  augcond runs: the real images each class may be conditioned on       plan
    cache/                LLM answers, partial LAR scores: reusable, never published            plan
    shards/<config>/      generated Parquet shards and their records (<shard>.json)             generate
    shards/<config>/      ... and <shard>.rejects.parquet: what the quality gate turned down    generate
    shards/.claims/       which live worker is making which shard (leases)                      generate
    dataset/              the Hub layout: README.md, published Parquet files, side files        build, card
    logs/slurm/           `synthset submit --slurm`: the job ids, each array task's log, its workers  submit
    dataset/evaluation/   training results the card shows (`synthset train --to-card`)         train
    .dataset-build-*/     a build in progress (or a killed one, removed by the next build)     build

Stages take a `RunDir` rather than a bare path, so a file name is spelled in exactly one place.

A run directory may also live on an object store (`s3://bucket/runs/<name>`, see run/store.py and
run/mirror.py): then `root` is a local scratch copy of the files a stage reads and writes, and `store`
is where they live for good. Stages work on `root` as on any run directory; what must be seen by other
workers at once (claims, finished shards and their records) goes to the store as it happens.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from synthset.errors import RunStateError
from synthset.run.store import RunStore, is_store_url

LOCK_FILE = "recipe.lock.yaml"
CLASSES_FILE = "classes.parquet"
PLAN_FILE = "plan.parquet"
SHOTS_FILE = "real_shots.parquet"
POOL_FILE = "conditioning_pool.parquet"
CACHE_DIR = "cache"
SHARDS_DIR = "shards"
CLAIMS_DIR = ".claims"
MANIFEST_FILE = "manifest.jsonl"
SLURM_DIR = "logs/slurm"  # `synthset submit --slurm`: submitit's folder (scripts, pickles, per-task logs)
DATASET_DIR = "dataset"
DATASET_BUILD_PREFIX = ".dataset-build-"  # a build in progress: assembled here, then swapped in whole
EVALUATION_DIR = "evaluation"  # in dataset/: `synthset train --to-card` results, shown by the card
README_FILE = "README.md"
CARD_MARKER = "<!-- synthset-card provenance={provenance} -->"  # the first line of a rendered card's body
REVIEW_FILE = "review.html"  # `synthset review`: the contact sheets to look at before publishing
SHARD_SUFFIXES = (".rejects.parquet", ".parquet", ".json")  # a shard's files: rejects, data, record


def scratch_dir(url: str) -> Path:
    """The local scratch copy of an object-store run: `$SYNTHSET_SCRATCH/<readable name>-<hash>`.

    Workers of one host share it (their files there are written atomically, like in any run directory);
    set SYNTHSET_SCRATCH to a large local disk: a shard is made there before it is put in the store.
    """
    base = Path(os.environ.get("SYNTHSET_SCRATCH") or Path.home() / ".cache" / "synthset" / "scratch")
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", url.split("://", 1)[-1]).strip("-")[-80:]
    return base / f"{readable}-{hashlib.sha256(url.encode()).hexdigest()[:8]}"


def is_data_file(rel: str) -> bool:
    """Whether a run file (its path relative to the root) is image data: a shard, a rejects file or a
    published Parquet file. On an object store these stay there: stages read them by range requests."""
    return rel.endswith(".parquet") and rel.startswith((f"{SHARDS_DIR}/", f"{DATASET_DIR}/"))


def shard_of_file(config_dir: str, filename: str) -> str | None:
    """The shard a file of `shards/<config>/` belongs to (`naive/train-b0-00001`), or None for another file."""
    for suffix in SHARD_SUFFIXES:
        if filename.endswith(suffix):
            return f"{config_dir}/{filename.removesuffix(suffix)}"
    return None


@dataclass(frozen=True)
class RunDir:
    """A run directory. `RunDir.planned(path)` checks that `synthset plan` has written it."""

    root: Path
    store: RunStore | None = None  # set when the run lives on an object store; root is then local scratch

    @classmethod
    def at(cls, path: str | Path | RunDir) -> RunDir:
        """The run directory at `path` (a stage's entry point accepts a path, an s3:// URL or a RunDir)."""
        if isinstance(path, RunDir):
            return path
        if is_store_url(path):
            store = RunStore(os.fspath(path))
            return cls(scratch_dir(store.url), store)
        return cls(Path(os.fspath(path).removeprefix("file://")))

    @classmethod
    def planned(cls, path: str | Path | RunDir) -> RunDir:
        """The run directory at `path`, which must hold a lock and a plan; else one line saying what to run."""
        run = cls.at(path)
        if run.root.exists() and not run.root.is_dir():
            raise RunStateError(f"{run.root}: is a file, not a run directory")
        for required in (run.lock_file, run.plan_file):
            if not required.is_file():
                raise RunStateError(
                    f"{run}: not a planned run directory ({required.name} missing; run `synthset plan` first)"
                )
        return run

    def __str__(self) -> str:
        return self.store.url if self.store is not None else str(self.root)

    def rel(self, path: Path) -> str:
        """A file's path relative to the run's root, with '/' (its key on an object store)."""
        return path.relative_to(self.root).as_posix()

    @property
    def on_store(self) -> bool:
        """Whether the run lives on an object store (its files are then read through fsspec, by URL)."""
        return self.store is not None

    def location(self, path: Path) -> str:
        """Where a run file lives for good, to show a user: its URL in the store, or its local path."""
        return f"{self.store.url}/{self.rel(path)}" if self.store is not None else str(path)

    # -- plan stage ----------------------------------------------------------------------------------
    @property
    def lock_file(self) -> Path:
        return self.root / LOCK_FILE

    @property
    def classes_file(self) -> Path:
        return self.root / CLASSES_FILE

    @property
    def plan_file(self) -> Path:
        return self.root / PLAN_FILE

    @property
    def shots_file(self) -> Path:
        return self.root / SHOTS_FILE

    @property
    def pool_file(self) -> Path:
        return self.root / POOL_FILE

    @property
    def cache_dir(self) -> Path:
        return self.root / CACHE_DIR

    # -- generate stage ------------------------------------------------------------------------------
    @property
    def shards_dir(self) -> Path:
        return self.root / SHARDS_DIR

    @property
    def claims_dir(self) -> Path:
        return self.shards_dir / CLAIMS_DIR

    @property
    def slurm_dir(self) -> Path:
        return self.root / SLURM_DIR

    @property
    def manifest_file(self) -> Path:
        return self.shards_dir / MANIFEST_FILE

    def shard_folders(self) -> list[Path]:
        """The folders that hold shards (one per generation config), without the claims."""
        if not self.shards_dir.is_dir():
            return []
        return sorted(p for p in self.shards_dir.iterdir() if p.is_dir() and p.name != CLAIMS_DIR)

    def shard_file(self, shard: str) -> Path:
        """`shards/<config>/<split>-b<band>-NNNNN.parquet` for shard name `<config>/<split>-b<band>-NNNNN`."""
        return self.shards_dir / f"{shard}.parquet"

    def record_file(self, shard: str) -> Path:
        return self.shards_dir / f"{shard}.json"

    def rejects_file(self, shard: str) -> Path:
        """The quality gate's rejected attempts of a shard (thumbnails and scores), beside the shard."""
        return self.shards_dir / f"{shard}{SHARD_SUFFIXES[0]}"

    @property
    def review_file(self) -> Path:
        return self.root / REVIEW_FILE

    # -- build stage ---------------------------------------------------------------------------------
    @property
    def dataset_dir(self) -> Path:
        return self.root / DATASET_DIR

    @property
    def dataset_readme(self) -> Path:
        return self.dataset_dir / README_FILE

    @property
    def evaluation_dir(self) -> Path:
        return self.dataset_dir / EVALUATION_DIR


def card_marker(provenance: str) -> str:
    """The line that tells `synthset push` and `build` that the README is this run's rendered card, not
    build's stub."""
    return CARD_MARKER.format(provenance=provenance)
