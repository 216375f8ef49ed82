"""Synthesized runs at the real file count, fast: planned as usual, shards written by the real ShardWriter.

A 6x ImageNet version is ~12k Parquet files; making that many shards with even the tiny diffusion
pipeline would take far too long for a test. Everything but the pixels is real here: the recipe is planned
by `plan_run`, every planned shard is written by `synthset.generation.writer.ShardWriter` (encoded, renamed,
hashed and recorded exactly as `synthset generate` does) with the plan's rows and solid-colour 8x8 images,
then `build_dataset` and `write_card` run unchanged. Used by tests/test_hub_scale.py and the bench.
"""

from __future__ import annotations

import colorsys
import math
from pathlib import Path

import yaml


def synth_recipe(root: Path, name: str, shards: int, classes: int = 12) -> Path:
    """A few-shot recipe of `classes` custom classes and `shards` one-image shards (one folder-band)."""
    class_list = root / f"{name}-classes.txt"
    class_list.write_text("".join(f"class {i}\n" for i in range(classes)))
    data = {
        "name": name,
        "seed": 1,
        "builder": "synth_fewshot",
        "output_dir": str(root / "runs"),
        "classes": {"set": str(class_list)},
        "configs": [{"name": "custom_16shot", "strategy": "naive", "images_per_class": math.ceil(shards / classes)}],
        "generator": {"model": "synthset-testing:tiny-sd", "scheduler": "ddim", "steps": 1, "width": 8, "height": 8},
        "storage": {"format": "png", "shard_size": 1, "row_group_size": 1},
    }
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def write_shards(run_dir: Path, noise: bool = False) -> int:
    """Write every planned shard of a run with the real ShardWriter; -> shards written.

    Images are solid colours; with `noise`, seeded random pixels instead, which PNG cannot shrink (so the
    data outweighs the files' metadata, as a real dataset's does)."""

    from synthset.generation.writer import ShardWriter, WriterIdentity
    from synthset.run.classes_table import read_label_names
    from synthset.run.lock import read_lock
    from synthset.run.paths import RunDir
    from synthset.run.plan import open_plan, plan_shard_names, read_planned_shard
    from synthset.run.records import compact_manifest
    from synthset.run.schema import dataset_features

    run = RunDir(run_dir)
    lock = read_lock(run)
    spec = lock.recipe.generator
    constant = {
        "model": spec.model,
        "model_revision": lock.model.revision,
        "scheduler": spec.scheduler,
        "steps": spec.steps,
        "guidance": spec.guidance,
        "width": spec.width,
        "height": spec.height,
        "attention": "sdpa",
        "dtype": "float32",
        "batch_size": spec.batch_size,
        "clip_score": None,
    }
    features = dataset_features(read_label_names(run))
    identity = WriterIdentity("synthruns", rank=0, world_size=1)
    writer = ShardWriter(run, features, lock.recipe.storage, lock.generation_key, identity)
    plan = open_plan(run)
    names = plan_shard_names(plan)
    try:
        for i, name in enumerate(names):
            shard = read_planned_shard(plan, i, name)
            rows = shard.rows.to_pylist()
            writer.start_shard(shard.name, shard.sample_ids, shard.digest)
            images = [_image(row["seed"], spec.width, spec.height, noise) for row in rows]
            writer.add_batch([{**row, **constant} for row in rows], images)
            writer.finish_shard()
    finally:
        writer.close()
    compact_manifest(run)  # as generate does when the last shard is done
    return len(names)


def _image(seed: int, width: int, height: int, noise: bool):
    import numpy as np
    from PIL import Image

    if noise:
        pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
        return Image.fromarray(pixels)
    red, green, blue = colorsys.hsv_to_rgb((seed % 997) / 997, 0.8, 0.9)
    return Image.new("RGB", (width, height), (int(255 * red), int(255 * green), int(255 * blue)))


def synthesize_run(root: Path, name: str, shards: int, classes: int = 12, card: bool = True) -> Path:
    """Plan, write, build and (optionally) card a synthesized run; -> its run directory."""
    import contextlib
    import io

    from synthset.builders.assemble import build_dataset
    from synthset.cards import write_card
    from synthset.generation.plan import plan_run
    from synthset.recipe import load_recipe

    recipe = load_recipe(synth_recipe(root, name, shards, classes))
    with contextlib.redirect_stderr(io.StringIO()):  # progress bars of 12k shards
        plan_run(recipe)
        write_shards(recipe.run_dir)
        build_dataset(recipe.run_dir)
        if card:
            write_card(recipe.run_dir, license="apache-2.0")
    return Path(recipe.run_dir)
