"""plan.parquet: one row per image, stable ids and seeds, shards fixed by the plan."""

from __future__ import annotations

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from synthset.generation.plan import plan_run
from synthset.recipe import load_recipe
from synthset.run.ids import sample_seed
from synthset.run.lock import read_lock
from synthset.run.paths import PLAN_FILE, RunDir
from synthset.run.plan import open_plan, plan_shard_names, read_planned_shard


def test_plan_rows_ids_seeds_and_shards(write_recipe):
    recipe = load_recipe(write_recipe({"classes": {"subset": ["goldfish", "n15075141"], "limit": None}}))
    summary = plan_run(recipe)
    assert (summary.rows, summary.shards, summary.rows_per_config) == (10, 2, {"naive": 10})
    rows = pq.read_table(recipe.run_dir / PLAN_FILE).to_pylist()
    assert [r["sample_id"] for r in rows[:2]] == ["naive/0001/000000", "naive/0001/000001"]
    assert rows[-1]["sample_id"] == "naive/0999/000004"
    assert {r["label"] for r in rows} == {1, 999}
    assert rows[-1]["prompt"] == "a photo of a toilet tissue"
    assert [r["shard"] for r in rows] == ["naive/train-b0-00000"] * 6 + ["naive/train-b0-00001"] * 4
    assert all(r["seed"] == sample_seed(7, r["sample_id"]) for r in rows)
    assert len({r["seed"] for r in rows}) == 10
    assert plan_shard_names(pq.ParquetFile(recipe.run_dir / PLAN_FILE)) == [
        "naive/train-b0-00000",
        "naive/train-b0-00001",
    ]


def test_seed_depends_on_recipe_seed_and_sample_id_only():
    assert sample_seed(7, "naive/0001/000000") == sample_seed(7, "naive/0001/000000")
    assert sample_seed(7, "naive/0001/000000") != sample_seed(8, "naive/0001/000000")
    assert sample_seed(7, "naive/0001/000000") != sample_seed(7, "naive/0001/000001")
    assert 0 <= sample_seed(7, "x") < 2**63


def test_replanning_is_byte_stable(write_recipe):
    recipe = load_recipe(write_recipe())
    plan_run(recipe)
    first = (recipe.run_dir / PLAN_FILE).read_bytes()
    plan_run(recipe)
    assert (recipe.run_dir / PLAN_FILE).read_bytes() == first


def test_plan_is_a_datasets_table_with_class_labels(write_recipe):
    recipe = load_recipe(write_recipe())
    plan_run(recipe)
    plan = datasets.load_dataset("parquet", data_files=str(recipe.run_dir / PLAN_FILE), split="train")
    assert plan.num_rows == 15
    assert plan.features["label"].int2str(2) == "great white shark"


def test_lock_pins_model_and_versions(write_recipe):
    recipe = load_recipe(write_recipe())
    plan_run(recipe)
    lock = read_lock(RunDir(recipe.run_dir))
    assert lock.model.source == "local"
    assert lock.model.revision.startswith("sha256:") and len(lock.model.revision) == 7 + 64
    assert lock.recipe == recipe
    data = yaml.safe_load((recipe.run_dir / "recipe.lock.yaml").read_text())
    assert {"torch", "diffusers", "datasets", "python"} <= set(data["resolved"]["versions"])
    assert data["recipe"]["generator"]["cpu_threads"] == 1  # defaults are written out


def test_the_plan_footer_does_not_grow_with_the_number_of_shards(write_recipe, monkeypatch):
    """Row groups are sized for reading, not one per shard; the shard index lives in the file's metadata."""
    from synthset.run import plan as plan_module

    monkeypatch.setattr(plan_module, "PLAN_ROW_GROUP_ROWS", 4)  # small groups, so shards straddle them
    recipe = load_recipe(write_recipe({"storage": {"shard_size": 3}, "classes": {"limit": 4}}))
    plan_run(recipe)  # 20 rows in 7 shards of 3, 3, 3, 3, 3, 3, 2
    plan = open_plan(RunDir(recipe.run_dir))
    assert plan.shard_names == [f"naive/train-b0-{i:05d}" for i in range(7)]
    assert plan.shard_rows == [3, 3, 3, 3, 3, 3, 2]
    assert plan.file.metadata.num_row_groups == 5  # 20 rows in groups of 4, not 7 groups
    whole = pq.read_table(recipe.run_dir / PLAN_FILE)
    shards = [read_planned_shard(plan, i, name) for i, name in enumerate(plan.shard_names)]
    assert [row for shard in shards for row in shard.rows.to_pylist()] == whole.drop_columns(
        ["band", "shard"]
    ).to_pylist()
    assert all({r["shard"] for r in whole.to_pylist()[i * 3 : i * 3 + 3]} == {name} for i, name in
               enumerate(plan.shard_names))  # fmt: skip


def test_streaming_the_plan_gives_every_shard_as_random_access_does(write_recipe, monkeypatch):
    """`iter_shards` (build and validate walk the plan with it) cuts batches that straddle shards and groups."""
    from synthset.run import plan as plan_module

    monkeypatch.setattr(plan_module, "PLAN_ROW_GROUP_ROWS", 4)
    monkeypatch.setattr(plan_module, "PLAN_STREAM_ROWS", 5)  # batches of 5 over shards of 3 and groups of 4
    recipe = load_recipe(write_recipe({"storage": {"shard_size": 3}, "classes": {"limit": 4}}))
    plan_run(recipe)  # 20 rows in 7 shards
    plan = open_plan(RunDir(recipe.run_dir))
    streamed = list(plan.iter_shards())
    assert [(s.index, s.name, s.rows.num_rows) for s in streamed] == [
        (i, name, rows) for i, (name, rows) in enumerate(zip(plan.shard_names, plan.shard_rows, strict=True))
    ]
    for shard in streamed:
        expected = read_planned_shard(plan, shard.index, shard.name)
        assert shard.rows.to_pylist() == expected.rows.to_pylist() and shard.digest == expected.digest


def test_a_plan_from_before_the_shard_index_is_still_read(write_recipe):
    recipe = load_recipe(write_recipe())
    plan_run(recipe)
    path = recipe.run_dir / PLAN_FILE
    rows = pq.read_table(path)
    schema = rows.schema.with_metadata({k: v for k, v in rows.schema.metadata.items() if k != b"synthset_shards"})
    by_shard: dict[str, list[dict]] = {}
    for row in rows.to_pylist():
        by_shard.setdefault(row["shard"], []).append(row)
    with pq.ParquetWriter(path, schema) as writer:  # the old layout: one row group per shard, no index
        for name in sorted(by_shard):
            writer.write_table(pa.Table.from_pylist(by_shard[name], schema=schema))
    plan = open_plan(RunDir(recipe.run_dir))
    assert plan.shard_names == sorted(by_shard) and plan.shard_rows == [6, 6, 3]
    shard = read_planned_shard(plan, 2, "naive/train-b0-00002")
    assert shard.sample_ids == [row["sample_id"] for row in by_shard["naive/train-b0-00002"]]


def test_shard_names_come_from_the_shard_column_when_another_column_is_constant(tmp_path):
    """Row-group statistics are per leaf column: cd_aspects (4 leaves) and cond_images shift the indices, so
    the shard name must not be read at `shard`'s top-level index (that leaf is cond_aug, constant in an
    augcond plan with one augmentation)."""
    import pyarrow as pa

    from synthset.run.schema import plan_features

    rows = [
        {"sample_id": f"augcond/0000/00000{i}", "config": "augcond", "split": "train", "label": 0,
         "class_name": "tench", "strategy": "augcond", "prompt": "tench", "negative_prompt": "",
         "lar_meaning": None, "cd_aspects": None, "sd_style": None, "seed": i, "cond_images": ["a.png"],
         "cond_aug": "dropout(p=0.4)", "cond_lambda": None, "band": 0, "shard": f"augcond/train-b0-0000{i}"}
        for i in range(2)
    ]  # fmt: skip
    schema = plan_features(["tench"]).arrow_schema
    with pq.ParquetWriter(tmp_path / PLAN_FILE, schema) as writer:
        for row in rows:
            writer.write_table(pa.Table.from_pylist([row], schema=schema))
    assert plan_shard_names(pq.ParquetFile(tmp_path / PLAN_FILE)) == [
        "augcond/train-b0-00000",
        "augcond/train-b0-00001",
    ]
