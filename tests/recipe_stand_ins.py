"""Stand-ins for what a shipped recipe names but a test machine lacks: the model, the real images, the LT list.

`stand_in(recipe, tmp)` keeps everything a recipe says (strategies, augmentations, prompts, shot draws, label
rules, splits, the quality policy) and swaps only: the generator for the tiny model of the same kind, the
quality gate's checker and CLIP for the tiny ones, `classes.limit` for three
classes, the real-image source for a tiny fixture with the same layout (an image folder, a Parquet dataset with
a label column, COCO-style annotations or VOC-style masks, under the recipe's split), and the fill-up train
list for one naming the fixture's images. The tiny model never appears in a user's run: only here.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from synthset.classes import ClassInfo, load_class_set, select_classes
from synthset.recipe import Recipe

MODEL_STAND_INS = {
    "stabilityai/stable-diffusion-2-1-unclip": "synthset-testing:tiny-unclip",
    "stable-diffusion-v1-5/stable-diffusion-v1-5": "synthset-testing:tiny-sd",
    "synthset-testing:tiny-unclip": "synthset-testing:tiny-unclip",
    "synthset-testing:tiny-sd": "synthset-testing:tiny-sd",
}
PER_CLASS = 34  # 16 shots from the first half of a class needs 32 images
QUALITY_STAND_INS = {  # the quality gate's models (recipe `quality:`)
    "CompVis/stable-diffusion-safety-checker": "synthset-testing:tiny-safety-checker",
    "ViT-B-32": "synthset-testing:tiny-clip",
}


def _png(array: np.ndarray) -> dict:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def _pixels(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8)


def _write_splits(dataset, root: Path, split: str) -> Path:
    """Parquet files laid out as a Hub repo, so `load_dataset(root, split=split)` works (also `a+b+c`)."""
    (root / "data").mkdir(parents=True)
    parts = split.split("+")
    for i, part in enumerate(parts):
        shard = dataset.shard(len(parts), i, contiguous=True)
        shard.to_parquet(str(root / "data" / f"{part}-00000-of-00001.parquet"))
    return root


def _folder(root: Path, selected: list[ClassInfo], by_name: bool) -> Path:
    for info in selected:
        folder = root / (info.label_name.replace(" ", "_") if by_name or not info.wnid else info.wnid)
        folder.mkdir(parents=True)
        for i in range(PER_CLASS):
            stem = f"{info.wnid}_{i}" if info.wnid else f"image_{i:04d}"
            Image.fromarray(_pixels(info.label * 1000 + i)).save(folder / f"{stem}.png")
    return root


def _dataset(spec, selected: list[ClassInfo], classes: list[ClassInfo], root: Path) -> Path:
    import datasets

    rows = [(info, i) for info in selected for i in range(PER_CLASS)]
    images = [_png(_pixels(info.label * 1000 + i)) for info, i in rows]
    rule = spec.label_from
    if rule is None:
        features = datasets.Features(
            {"image": datasets.Image(), spec.label_column: datasets.ClassLabel(names=[c.label_name for c in classes])}
        )
        data = {"image": images, spec.label_column: [info.label for info, _ in rows]}
    elif rule.objects is not None:  # COCO style: two annotations, the labelled one the larger
        objects = {
            rule.category: datasets.List(datasets.Value("string")),
            rule.area: datasets.List(datasets.Value("float64")),
        }
        features = datasets.Features({"image": datasets.Image(), rule.objects: objects})
        other = classes[-1].class_name
        data = {
            "image": images,
            rule.objects: [{rule.category: [other, info.class_name], rule.area: [5.0, 50.0]} for info, _ in rows],
        }
    else:  # VOC style: one instance of the class, a void border, background
        masks = []
        for info, _ in rows:
            objects = np.zeros((8, 8), dtype=np.uint8)
            labels = np.zeros((8, 8), dtype=np.uint8)
            objects[2:7, 2:7], labels[2:7, 2:7] = 1, info.label + 1
            objects[1, 2:7], labels[1, 2:7] = 255, 255
            masks.append((_png(objects), _png(labels)))
        features = datasets.Features(
            {"image": datasets.Image(), rule.instance_mask: datasets.Image(), rule.class_mask: datasets.Image()}
        )
        data = {
            "image": images,
            rule.instance_mask: [o for o, _ in masks],
            rule.class_mask: [c for _, c in masks],
        }
    return _write_splits(datasets.Dataset.from_dict(data, features=features), root, spec.split)


def stand_in(recipe: Recipe, tmp: Path) -> Recipe:
    """The recipe as shipped, with tiny stand-ins for its model, real images and train list."""
    classes = load_class_set(recipe.classes.set)
    limited = recipe.classes.model_copy(update={"limit": 3})
    selected = select_classes(classes, limited.subset, limited.limit, limited.set)
    generator = recipe.generator.model_copy(update={"model": MODEL_STAND_INS[recipe.generator.model]})
    update: dict = {"classes": limited, "generator": generator, "output_dir": tmp / "runs"}
    if recipe.quality is not None:
        quality = recipe.quality
        update["quality"] = quality.model_copy(
            update={
                "checker": QUALITY_STAND_INS.get(quality.checker or "", quality.checker),
                "clip_model": QUALITY_STAND_INS.get(quality.clip_model or "", quality.clip_model),
                "clip_pretrained": None,
            }
        )
    real = recipe.real_images
    if real is not None:
        if real.folder is not None:
            folder = _folder(tmp / "real", selected, by_name=real.match == "name")
            update["real_images"] = real.model_copy(update={"folder": folder})
        elif real.match == "name" and real.label_from is None:  # an image folder read by `datasets`
            folder = _folder(tmp / "real", selected, by_name=True)
            update["real_images"] = real.model_copy(update={"dataset": str(folder), "config": None})
        else:
            fixture = _dataset(real, selected, classes, tmp / "real")
            update["real_images"] = real.model_copy(update={"dataset": str(fixture), "config": None})
    configs = []
    for config in recipe.configs:
        if config.fill_up is not None:
            listed = tmp / "lt_train.txt"
            lines = [f"train/{i.wnid}/{i.wnid}_{n}.JPEG {i.label}" for i in selected for n in range(0, PER_CLASS, 3)]
            listed.write_text("\n".join(lines) + "\n")
            config = config.model_copy(update={"fill_up": config.fill_up.model_copy(update={"train_list": listed})})
        configs.append(config)
    update["configs"] = configs
    return recipe.model_copy(update=update)
