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
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from synthset.builders.validate import FileSizes, Key, check_run, format_notes
from synthset.errors import RunStateError
from synthset.fsutil import atomic_path, make_temp_dir, replace_dir, write_text_atomic
from synthset.recipe import ConfigSpec
from synthset.run import objects
from synthset.run.classes_table import read_class_rows, read_label_names
from synthset.run.families import check_family
from synthset.run.lock import Lock, read_lock
from synthset.run.mirror import last_listing, listed
from synthset.run.paths import (
    DATASET_BUILD_PREFIX,
    DATASET_DIR,
    EVALUATION_DIR,
    README_FILE,
    RunDir,
    card_marker,
    is_data_file,
)
from synthset.run.plan import open_plan
from synthset.run.portable import published_lock_text
from synthset.run.published import data_file_patterns, files_of, pattern_matches, published_configs, shard_files
from synthset.run.records import read_shard_record, record_problem
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


def unfinished_error(run: RunDir, unfinished: int, shards: int, first: tuple[str, str]) -> RunStateError:
    name, problem = first
    return RunStateError(
        f"{run}: {unfinished} of {shards} shards are not finished (first: {name}: {problem}); "
        "run `synthset generate` to make them"
    )


def check_finished(run: RunDir, lock: Lock, verify: bool = True) -> list[str]:
    """The plan's shard names, after checking that every one has a valid record; else a one-line error.

    `verify=False` checks each file's size, not its sha256. Records are read one shard at a time.
    """
    plan = open_plan(run)
    unfinished, first = 0, None
    for shard in plan.iter_shards():
        name = shard.name
        record = read_shard_record(run, name)
        problem = (
            "no record"
            if record is None
            else record_problem(run, record, shard.sample_ids, lock.generation_key, shard.digest, verify)
        )
        if problem is not None:
            unfinished, first = unfinished + 1, first or (name, problem)
    if first is not None:
        raise unfinished_error(run, unfinished, len(plan.shard_names), first)
    return plan.shard_names


def link_shards(
    run: RunDir, lock: Lock, names: list[str], band_sizes: dict[tuple[str, int], FileSizes], target: Path
) -> list[BuiltSplit]:
    """Hard-link every shard to its published path under `target` and list each config's files, sized by
    the footers validation read (`band_sizes`, per generation config and band): build reads no shard twice."""
    files = shard_files(lock.recipe, names)
    objects.each_at_once(run, lambda file: _place(run, file.shard, file.published_path, target), files)
    splits = []
    for config in published_configs(lock.recipe):
        chosen = files_of(config, files)
        patterns = data_file_patterns(config, files)
        selected = [f.published_path for f in files if any(pattern_matches(p, f.published_path) for p in patterns)]
        if sorted(selected) != sorted(f.published_path for f in chosen):  # the globs must select exactly these
            raise AssertionError(f"{config.name}: data_files globs {patterns} do not select its {len(chosen)} files")
        sizes = sum(
            (band_sizes.get((config.generation_config, band), FileSizes()) for band in range(config.bands)), FileSizes()
        )
        splits.append(
            BuiltSplit(
                config.name,
                config.split,
                [f.published_path for f in chosen],
                sizes.rows,
                sizes.data_bytes,
                patterns,
                sizes.file_bytes,
            )
        )
    return splits


def render_readme(
    lock: Lock, run: RunDir, label_names: list[str], splits: list[BuiltSplit], planned: dict[Key, Counter]
) -> str:
    """The README: YAML with `configs` and `dataset_info` (written by the libraries' own classes) and a short
    card; `planned` (images per label of each config and split, counted by validation) sizes the long-tail
    sections."""
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
        _long_tail_section(run, config, len(label_names), planned) for config in recipe.configs if config.fill_up
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


def _long_tail_section(run: RunDir, config: ConfigSpec, num_classes: int, planned: dict[Key, Counter]) -> str:
    """Many (> 100 real images) / medium / few (< 20) buckets of a fill-up config's real class counts."""
    from synthset.classes.longtail import bucket_table, read_train_list_counts

    fill_up = config.fill_up
    assert fill_up is not None, "only fill-up configs have a long-tail section"
    real = read_train_list_counts(fill_up.train_list, num_classes)
    classes = read_class_rows(run, ["label", "selected"])
    selected = {row["label"]: real[row["label"]] for row in classes if row["selected"]}
    synthetic: Counter = sum((counts for (name, _), counts in planned.items() if name == config.name), Counter())
    lines = "\n".join(f"| {b} | {n} | {r} | {s} |" for b, n, r, s in bucket_table(selected, synthetic))
    return f"""
## {config.name}: fill-up to {fill_up.target} images per class

| real-count bucket | classes | real images | synthetic images |
|---|---|---|---|
{lines}
"""


def _carry_over(previous: Path, target: Path) -> None:
    """Keep what a later stage added to the previous build and a rebuild cannot remake: training results."""
    evaluation = previous / EVALUATION_DIR
    if evaluation.is_dir():
        shutil.copytree(evaluation, target / EVALUATION_DIR)


def _data_files(root: Path) -> dict[str, int]:
    """A dataset folder's Parquet files (relative path -> size): what its configs select."""
    return {p.relative_to(root).as_posix(): p.stat().st_size for p in root.rglob("*.parquet") if p.is_file()}


def _card_yaml(readme: str) -> tuple[object, object]:
    from huggingface_hub import DatasetCard

    data = DatasetCard(readme).data.to_dict()
    return data.get("configs"), data.get("dataset_info")


def keep_card(run: RunDir, target: Path, build_readme: str, provenance: str) -> str | None:
    """Carry the previous build's card (README, samples.jpg, figures, published review) into `target`
    when the data it describes is unchanged; else say that the card was dropped. None: there was no card.

    Unchanged means: the card was rendered for this provenance, its `configs`/`dataset_info` are what
    this build writes, and the same Parquet files (path and size) are published.
    """
    previous = run.dataset_dir
    old_readme = previous / README_FILE
    if not old_readme.is_file() or "<!-- synthset-card " not in (text := old_readme.read_text(encoding="utf-8")):
        return None
    unchanged = (
        card_marker(provenance) in text
        and _card_yaml(text) == _card_yaml(build_readme)
        and _data_files(previous) == _data_files(target)
    )
    if not unchanged:
        return f"the data changed: the card in {previous} was dropped; run `synthset card {run}` to render it again"
    for path in sorted(previous.rglob("*")):
        copy = target / path.relative_to(previous)
        if path.is_file() and not copy.exists() and not path.name.startswith("."):
            _link_or_copy(path, copy)
    shutil.copyfile(old_readme, target / README_FILE)
    return "the data is unchanged: the card, its figures and pages were kept"


def _remove_stale_builds(run: RunDir) -> None:
    """Delete build directories of killed builds (their pid no longer runs on this host)."""
    from synthset.fsutil import owner_is_dead

    for stale in run.root.glob(f"{DATASET_BUILD_PREFIX}*"):
        if owner_is_dead(stale.name.removeprefix(DATASET_BUILD_PREFIX)):
            shutil.rmtree(stale, ignore_errors=True)


def report_dropped_samples(reports) -> None:
    """Classes that lost samples to the quality gate are said out loud (never emptied silently)."""
    for report in reports:  # one line per config: each class that lost samples, emptied ones first
        if report.dropped:
            notes = "; ".join(line.strip().removeprefix("note: ") for line in format_notes(report))
            logger.warning("%s/%s: %d planned samples were dropped by the quality gate: %s", report.config,
                           report.split, report.dropped, notes)  # fmt: skip


@dataclass(frozen=True)
class BuiltDataset:
    """What a build made: the folder, its splits, and what happened to a card the previous build had.

    It unpacks as `(path, splits)`, as build's result did before it reported on the card.
    """

    path: Path
    splits: list[BuiltSplit]
    card_note: str | None = None  # None: there was no card to keep

    def __iter__(self):
        return iter((self.path, self.splits))


def build_dataset(run_dir: str | Path | RunDir) -> BuiltDataset:
    """Assemble `dataset/` from a fully generated run; refuses while any shard is missing or corrupt."""
    run = RunDir.planned(run_dir)
    lock = read_lock(run)
    check_family(lock.recipe)
    # On an object store: records, sizes and footers, and the rows' ids and labels by range requests; no
    # image byte comes to this host (`synthset validate` checks the stored checksums and decodes the images).
    checked = check_run(run, lock, fast=run.on_store, stop_reading_when_unfinished=True, images=not run.on_store)
    if checked.first_unfinished is not None:
        raise unfinished_error(run, checked.unfinished, len(checked.shards), checked.first_unfinished)
    reports = checked.reports
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

    target = make_temp_dir(f"{DATASET_BUILD_PREFIX}{owner_token()}-", run.root)
    try:
        splits = link_shards(run, lock, checked.shards, checked.band_sizes, target)
        # The k-shot real image ids and the conditioning pools travel with the data: a reader can check them.
        write_text_atomic(target / run.lock_file.name, published_lock_text(run))  # nothing of this disk
        for side_file in (run.shots_file, run.pool_file):
            if side_file.is_file():
                with atomic_path(target / side_file.name) as tmp:
                    shutil.copyfile(side_file, tmp)
        if run.dataset_dir.is_dir():
            _carry_over(run.dataset_dir, target)
        readme = render_readme(lock, run, label_names, splits, checked.planned)
        write_text_atomic(target / README_FILE, readme)
        card_note = keep_card(run, target, readme, lock.provenance)
        replace_dir(target, run.dataset_dir)
    finally:
        shutil.rmtree(target, ignore_errors=True)
    return BuiltDataset(run.dataset_dir, splits, card_note)
