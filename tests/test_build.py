"""`synthset build` turns finished shards into a directory that `datasets.load_dataset` reads as it is."""

from __future__ import annotations

import os
from pathlib import Path

import datasets
import pytest
import yaml
from PIL import Image

from synthset.builders.assemble import build_dataset
from synthset.errors import SynthsetError
from synthset.fsutil import sha256_file
from synthset.generation.plan import plan_run
from synthset.generation.runner import generate_run
from synthset.recipe import load_recipe
from synthset.run.paths import RunDir
from synthset.run.portable import portable

TWO_CONFIGS = {
    "configs": [
        {"name": "naive", "strategy": "naive", "images_per_class": 5},
        {"name": "lar", "strategy": "lar", "images_per_class": 2},
    ]
}


@pytest.fixture
def built_run(write_recipe):
    recipe = load_recipe(write_recipe(TWO_CONFIGS))
    plan_run(recipe)
    generate_run(recipe.run_dir)
    dataset_dir, splits = build_dataset(recipe.run_dir)
    return recipe.run_dir, dataset_dir, splits


def test_load_dataset_reads_the_built_directory(built_run):
    run_dir, dataset_dir, splits = built_run
    assert [(s.config, s.split, s.num_examples, len(s.files)) for s in splits] == [
        ("naive", "train", 15, 3),
        ("lar", "train", 6, 1),
    ]
    ds = datasets.load_dataset(str(dataset_dir), "naive", split="train")
    assert ds.num_rows == 15
    assert ds.features["label"].names[:2] == ["tench", "goldfish"]
    assert len(ds.features["label"].names) == 1000
    assert isinstance(ds.features["image"], datasets.Image)
    assert {"image", "label", "sample_id", "prompt", "seed", "model", "model_revision", "scheduler"} <= set(
        ds.column_names
    )
    assert sorted(ds["label"]) == [0] * 5 + [1] * 5 + [2] * 5
    first = ds[0]
    assert isinstance(first["image"], Image.Image) and first["image"].size == (32, 32)
    assert first["prompt"] == "a photo of a tench"
    lar_ds = datasets.load_dataset(str(dataset_dir), "lar", split="train")
    assert lar_ds.num_rows == 6


def test_published_files_are_the_shards_not_copies(built_run):
    run_dir, dataset_dir, _ = built_run
    published = dataset_dir / "naive" / "b0" / "train-00001-of-00003.parquet"
    assert os.path.samefile(published, RunDir(run_dir).shard_file("naive/train-b0-00001"))
    # the lock travels with the data, its paths relative (output_dir is absolute here: a tmp directory)
    published_lock = yaml.safe_load((dataset_dir / "recipe.lock.yaml").read_text())
    assert published_lock == portable(yaml.safe_load((run_dir / "recipe.lock.yaml").read_text()), run_dir)
    assert published_lock["recipe"]["output_dir"] == "runs" and str(run_dir.parent) not in str(published_lock)


def test_readme_yaml_names_configs_and_class_labels(built_run):
    _, dataset_dir, _ = built_run
    text = (dataset_dir / "README.md").read_text()
    header = yaml.safe_load(text.split("---")[1])
    configs = {c["config_name"]: c for c in header["configs"]}
    assert set(configs) == {"lar", "naive"}
    assert configs["naive"]["default"] is True and "default" not in configs["lar"]
    assert configs["lar"]["data_files"] == [{"split": "train", "path": ["lar/b0/train-*.parquet"]}]
    assert configs["naive"]["data_files"] == [{"split": "train", "path": ["naive/b0/train-*.parquet"]}]
    infos = {info["config_name"]: info for info in header["dataset_info"]}
    assert infos["naive"]["splits"] == [
        {"name": "train", "num_bytes": infos["naive"]["dataset_size"], "num_examples": 15}
    ]
    files = sorted((dataset_dir / "naive" / "b0").glob("*.parquet"))
    assert infos["naive"]["download_size"] == sum(f.stat().st_size for f in files)
    label = next(f for f in infos["naive"]["features"] if f["name"] == "label")
    assert label["dtype"]["class_label"]["names"]["999"] == "toilet tissue"
    assert "features" not in infos["lar"]  # written once, in the default config: every config has the same
    assert (
        datasets.load_dataset(str(dataset_dir), "lar", split="train").features
        == datasets.load_dataset(str(dataset_dir), "naive", split="train").features
    )


def test_build_is_idempotent(built_run):
    run_dir, dataset_dir, _ = built_run
    before = {p.name: sha256_file(p) for p in dataset_dir.rglob("*") if p.is_file()}
    build_dataset(run_dir)
    assert {p.name: sha256_file(p) for p in dataset_dir.rglob("*") if p.is_file()} == before


def test_build_refuses_an_unfinished_run(write_recipe):
    recipe = load_recipe(write_recipe())
    plan_run(recipe)
    with pytest.raises(
        SynthsetError, match=r"3 of 3 shards are not finished \(first: naive/train-b0-00000: no record\)"
    ):
        build_dataset(recipe.run_dir)
    generate_run(recipe.run_dir)
    RunDir(recipe.run_dir).shard_file("naive/train-b0-00002").write_bytes(b"not parquet")
    with pytest.raises(
        SynthsetError, match=r"1 of 3 shards are not finished \(first: naive/train-b0-00002: size \d+ != recorded \d+\)"
    ):
        build_dataset(recipe.run_dir)
    assert not (Path(recipe.run_dir) / "dataset").exists()


def test_build_reads_each_shard_file_once_and_digests_each_shard_once(write_recipe, monkeypatch):
    """Validation hashes, decodes and sizes a shard from one read, and build takes the sizes from it."""
    import builtins
    import io
    from collections import Counter

    import pyarrow as pa
    import pyarrow.parquet as pq

    import synthset.fsutil
    import synthset.run.objects
    import synthset.run.plan

    recipe = load_recipe(write_recipe(TWO_CONFIGS))
    plan_run(recipe)
    generate_run(recipe.run_dir)
    run = RunDir(recipe.run_dir)
    shards = {str(run.shard_file(name)) for name in synthset.run.plan.open_plan(run).shard_names}
    opened: Counter = Counter()

    def counting(function):
        def opener(source, *args, **kwargs):
            opened[str(source)] += str(source) in shards
            return function(source, *args, **kwargs)

        return opener

    readers = [(builtins, "open"), (io, "open"), (pa, "memory_map"), (pa, "OSFile"), (pa, "input_stream")]
    readers += [(pq, name) for name in ("ParquetFile", "read_table", "read_metadata", "read_schema")]
    readers += [(synthset.fsutil, "sha256_file"), (synthset.run.objects, "sha256_file")]  # records hash there
    for module, name in readers:
        monkeypatch.setattr(module, name, counting(getattr(module, name)))
    digests = []
    plan_digest = synthset.run.plan.plan_digest
    monkeypatch.setattr(synthset.run.plan, "plan_digest", lambda rows: digests.append(rows) or plan_digest(rows))

    build_dataset(recipe.run_dir)
    assert len(shards) == 4
    assert {path: opened[path] for path in shards} == dict.fromkeys(shards, 1)
    assert len(digests) == len(shards)  # one JSON digest per shard, not one per look at it
