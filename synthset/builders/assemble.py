"""The build stage: finished shards -> `dataset/`, the Hub layout that `load_dataset` reads as it is.

The published Parquet files *are* the generation shards, hard-linked into place (copied only across
filesystems), never decoded and re-encoded: at 6x ImageNet a run is hundreds of GB. On an object store they
are copied inside the store (one CopyObject each; no byte passes through this host) and validation reads
records, footers and the rows' ids and labels by range requests (run/objects.py). They already carry
the `datasets` Features in their schema metadata. The README's YAML (`configs` with `data_files`, and
`dataset_info` with the ClassLabel names, splits and sizes) is made with the `datasets` and
`huggingface_hub` card classes, so the Hub and `load_dataset` parse exactly what those libraries write.

The README stays small whatever the number of files: each config's `data_files` is one glob per band
folder (`run.published`), and the Features (with every class name) are written once, in the default
config's `dataset_info`; the other configs have the same Features, which `datasets` reads from the
`huggingface` metadata every Parquet file carries. `num_bytes` is what `datasets` means by it, the size of
the data as uncompressed Arrow, taken from the Parquet footers (the row groups' uncompressed size) rather
than by reading every image; `download_size` is the Parquet files' size.

A build is atomic: the new `dataset/` is assembled in a hidden sibling directory and swapped in whole,
so a killed build leaves the previous dataset (or none) in place, never a half-linked one that
`load_dataset` would read as a mix of configs.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from synthset.errors import RunStateError
from synthset.fsutil import atomic_path, replace_dir, write_text_atomic
from synthset.run import objects
from synthset.run.classes_table import read_class_rows, read_label_names
from synthset.run.families import check_family
from synthset.run.lock import Lock, read_lock
from synthset.run.mirror import last_listing, listed
from synthset.run.paths import DATASET_BUILD_PREFIX, DATASET_DIR, EVALUATION_DIR, README_FILE, RunDir, is_data_file
from synthset.run.plan import open_plan, plan_shard_names, read_planned_shard
from synthset.run.published import data_file_patterns, files_of, pattern_matches, published_configs, shard_files
from synthset.run.records import read_records, shard_problem
from synthset.run.schema import dataset_features

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuiltSplit:
    config: str
    split: str
    files: list[str]  # relative to dataset/
    num_examples: int
    num_bytes: int  # uncompressed data, as `datasets` counts a split's size
    patterns: list[str]  # the README's `data_files` globs that select exactly `files`
    download_bytes: int = 0  # the Parquet files' size


def parquet_sizes(run: RunDir, path: Path) -> tuple[int, int, int]:
    """(rows, uncompressed data bytes, file bytes) of a Parquet file, from its footer alone (on an object
    store, a range request)."""
    with objects.parquet_file(run, path) as parquet:
        metadata = parquet.metadata
    data = sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
    return metadata.num_rows, data, objects.size(run, path) or 0


def _link_or_copy(source: Path, target: Path) -> None:
    """Put `source` at `target`, sharing the bytes on disk when the filesystem allows it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _place(run: RunDir, shard: str, published_path: str, target: Path) -> None:
    """Put a shard at its published path: a hard link in `target`, or on an object store a copy inside the
    store (no byte passes through this host; skipped when the published object already is that shard)."""
    if run.store is None:
        _link_or_copy(run.shard_file(shard), target / published_path)
        return
    source, published = run.rel(run.shard_file(shard)), f"{DATASET_DIR}/{published_path}"
    listing = last_listing(run)
    if published not in listing or listing[published].etag != listing[source].etag:
        run.store.copy(source, published)


def remove_unpublished_data(run: RunDir, splits: list[BuiltSplit]) -> int:
    """On an object store, delete the published Parquet objects a rebuild no longer names: called once the
    new README is in the store (open_run puts it), so a reader never sees a README naming a missing file.

    Returns how many were deleted (always 0 for a local run: its build swapped the whole folder).
    """
    if run.store is None:
        return 0
    kept = {f"{DATASET_DIR}/{file}" for split in splits for file in split.files}
    kept |= {f"{DATASET_DIR}/{file}" for file in objects.local_files(run.dataset_dir)}  # side files build put
    stale = [rel for rel in listed(run, f"{DATASET_DIR}/") if is_data_file(rel) and rel not in kept]
    for rel in stale:
        run.store.delete(rel)
    return len(stale)


def check_finished(run: RunDir, lock: Lock, verify: bool = True) -> list[str]:
    """The plan's shard names, after checking that every one has a valid record; else a one-line error.

    `verify=False` checks each file's size, not its sha256 (build then hashes once, in validation).
    """
    plan = open_plan(run)
    names = plan_shard_names(plan)
    records = read_records(run)
    problems = [
        (name, problem)
        for i, name in enumerate(names)
        if (problem := shard_problem(run, read_planned_shard(plan, i, name), records, lock.generation_key, verify))
    ]
    if problems:
        name, problem = problems[0]
        raise RunStateError(
            f"{run}: {len(problems)} of {len(names)} shards are not finished (first: {name}: {problem}); "
            "run `synthset generate` to make them"
        )
    return names


def link_shards(run: RunDir, lock: Lock, names: list[str], target: Path) -> list[BuiltSplit]:
    """Hard-link every shard to its published path under `target` and list each config's files."""
    files = shard_files(lock.recipe, names)

    def place(file) -> tuple[int, int, int]:
        _place(run, file.shard, file.published_path, target)
        return parquet_sizes(run, run.shard_file(file.shard))

    sizes = dict(zip((file.shard for file in files), objects.each_at_once(run, place, files), strict=True))
    splits = []
    for config in published_configs(lock.recipe):
        chosen = files_of(config, files)
        patterns = data_file_patterns(config, files)
        selected = [f.published_path for f in files if any(pattern_matches(p, f.published_path) for p in patterns)]
        if sorted(selected) != sorted(f.published_path for f in chosen):  # the globs must select exactly these
            raise AssertionError(f"{config.name}: data_files globs {patterns} do not select its {len(chosen)} files")
        splits.append(
            BuiltSplit(
                config.name,
                config.split,
                [f.published_path for f in chosen],
                sum(sizes[f.shard][0] for f in chosen),
                sum(sizes[f.shard][1] for f in chosen),
                patterns,
                sum(sizes[f.shard][2] for f in chosen),
            )
        )
    return splits


def render_readme(lock: Lock, run: RunDir, label_names: list[str], splits: list[BuiltSplit]) -> str:
    """The README: YAML with `configs` and `dataset_info` (written by the libraries' own classes) and a short card."""
    from datasets import DatasetInfo, SplitDict, SplitInfo
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard, DatasetCardData

    features = dataset_features(label_names)
    configs = list(dict.fromkeys(s.config for s in splits))
    card_data = DatasetCardData(
        license="other",
        task_categories=["image-classification"],
        task_ids=["multi-class-image-classification"],
        tags=["synthetic"],
    )
    metadata_configs, infos = {}, {}
    for config in configs:
        config_splits = [s for s in splits if s.config == config]
        metadata_configs[config] = {
            "data_files": [{"split": s.split, "path": s.patterns} for s in config_splits],
            **({"default": True} if config == configs[0] else {}),
        }
        split_dict = SplitDict()
        for s in config_splits:
            split_dict.add(SplitInfo(name=s.split, num_bytes=s.num_bytes, num_examples=s.num_examples))
        infos[config] = DatasetInfo(
            features=features if config == configs[0] else None,  # once: every config has the same Features
            splits=split_dict,
            download_size=sum(s.download_bytes for s in config_splits),
            dataset_size=sum(s.num_bytes for s in config_splits),
        )
    MetadataConfigs(metadata_configs).to_dataset_card_data(card_data)
    DatasetInfosDict(infos).to_dataset_card_data(card_data)

    rows = "\n".join(f"| {s.config} | {s.split} | {s.num_examples} | {len(s.files)} |" for s in splits)
    recipe = lock.recipe
    long_tail = "".join(
        _long_tail_section(run, config, len(label_names)) for config in recipe.configs if config.fill_up
    )
    body = f"""
# {recipe.name}

Synthetic image-classification data made by [synthset](https://pypi.org/project/synthset/) with
`{recipe.generator.model}` (revision `{lock.model.revision}`), {recipe.generator.steps} steps,
guidance {recipe.generator.guidance}, {recipe.generator.width}x{recipe.generator.height}.
Every row records its prompt, seed and generator settings; `recipe.lock.yaml` pins the whole run
(provenance `{lock.provenance}`).

| config | split | images | files |
|---|---|---|---|
{rows}

```python
from datasets import load_dataset

ds = load_dataset("<this repo or directory>", "{configs[0]}", split="train")
```
{long_tail}"""
    return DatasetCard(f"---\n{card_data.to_yaml()}\n---\n{body}").content


def _long_tail_section(run: RunDir, config, num_classes: int) -> str:
    """Many (> 100 real images) / medium / few (< 20) buckets of a fill-up config's real class counts."""
    from synthset.classes.longtail import bucket_table, read_train_list_counts

    real = read_train_list_counts(config.fill_up.train_list, num_classes)
    classes = read_class_rows(run, ["label", "selected"])
    selected = {row["label"]: real[row["label"]] for row in classes if row["selected"]}
    synthetic: dict[int, int] = {}
    for batch in open_plan(run).iter_batches(columns=["config", "label"]):
        for row in batch.to_pylist():
            if row["config"] == config.name:
                synthetic[row["label"]] = synthetic.get(row["label"], 0) + 1
    lines = "\n".join(f"| {b} | {n} | {r} | {s} |" for b, n, r, s in bucket_table(selected, synthetic))
    return f"""
## {config.name}: fill-up to {config.fill_up.target} images per class

| real-count bucket | classes | real images | synthetic images |
|---|---|---|---|
{lines}
"""


def _carry_over(previous: Path, target: Path) -> None:
    """Keep what a later stage added to the previous build and a rebuild cannot remake: training results."""
    evaluation = previous / EVALUATION_DIR
    if evaluation.is_dir():
        shutil.copytree(evaluation, target / EVALUATION_DIR)


def _remove_stale_builds(run: RunDir) -> None:
    """Delete build directories of killed builds (their pid no longer runs on this host)."""
    from synthset.fsutil import owner_is_dead

    for stale in run.root.glob(f"{DATASET_BUILD_PREFIX}*"):
        if owner_is_dead(stale.name.removeprefix(DATASET_BUILD_PREFIX)):
            shutil.rmtree(stale, ignore_errors=True)


def report_dropped_samples(reports) -> None:
    """Classes that lost samples to the quality gate are said out loud (never emptied silently)."""
    from synthset.builders.validate import format_notes

    for report in reports:
        if report.dropped:
            logger.warning("%s/%s: %d planned samples were dropped by the quality gate", report.config,
                           report.split, report.dropped)  # fmt: skip
            for line in format_notes(report):
                logger.warning("%s/%s: %s", report.config, report.split, line.strip().removeprefix("note: "))


def build_dataset(run_dir: str | Path | RunDir) -> tuple[Path, list[BuiltSplit]]:
    """Assemble `dataset/` from a fully generated run; refuses while any shard is missing or corrupt."""
    run = RunDir.planned(run_dir)
    lock = read_lock(run)
    check_family(lock.recipe)
    names = check_finished(run, lock, verify=False)
    from synthset.builders.validate import validate_run

    # On an object store: records, sizes and footers, and the rows' ids and labels by range requests; no
    # image byte comes to this host (`synthset validate` checks the stored checksums and decodes the images).
    reports = validate_run(run, fast=run.on_store, images=not run.on_store)
    failed = [report for report in reports if not report.ok]
    if failed:
        raise RunStateError(
            f"{run}: validation failed for {failed[0].config}/{failed[0].split}: {failed[0].problems[0]} "
            f"(`synthset validate {run}` lists every problem)"
        )
    report_dropped_samples(reports)
    label_names = read_label_names(run)
    _remove_stale_builds(run)
    from synthset.fsutil import owner_token

    target = Path(tempfile.mkdtemp(prefix=f"{DATASET_BUILD_PREFIX}{owner_token()}-", dir=run.root))
    try:
        splits = link_shards(run, lock, names, target)
        # The k-shot real image ids and the conditioning pools travel with the data: a reader can check them.
        for side_file in (run.lock_file, run.shots_file, run.pool_file):
            if side_file.is_file():
                with atomic_path(target / side_file.name) as tmp:
                    shutil.copyfile(side_file, tmp)
        if run.dataset_dir.is_dir():
            _carry_over(run.dataset_dir, target)
        write_text_atomic(target / README_FILE, render_readme(lock, run, label_names, splits))
        replace_dir(target, run.dataset_dir)
    finally:
        shutil.rmtree(target, ignore_errors=True)
    return run.dataset_dir, splits
