"""The ImageNet-LT leak guard: a fill-up conditions only on images of its long-tail train list, provably."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_lar import make_image_folder

from synthset.errors import SynthsetError
from synthset.fsutil import sha256_file
from synthset.generation.plan import plan_run
from synthset.generation.pools import image_key
from synthset.generation.runner import generate_run
from synthset.recipe import load_recipe
from synthset.run.paths import PLAN_FILE, POOL_FILE

WNIDS = ["n01440764", "n01443537", "n01484850"]
ALL = {"none": 1, "pixel_mixup": 1, "embed_mixup+dropout": 1, "embed_cutmix+dropout": 1, "dropout": 1}


def lt_setup(write_recipe, tmp_path: Path, listed: dict[str, list[int]], name: str = "lt", target: int = 6) -> Path:
    """Real images: 6, 5, 4 per class in a folder (like full ImageNet); the LT list names only some of them."""
    folder = tmp_path / "imagenet-train"
    if not folder.exists():
        make_image_folder(folder, dict(zip(WNIDS, [6, 5, 4], strict=True)))
    lines = [f"train/{WNIDS[c]}/{i:03d}.png {c}" for c, wnid in enumerate(WNIDS) for i in listed.get(wnid, [])]
    train_list = tmp_path / f"{name}_train.txt"
    train_list.write_text("\n".join(lines) + "\n")
    return write_recipe(
        {
            "name": name,
            "builder": "synth_imagenet_lt",
            "configs": [
                {
                    "name": "augcond",
                    "strategy": "augcond",
                    "fill_up": {"train_list": str(train_list), "target": target},
                    "augcond": {"augmentations": ALL, "prompt": "{synonyms}"},
                }
            ],
            "generator": {"model": "synthset-testing:tiny-unclip", "guidance": 2.0, "width": 64, "height": 64},
            "real_images": {"folder": str(folder)},
        },
        f"{name}.yaml",
    )


LISTED = {"n01440764": [1, 4], "n01443537": [0], "n01484850": [0, 2, 3]}


def test_fill_up_conditions_only_on_the_train_list_and_records_it(write_recipe, tmp_path: Path):
    path = lt_setup(write_recipe, tmp_path, LISTED)
    recipe = load_recipe(path)
    plan_run(recipe)
    listed_ids = {c: {f"{WNIDS[c]}/{i:03d}.png" for i in LISTED[WNIDS[c]]} for c in range(3)}
    plan = pq.read_table(recipe.run_dir / PLAN_FILE).to_pylist()
    assert len(plan) == (6 - 2) + (6 - 1) + (6 - 3)
    for row in plan:
        assert set(row["cond_images"]) <= listed_ids[row["label"]], row["sample_id"]
    assert plan[0]["prompt"] == "tench, Tinca tinca"  # paper B's LT prompt: the full synonym string
    # Two-image augmentations of a one-image class pair the image with itself: nothing else is allowed.
    assert {i for r in plan if r["label"] == 1 for i in r["cond_images"]} == {"n01443537/000.png"}

    pools = pq.read_table(recipe.run_dir / POOL_FILE).to_pylist()
    assert [(p["config"], p["label"], p["source"]) for p in pools] == [("augcond", c, "train_list") for c in range(3)]
    digest = sha256_file(tmp_path / "lt_train.txt")
    lines = {line.rsplit(maxsplit=1)[0] for line in (tmp_path / "lt_train.txt").read_text().splitlines()}
    for pool in pools:
        assert set(pool["real_ids"]) == listed_ids[pool["label"]]
        assert pool["list_sha256"] == digest
        assert set(pool["list_entries"]) <= lines
        for real_id, entry in zip(pool["real_ids"], pool["list_entries"], strict=True):
            assert entry.endswith(real_id)  # train/<wnid>/<file> <-> <wnid>/<file>
    # The proof a reader can run: every conditioning id is in its class's recorded pool.
    by_class = {(p["config"], p["label"]): set(p["real_ids"]) for p in pools}
    assert all(set(r["cond_images"]) <= by_class[(r["config"], r["label"])] for r in plan)

    # The pools are published beside the data, so the proof needs nothing but the dataset directory.
    from synthset.builders.assemble import build_dataset

    generate_run(recipe.run_dir)
    dataset_dir, _ = build_dataset(recipe.run_dir)
    assert pq.read_table(dataset_dir / POOL_FILE).to_pylist() == pools


def test_generation_refuses_a_row_conditioned_outside_the_train_list(write_recipe, tmp_path: Path):
    recipe = load_recipe(lt_setup(write_recipe, tmp_path, LISTED, "tamper"))
    plan_run(recipe)
    table = pq.read_table(recipe.run_dir / PLAN_FILE)
    rows = table.to_pylist()
    rows[0]["cond_images"] = ["n01440764/000.png"] * len(rows[0]["cond_images"])  # in the folder, not in the list
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), recipe.run_dir / PLAN_FILE, row_group_size=6)
    with pytest.raises(SynthsetError, match=r"conditioning image 'n01440764/000.png' is not in the pool"):
        generate_run(recipe.run_dir)


def test_a_listed_image_missing_from_the_source_stops_the_plan(write_recipe, tmp_path: Path):
    path = lt_setup(write_recipe, tmp_path, {**LISTED, "n01443537": [0, 9]}, "missing")
    recipe = load_recipe(path)
    with pytest.raises(SynthsetError) as error:
        plan_run(recipe)
    assert str(error.value) == (
        f"fill_up.train_list: {tmp_path / 'missing_train.txt'}:4: train/n01443537/009.png (label 1) is not in "
        f"real_images (folder {str(tmp_path / 'imagenet-train')!r}); conditioning images must come from the "
        "long-tail train list"
    )
    assert not recipe.run_dir.exists()  # refused before anything was written


def test_a_class_without_listed_images_cannot_be_conditioned(write_recipe, tmp_path: Path):
    recipe = load_recipe(lt_setup(write_recipe, tmp_path, {"n01440764": [0], "n01484850": [1]}, "empty"))
    with pytest.raises(SynthsetError, match=r"class 'goldfish' \(label 1\) has no image in .*nothing may condition"):
        plan_run(recipe)


def test_recipes_that_would_mix_pools_are_refused(write_recipe, tmp_path: Path):
    path = lt_setup(write_recipe, tmp_path, LISTED, "mixed")
    import yaml

    data = yaml.safe_load(path.read_text())
    data["configs"][0]["shots"] = 1
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SynthsetError, match="configs\\[0\\]: a fill_up config conditions on its train list"):
        load_recipe(path)
    del data["configs"][0]["shots"]
    data["configs"][0]["augcond"]["condition_on"] = "train_split"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SynthsetError, match="augcond.condition_on is for few-shot configs"):
        load_recipe(path)


def test_train_list_matches_a_datasets_source_by_file_name(tmp_path: Path):
    import datasets
    from PIL import Image

    from synthset.classes import load_class_set
    from synthset.generation.pools import train_list_pools
    from synthset.generation.real_images import open_real_images
    from synthset.recipe import FillUpSpec, RealImagesSpec, recipe_from_dict

    files = []
    for c, wnid in enumerate(WNIDS[:2]):
        for i in range(3):
            path = tmp_path / "img" / f"{wnid}_{i}_{wnid}.png"  # archives that append the wnid to the name
            path.parent.mkdir(exist_ok=True)
            Image.new("RGB", (8, 8), (c * 90, i * 60, 0)).save(path)
            files.append((str(path), c))
    ds = datasets.Dataset.from_dict(
        {"image": [f for f, _ in files], "label": [c for _, c in files]},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=1000)}),
    )
    ds.save_to_disk(tmp_path / "real")
    train_list = tmp_path / "list.txt"
    train_list.write_text(f"train/{WNIDS[0]}/{WNIDS[0]}_2.JPEG 0\ntrain/{WNIDS[1]}/{WNIDS[1]}_0.JPEG 1\n")
    classes = load_class_set("imagenet-1k")
    source = open_real_images(RealImagesSpec(dataset=str(tmp_path / "real")), classes)
    recipe = recipe_from_dict(
        {
            "name": "x",
            "builder": "synth_imagenet_lt",
            "configs": [{"name": "a", "strategy": "augcond", "fill_up": {"train_list": str(train_list)}}],
            "generator": {"model": "m"},
            "real_images": {"dataset": str(tmp_path / "real")},
        },
        "x",
    )
    rows = train_list_pools(recipe.configs[0], FillUpSpec(train_list=train_list), source, classes, classes[:2])
    assert [r.real_ids for r in rows] == [[f"{tmp_path / 'real'}:train:2"], [f"{tmp_path / 'real'}:train:3"]]
    assert image_key("n01440764_10026_n01440764.JPEG", "n01440764") == image_key("a/n01440764_10026.JPEG", "n01440764")
