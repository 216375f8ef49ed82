"""DA-Fusion's four benchmarks as real-image sources: class sets, the largest-object label rule (COCO, PASCAL
VOC) through `datasets`, Caltech101's folder names, and the few-shot draws and conditioning pools made from them."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from synthset.classes import load_class_set, normalized_name
from synthset.classes.dafusion import dafusion_split
from synthset.classes.labeling import largest_instance_class
from synthset.generation.real_images import open_real_images
from synthset.recipe import LargestObjectSpec, RealImagesSpec
from synthset.training.config import DataSource
from synthset.training.data import load_split


def _png(array: np.ndarray) -> dict:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def _rgb(seed: int) -> dict:
    return _png(np.random.default_rng(seed).integers(0, 255, (16, 16, 3), dtype=np.uint8))


def test_dafusion_class_sets():
    coco, voc = load_class_set("coco"), load_class_set("pascal_voc")
    caltech, flowers = load_class_set("caltech101_dafusion"), load_class_set("flowers102_dafusion")
    assert (len(coco), len(voc), len(caltech), len(flowers)) == (80, 20, 102, 102)
    assert [coco[i].class_name for i in (0, 9, 79)] == ["person", "traffic light", "toothbrush"]
    assert [voc[i].class_name for i in (0, 10, 19)] == ["airplane", "dining table", "television"]
    assert [caltech[i].class_name for i in (4, 37, 38, 57)] == ["background google", "faces", "faces easy", "leopards"]
    assert [c.class_name for c in caltech] == sorted(c.class_name for c in caltech)
    assert flowers[15].class_name == "globe-flower" and flowers[87].class_name == "cyclamen"  # trailing space trimmed
    assert normalized_name("BACKGROUND_Google") == "background google"


# COCO: annotations as a struct of lists with string names (like the Hub's coco-2017 exports), area = COCO area.
COCO_ROWS = [
    ({"category_name": ["person", "dog"], "area": [50.0, 900.5]}, 16),  # the dog is larger
    ({"category_name": ["cat", "car", "cat"], "area": [30.0, 30.0, 10.0]}, 15),  # a tie: the first one wins
    ({"category_name": [], "area": []}, -1),  # no annotation: left out
    ({"category_name": ["toothbrush"], "area": [1.0]}, 79),
    ({"category_name": ["bus", "person"], "area": [400.0, 40.0]}, 5),
]


def coco_fixture(root: Path) -> Path:
    import datasets

    features = datasets.Features(
        {
            "image": datasets.Image(),
            "annotations": {
                "category_name": datasets.List(datasets.Value("string")),
                "area": datasets.List(datasets.Value("float64")),
            },
        }
    )
    rows = {"image": [_rgb(i) for i in range(len(COCO_ROWS))], "annotations": [a for a, _ in COCO_ROWS]}
    return hub_layout(datasets.Dataset.from_dict(rows, features=features), root)


def hub_layout(dataset, root: Path) -> Path:
    """A dataset laid out as a Hub repo is (Parquet under data/), read by datasets.load_dataset like a hub id."""
    (root / "data").mkdir(parents=True)
    dataset.to_parquet(str(root / "data" / "train-00000-of-00001.parquet"))
    return root


def test_coco_images_take_their_largest_objects_class(tmp_path: Path):
    path = coco_fixture(tmp_path / "coco")
    spec = LargestObjectSpec(objects="annotations", category="category_name", area="area")
    source = open_real_images(RealImagesSpec(dataset=str(path), match="name", label_from=spec), load_class_set("coco"))
    labelled = {int(i.rsplit(":", 1)[1]): label for label, ids in source.ids_by_label.items() for i in ids}
    assert labelled == {row: label for row, (_, label) in enumerate(COCO_ROWS)}
    # The probe labels the same rows the same way, leaving out the image without an annotation.
    split = load_split(DataSource(path=str(path), classes="coco", label_from=spec), "real")
    assert split.labels.tolist() == [16, 15, 79, 5] and split.rows().tolist() == [0, 1, 3, 4]
    assert split.position_of() == {0: 0, 1: 1, 3: 2, 4: 3} and split.num_classes == 80


def test_coco_list_of_structs_with_classlabel_categories(tmp_path: Path):
    import datasets

    from synthset.classes.labeling import largest_object_labels

    names = [c.class_name for c in load_class_set("coco")]
    features = datasets.Features(
        {"objects": datasets.List({"category": datasets.ClassLabel(names=names), "area": datasets.Value("float32")})}
    )
    ds = datasets.Dataset.from_dict(
        {"objects": [[{"category": 2, "area": 5.0}, {"category": 7, "area": 9.0}], []]}, features=features
    )
    spec = LargestObjectSpec(objects="objects")
    assert largest_object_labels(ds, spec, load_class_set("coco"), "name", "x").tolist() == [7, -1]
    assert largest_object_labels(ds, spec, load_class_set("coco"), "index", "x").tolist() == [7, -1]


def voc_masks(instances: list[tuple[slice, slice, int, int]], size: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """SegmentationObject and SegmentationClass masks: background 0, void border 255, instances with classes."""
    objects = np.zeros((size, size), dtype=np.uint8)
    classes = np.zeros((size, size), dtype=np.uint8)
    for rows, cols, instance, voc_class in instances:
        objects[rows, cols] = instance
        classes[rows, cols] = voc_class
        objects[rows.start, cols] = 255  # a void border row on top of each object
        classes[rows.start, cols] = 255
    return objects, classes


def test_voc_label_is_the_largest_instances_class(tmp_path: Path):
    import datasets

    cases = [
        # a big dog (VOC class 12 -> label 11) and a small person (15 -> 14)
        (voc_masks([(slice(0, 12), slice(0, 12), 1, 12), (slice(14, 18), slice(14, 18), 2, 15)]), 11),
        # the larger instance is the second one: a sofa (18 -> 17)
        (voc_masks([(slice(0, 4), slice(0, 4), 1, 9), (slice(6, 19), slice(3, 19), 2, 18)]), 17),
        # an airplane (1 -> 0) only
        (voc_masks([(slice(2, 10), slice(2, 10), 1, 1)]), 0),
    ]
    for (objects, classes), label in cases:
        assert largest_instance_class(objects, classes) == label
    features = datasets.Features(
        {"image": datasets.Image(), "object_mask": datasets.Image(), "class_mask": datasets.Image()}
    )
    rows = {
        "image": [_rgb(i) for i in range(len(cases))],
        "object_mask": [_png(o) for (o, _), _ in cases],
        "class_mask": [_png(c) for (_, c), _ in cases],
    }
    hub_layout(datasets.Dataset.from_dict(rows, features=features), tmp_path / "voc")
    spec = LargestObjectSpec(instance_mask="object_mask", class_mask="class_mask")
    source = open_real_images(
        RealImagesSpec(dataset=str(tmp_path / "voc"), label_from=spec), load_class_set("pascal_voc")
    )
    assert {label: len(ids) for label, ids in source.ids_by_label.items()} == {11: 1, 17: 1, 0: 1}
    split = load_split(DataSource(path=str(tmp_path / "voc"), classes="pascal_voc", label_from=spec), "real")
    assert split.labels.tolist() == [11, 17, 0]


def test_an_image_with_only_background_and_void_has_no_label():
    objects = np.zeros((4, 4), dtype=np.uint8)
    objects[0] = 255
    assert largest_instance_class(objects, objects) == -1


def caltech_folder(root: Path, counts: dict[str, int]) -> Path:
    for folder, n in counts.items():
        (root / folder).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((8, 8, 3), i * 10, dtype=np.uint8)).save(root / folder / f"image_{i:04d}.jpg")
    return root


def test_caltech_folder_names_match_dafusions_class_names(tmp_path: Path):
    root = caltech_folder(tmp_path / "101_ObjectCategories", {"BACKGROUND_Google": 3, "Faces_easy": 2, "accordion": 4})
    classes = load_class_set("caltech101_dafusion")
    source = open_real_images(RealImagesSpec(folder=root, match="name"), classes)
    assert {classes[label].class_name: len(ids) for label, ids in source.ids_by_label.items()} == {
        "background google": 3,
        "faces easy": 2,
        "accordion": 4,
    }
    # Through `datasets` (an imagefolder: its ClassLabel has the folder names), the probe maps the same way.
    split = load_split(DataSource(path=str(root), classes="caltech101_dafusion"), "real")
    assert sorted(set(split.labels.tolist())) == [0, 4, 38]


def fewshot_recipe(write_recipe, tmp_path: Path, name: str, **config) -> Path:
    root = tmp_path / "caltech"
    if not root.exists():
        caltech_folder(root, {"accordion": 6, "airplanes": 5, "anchor": 3})
    return write_recipe(
        {
            "name": name,
            "builder": "synth_fewshot",
            "classes": {"set": "caltech101_dafusion", "limit": 3},
            "configs": [
                {
                    "name": "caltech101_dafusion_2shot_t2",
                    "strategy": "augcond",
                    "images_per_class": 4,
                    "shots": 2,
                    **config,
                }
            ],
            "generator": {"model": "synthset-testing:tiny-unclip", "guidance": 10.0, "width": 64, "height": 64},
            "real_images": {"folder": str(root), "match": "name"},
        },
        f"{name}.yaml",
    )


@pytest.mark.parametrize("condition_on", ["shots", "train_split"])
def test_dafusion_shots_and_the_conditioning_pool(write_recipe, tmp_path: Path, condition_on: str):
    from synthset.generation.plan import plan_run
    from synthset.recipe import load_recipe
    from synthset.run.paths import PLAN_FILE, POOL_FILE, RunDir
    from synthset.run.shots import read_shots

    recipe = load_recipe(
        fewshot_recipe(
            write_recipe,
            tmp_path,
            condition_on,
            shot_draw={"trial": 2, "halves": True},
            augcond={
                "augmentations": {"embed_mixup+dropout": 1},
                "condition_on": condition_on,
                "prompt": "a photo of a {class_name}",
            },
        )
    )
    plan_run(recipe)
    classes = load_class_set("caltech101_dafusion")
    source = open_real_images(recipe.real_images, classes)
    splits = dafusion_split(source.ids_by_label, len(classes), 2, True)
    shots = read_shots(RunDir(recipe.run_dir), "caltech101_dafusion_2shot_t2")
    assert shots == {label: splits[label].shots(2) for label in range(3)}
    recorded = pq.read_table(recipe.run_dir / "real_shots.parquet").to_pylist()
    assert {r["seed"] for r in recorded} == {2}  # the DA-Fusion trial
    pools = {p["label"]: p for p in pq.read_table(recipe.run_dir / POOL_FILE).to_pylist()}
    for label in range(3):
        expected = splits[label].shots(2) if condition_on == "shots" else splits[label].train
        assert pools[label]["source"] == condition_on and pools[label]["real_ids"] == expected
        assert not set(pools[label]["real_ids"]) & set(splits[label].val)  # never the probe's validation half
    for row in pq.read_table(recipe.run_dir / PLAN_FILE).to_pylist():
        assert set(row["cond_images"]) <= set(pools[row["label"]]["real_ids"])
        assert row["prompt"] == f"a photo of a {classes[row['label']].class_name}"


def test_a_class_with_too_few_training_images_for_k(write_recipe, tmp_path: Path):
    from synthset.errors import SynthsetError
    from synthset.generation.plan import plan_run
    from synthset.recipe import load_recipe

    recipe = load_recipe(fewshot_recipe(write_recipe, tmp_path, "few", shots=2, shot_draw={"trial": 0, "halves": True}))
    recipe = recipe.model_copy(
        update={"configs": [recipe.configs[0].model_copy(update={"shots": 3})]}
    )  # anchor has 3 images: a training half of 2
    with pytest.raises(SynthsetError, match="needs 3 real images of class 'anchor', the training half of the real"):
        plan_run(recipe)
