"""The three dataset builders: nested scales, fill-up counts, few-shot configs, validation."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import images_by_sample, shard_hashes

from synthset.builders.assemble import build_dataset
from synthset.builders.synth_fewshot import SynthFewshot
from synthset.builders.synth_imagenet import SynthImagenet
from synthset.builders.synth_imagenet_lt import SynthImagenetLT
from synthset.builders.validate import validate_run
from synthset.cli import main
from synthset.errors import SynthsetError
from synthset.fsutil import sha256_file
from synthset.generation.plan import plan_run
from synthset.generation.runner import generate_run
from synthset.recipe import load_recipe
from synthset.run.paths import RunDir
from synthset.run.records import read_records


def make_run(write_recipe, changes, filename="recipe.yaml"):
    recipe = load_recipe(write_recipe(changes, filename))
    plan_run(recipe)
    summary = generate_run(recipe.run_dir)
    return recipe, summary


def rows_of(dataset_dir: Path, config: str) -> list[dict]:
    ds = datasets.load_dataset(str(dataset_dir), config, split="train")
    return ds.cast_column("image", datasets.Image(decode=False)).to_list()


def test_growing_from_1x_to_2x_generates_only_the_new_band(write_recipe):
    one = {"configs": [{"name": "naive", "strategy": "naive", "images_per_class": 3, "bands": 2}]}
    recipe, first = make_run(write_recipe, one)
    assert (first.images_made, first.shards_made) == (18, 4)  # 3 classes x 3 images x 2 bands; 9 rows -> 6+3
    dataset_dir, splits = build_dataset(recipe.run_dir)
    assert [(s.config, s.num_examples, len(s.files)) for s in splits] == [
        ("naive", 18, 4),
        ("naive_1x", 9, 2),
        ("naive_2x", 18, 4),
    ]
    before_rows = rows_of(dataset_dir, "naive_1x")
    before_hashes = shard_hashes(recipe.run_dir)

    grown, summary = make_run(write_recipe, {"configs": [{**one["configs"][0], "bands": 4}]})
    assert (summary.images_made, summary.shards_made) == (18, 4)  # only bands 2 and 3
    after_hashes = shard_hashes(grown.run_dir)
    assert {k: after_hashes[k] for k in before_hashes} == before_hashes
    dataset_dir, splits = build_dataset(grown.run_dir)
    assert {s.config: s.num_examples for s in splits} == {
        "naive": 36, "naive_1x": 9, "naive_2x": 18, "naive_3x": 27, "naive_4x": 36,
    }  # fmt: skip
    assert rows_of(dataset_dir, "naive_1x") == before_rows
    ids_2x = {r["sample_id"] for r in rows_of(dataset_dir, "naive_2x")}
    assert {r["sample_id"] for r in before_rows} < ids_2x
    assert sorted(Counter(r["label"] for r in rows_of(dataset_dir, "naive_3x")).values()) == [9, 9, 9]


def test_fill_up_counts_from_the_long_tail_list(write_recipe, tmp_path: Path):
    train_list = tmp_path / "ImageNet_LT_train.txt"
    lines = [f"train/n01440764/{i}.JPEG 0" for i in range(5)] + ["train/n01443537/0.JPEG 1"]
    lines += [f"train/n01484850/{i}.JPEG 2" for i in range(9)]
    train_list.write_text("\n".join(lines) + "\n")
    fill = {"train_list": str(train_list), "target": 6}
    recipe, summary = make_run(
        write_recipe,
        {"builder": "synth_imagenet_lt", "configs": [{"name": "naive", "strategy": "naive", "fill_up": fill}]},
    )
    assert summary.images_made == 1 + 5 + 0
    dataset_dir, _ = build_dataset(recipe.run_dir)
    assert Counter(r["label"] for r in rows_of(dataset_dir, "naive")) == {0: 1, 1: 5}
    readme = (dataset_dir / "README.md").read_text()
    # real counts 5, 1, 9: all three classes are "few" (< 20); 1 + 5 + 0 synthetic images fill them up
    assert "| many | 0 | 0 | 0 |\n| medium | 0 | 0 | 0 |\n| few | 3 | 15 | 6 |" in readme

    train_list.write_text("train/x.JPEG 0\nbroken line\n")
    with pytest.raises(SynthsetError, match=r"ImageNet_LT_train\.txt:2: expected '<image path> <label>'"):
        plan_run(recipe)


def test_builders_download_and_prepare_read_the_run(write_recipe, tmp_path: Path):
    recipe, _ = make_run(
        write_recipe, {"configs": [{"name": "lar", "strategy": "lar", "images_per_class": 2, "bands": 2}]}
    )
    out = tmp_path / "prepared"
    builder = SynthImagenet(config_name="lar_1x", data_dir=str(recipe.run_dir), cache_dir=str(tmp_path / "cache"))
    builder.download_and_prepare(str(out), file_format="parquet")
    files = sorted(str(p) for p in out.rglob("*.parquet"))
    ds = datasets.load_dataset("parquet", data_files=files, split="train")
    assert ds.num_rows == 6
    assert ds.features["label"].names[0] == "tench"
    built = images_by_sample(recipe.run_dir)
    assert all(
        built[row["sample_id"]] == row["image"]["bytes"]
        for row in ds.cast_column("image", datasets.Image(decode=False))
    )
    with pytest.raises(SynthsetError, match="the run has no config 'naive_1x'"):
        SynthImagenet(
            config_name="naive_1x", data_dir=str(recipe.run_dir), cache_dir=str(tmp_path / "c2")
        ).download_and_prepare(str(tmp_path / "x"), file_format="parquet")


def test_fewshot_builder_on_a_custom_class_list(write_recipe, tmp_path: Path):
    classes = tmp_path / "flowers.txt"
    classes.write_text("rose\ntulip\n")
    recipe, summary = make_run(
        write_recipe,
        {
            "builder": "synth_fewshot",
            "classes": {"set": str(classes), "limit": None},
            "configs": [{"name": "custom_2shot", "strategy": "naive", "images_per_class": 3}],
        },
    )
    assert summary.images_made == 6
    dataset_dir, _ = build_dataset(recipe.run_dir)
    ds = datasets.load_dataset(str(dataset_dir), "custom_2shot", split="train")
    assert ds.features["label"].names == ["rose", "tulip"] and ds.num_rows == 6
    out = tmp_path / "prepared"
    SynthFewshot(
        config_name="custom_2shot", data_dir=str(recipe.run_dir), cache_dir=str(tmp_path / "cache")
    ).download_and_prepare(str(out), file_format="parquet")
    assert (
        datasets.load_dataset("parquet", data_files=[str(p) for p in out.rglob("*.parquet")], split="train").num_rows
        == 6
    )


def one_config(name: str, **extra) -> dict:
    return {"configs": [{"name": name, "strategy": "naive", "images_per_class": 1, **extra}]}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"builder": "synth_imagenet_lt"}, "configs[0]: synth_imagenet_lt configs need fill_up"),
        (one_config("mine"), "configs[0].name: synth_imagenet names each config after its strategy"),
        ({"builder": "synth_fewshot"}, "configs[0].name: synth_fewshot configs are named <dataset>_<k>shot"),
        ({"builder": "synth_fewshot", **one_config("dtd_4shot")}, "needs classes.set: dtd"),
        (one_config("naive", bands=7), "'naive_7x' is not a config of synth_imagenet"),
    ],
)
def test_recipes_a_builder_cannot_make_are_refused_before_any_work(write_recipe, changes, message):
    recipe = load_recipe(write_recipe(changes))
    with pytest.raises(SynthsetError, match=message.replace("[", r"\[").replace("]", r"\]")):
        plan_run(recipe)
    assert not recipe.run_dir.exists()


def test_builders_static_configs():
    assert "lar_cd_sd" in SynthImagenet.builder_configs and "augcond_6x" in SynthImagenet.builder_configs
    assert set(SynthImagenetLT.builder_configs) == {"naive", "lar", "lar_cd", "lar_cd_sd", "augcond"}
    assert "caltech101_16shot" in SynthFewshot.builder_configs and "sun397_1shot" in SynthFewshot.builder_configs


def test_validate_finds_a_bad_image_even_when_the_checksum_was_updated(write_recipe, capsys):
    recipe, _ = make_run(write_recipe, {})
    assert all(report.ok for report in validate_run(recipe.run_dir))
    assert main(["validate", str(recipe.run_dir)]) == 0

    # Rewrite one shard with a broken image and a matching record: only decoding can catch it.
    name = "naive/train-b0-00001"
    path = RunDir(recipe.run_dir).shard_file(name)
    table = pq.read_table(path)
    images = table.column("image").to_pylist()
    images[2] = {"bytes": b"\x89PNG broken", "path": None}
    table = table.set_column(
        table.schema.get_field_index("image"), "image", pa.array(images, type=table.schema.field("image").type)
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    path.write_bytes(buffer.getvalue())
    record = json.loads(RunDir(recipe.run_dir).record_file(name).read_text())
    record.update(sha256=sha256_file(path), bytes=path.stat().st_size)
    RunDir(recipe.run_dir).record_file(name).write_text(json.dumps(record))
    assert name in read_records(RunDir(recipe.run_dir))

    reports = validate_run(recipe.run_dir)
    assert [r.problems for r in reports] == [
        ["naive/0001/000003: image does not decode (UnidentifiedImageError) (shards/naive/train-b0-00001.parquet)"]
    ]
    assert main(["validate", str(recipe.run_dir)]) == 1
    assert "1 problems" in capsys.readouterr().out
    with pytest.raises(
        SynthsetError, match="validation failed for naive/train: naive/0001/000003: image does not decode"
    ):
        build_dataset(recipe.run_dir)


def test_validate_catches_a_same_size_byte_flip_and_names_the_file(write_recipe, capsys):
    recipe, _ = make_run(write_recipe, {})
    path = RunDir(recipe.run_dir).shard_file("naive/train-b0-00001")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # same size: only the checksum can tell
    path.write_bytes(bytes(data))
    expected = (
        f"shards/naive/train-b0-00001.parquet: sha256 mismatch; `synthset generate {recipe.run_dir}` makes it again"
    )
    assert [r.problems for r in validate_run(recipe.run_dir)] == [[expected]]
    assert main(["validate", str(recipe.run_dir)]) == 1
    assert expected in capsys.readouterr().out
    assert all(r.ok for r in validate_run(recipe.run_dir, fast=True))  # --fast checks sizes only
    with pytest.raises(SynthsetError, match="validation failed for naive/train: shards/naive/train-b0-00001.parquet"):
        build_dataset(recipe.run_dir)


def test_validate_fast_names_a_shard_whose_footer_is_corrupt_in_one_line(write_recipe, capsys):
    recipe, _ = make_run(write_recipe, {})
    path = RunDir(recipe.run_dir).shard_file("naive/train-b0-00001")
    data = bytearray(path.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little")
    data[len(data) - 8 - footer] ^= 0xFF  # the first byte of the Parquet footer (thrift): same size, unreadable
    path.write_bytes(bytes(data))
    expected = (
        "shards/naive/train-b0-00001.parquet: not a readable Parquet file (Couldn't deserialize thrift: "
        f"TProtocolException: Invalid data); `synthset generate {recipe.run_dir}` makes it again"
    )
    assert [r.problems for r in validate_run(recipe.run_dir, fast=True)] == [[expected]]  # nothing else: no cascade
    capsys.readouterr()
    assert main(["validate", "--fast", str(recipe.run_dir)]) == 1
    captured = capsys.readouterr()
    assert expected in captured.out and "Traceback" not in captured.out + captured.err


def test_fewshot_draws_k_real_images_per_class_with_a_recorded_seed(write_recipe, tmp_path: Path):
    from test_lar import make_image_folder

    from synthset.run.paths import RunDir
    from synthset.run.shots import read_shots

    classes = tmp_path / "flowers.txt"
    classes.write_text("rose\ntulip\n")
    folder = make_image_folder(tmp_path / "real", {"rose": 5, "tulip": 3})
    changes = {
        "builder": "synth_fewshot",
        "classes": {"set": str(classes), "limit": None},
        "configs": [{"name": "custom_2shot", "strategy": "naive", "images_per_class": 2, "shots": 2}],
        "real_images": {"folder": str(folder)},
    }
    recipe, _ = make_run(write_recipe, changes)
    shots = read_shots(RunDir(recipe.run_dir), "custom_2shot")
    assert set(shots) == {0, 1} and all(len(ids) == 2 and len(set(ids)) == 2 for ids in shots.values())
    assert all(i.startswith("rose/") for i in shots[0]) and all(i.startswith("tulip/") for i in shots[1])
    plan_run(recipe)
    assert read_shots(RunDir(recipe.run_dir), "custom_2shot") == shots  # the draw is a function of the recipe
    dataset_dir, _ = build_dataset(recipe.run_dir)
    assert pq.read_table(dataset_dir / "real_shots.parquet").num_rows == 2

    changes["configs"][0].update(name="custom_4shot", shots=4)
    with pytest.raises(
        SynthsetError, match="custom_4shot needs 4 real images of class 'tulip', the real_images source has 3"
    ):
        plan_run(load_recipe(write_recipe(changes, "four.yaml")))
