"""The build stage: finished shards -> `dataset/`, the Hub layout that `load_dataset` reads as it is.

The published Parquet files *are* the generation shards, hard-linked into place (copied only across
filesystems), never decoded and re-encoded: at 6x ImageNet a run is hundreds of GB. They already carry
the `datasets` Features in their schema metadata. The README's YAML (`configs` with `data_files`, and
`dataset_info` with the ClassLabel names, splits and sizes) is made with the `datasets` and
`huggingface_hub` card classes, so the Hub and `load_dataset` parse exactly what those libraries write.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from synthset.builders import builder_class
from synthset.builders.configs import files_of, published_configs, shard_files
from synthset.builders.features import dataset_features
from synthset.classes.table import read_label_names
from synthset.errors import SynthsetError
from synthset.fsutil import atomic_path, temp_path_for, write_text_atomic
from synthset.generation.manifest import read_records, shard_file
from synthset.generation.plan import PLAN_FILE
from synthset.generation.runner import plan_shard_names, read_planned_shard, shard_problem
from synthset.generation.shots import SHOTS_FILE
from synthset.lock import LOCK_FILE, Lock, read_lock

DATASET_DIR = "dataset"


@dataclass(frozen=True)
class BuiltSplit:
    config: str
    split: str
    files: list[str]  # relative to dataset/
    num_examples: int
    num_bytes: int


def _link_or_copy(source: Path, target: Path) -> None:
    """Put `source` at `target` atomically, sharing the bytes on disk when the filesystem allows it."""
    if target.exists() and os.path.samefile(source, target):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(target)
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def check_finished(run_dir: Path, lock: Lock) -> list[str]:
    """The plan's shard names, after checking that every one has a valid record; else a one-line error."""
    plan = pq.ParquetFile(run_dir / PLAN_FILE)
    names = plan_shard_names(plan)
    records = read_records(run_dir)
    missing = [
        name
        for i, name in enumerate(names)
        if shard_problem(run_dir, read_planned_shard(plan, i, name), records, lock.generation_key) is not None
    ]
    if missing:
        raise SynthsetError(
            f"{run_dir}: {len(missing)} of {len(names)} shards are not finished (first: {missing[0]}); "
            "run `synthset generate` to make them"
        )
    return names


def link_shards(run_dir: Path, lock: Lock, names: list[str]) -> list[BuiltSplit]:
    """Hard-link every shard to its published path, drop files no longer planned, and list each config's files."""
    dataset_dir = run_dir / DATASET_DIR
    files = shard_files(lock.recipe, names)
    sizes = {}
    for file in files:
        source = shard_file(run_dir, file.shard)
        _link_or_copy(source, dataset_dir / file.published_path)
        sizes[file.shard] = (pq.ParquetFile(source).metadata.num_rows, source.stat().st_size)
    keep = {file.published_path for file in files}
    for stale in dataset_dir.glob("*/*.parquet"):
        if stale.relative_to(dataset_dir).as_posix() not in keep:
            stale.unlink()
    splits = []
    for config in published_configs(lock.recipe):
        chosen = files_of(config, files)
        splits.append(
            BuiltSplit(
                config.name,
                config.split,
                [f.published_path for f in chosen],
                sum(sizes[f.shard][0] for f in chosen),
                sum(sizes[f.shard][1] for f in chosen),
            )
        )
    return splits


def render_readme(lock: Lock, run_dir: Path, label_names: list[str], splits: list[BuiltSplit]) -> str:
    """The README: YAML with `configs` and `dataset_info` (written by the libraries' own classes) and a short card."""
    from datasets import DatasetInfo, SplitDict, SplitInfo
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard, DatasetCardData

    features = dataset_features(label_names)
    configs = [s.config for s in splits]
    card_data = DatasetCardData(license="other", task_categories=["image-classification"], tags=["synthetic"])
    metadata_configs, infos = {}, {}
    for config in configs:
        config_splits = [s for s in splits if s.config == config]
        metadata_configs[config] = {
            "data_files": [{"split": s.split, "path": s.files} for s in config_splits],
            **({"default": True} if config == configs[0] else {}),
        }
        split_dict = SplitDict()
        for s in config_splits:
            split_dict.add(SplitInfo(name=s.split, num_bytes=s.num_bytes, num_examples=s.num_examples))
        size = sum(s.num_bytes for s in config_splits)
        infos[config] = DatasetInfo(features=features, splits=split_dict, download_size=size, dataset_size=size)
    MetadataConfigs(metadata_configs).to_dataset_card_data(card_data)
    DatasetInfosDict(infos).to_dataset_card_data(card_data)

    rows = "\n".join(f"| {s.config} | {s.split} | {s.num_examples} | {len(s.files)} |" for s in splits)
    recipe = lock.recipe
    long_tail = "".join(
        _long_tail_section(run_dir, config, len(label_names)) for config in recipe.configs if config.fill_up
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


def _long_tail_section(run_dir: Path, config, num_classes: int) -> str:
    """Many (> 100 real images) / medium / few (< 20) buckets of a fill-up config's real class counts."""
    from synthset.classes.longtail import bucket_table, read_train_list_counts

    real = read_train_list_counts(config.fill_up.train_list, num_classes)
    classes = pq.read_table(run_dir / "classes.parquet", columns=["label", "selected"]).to_pylist()
    selected = {row["label"]: real[row["label"]] for row in classes if row["selected"]}
    synthetic: dict[int, int] = {}
    for row in pq.read_table(run_dir / PLAN_FILE, columns=["config", "label"]).to_pylist():
        if row["config"] == config.name:
            synthetic[row["label"]] = synthetic.get(row["label"], 0) + 1
    lines = "\n".join(f"| {b} | {n} | {r} | {s} |" for b, n, r, s in bucket_table(selected, synthetic))
    return f"""
## {config.name}: fill-up to {config.fill_up.target} images per class

| real-count bucket | classes | real images | synthetic images |
|---|---|---|---|
{lines}
"""


def build_dataset(run_dir: Path) -> tuple[Path, list[BuiltSplit]]:
    """Assemble `dataset/` from a fully generated run; refuses while any shard is missing or corrupt."""
    lock = read_lock(run_dir)
    builder_class(lock.recipe.builder).check_recipe(lock.recipe)
    names = check_finished(run_dir, lock)
    from synthset.builders.validate import validate_run

    failed = [report for report in validate_run(run_dir) if not report.ok]
    if failed:
        raise SynthsetError(
            f"{run_dir}: validation failed for {failed[0].config}/{failed[0].split}: {failed[0].problems[0]} "
            f"(`synthset validate {run_dir}` lists every problem)"
        )
    label_names = read_label_names(run_dir)
    splits = link_shards(run_dir, lock, names)
    dataset_dir = run_dir / DATASET_DIR
    for side_file in (LOCK_FILE, SHOTS_FILE):  # the k-shot real image ids travel with a few-shot dataset
        if (run_dir / side_file).is_file():
            with atomic_path(dataset_dir / side_file) as tmp:
                shutil.copyfile(run_dir / side_file, tmp)
    write_text_atomic(dataset_dir / "README.md", render_readme(lock, run_dir, label_names, splits))
    return dataset_dir, splits
