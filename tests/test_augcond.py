"""Augmentation-conditioning: the arithmetic of each augmentation, the tiny unCLIP run, determinism, leakage."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from helpers import REPO, accelerate_launch_command, images_by_sample, shard_hashes
from PIL import Image
from test_lar import make_image_folder

from synthset.errors import SynthsetError
from synthset.generation import augment
from synthset.generation.augment import Augmentation, parse_cond_aug, parse_name
from synthset.generation.plan import plan_run
from synthset.generation.runner import generate_run
from synthset.recipe import load_recipe
from synthset.run.paths import PLAN_FILE, RunDir

ALL_AUGMENTATIONS = {
    "none": 1, "pixel_mixup": 1, "pixel_cutmix": 1, "embed_mixup": 1, "embed_cutmix+dropout": 1, "dropout": 1,
}  # fmt: skip


def test_embed_mixup_is_the_convex_combination():
    e1, e2 = torch.randn(16), torch.randn(16)
    for lam in (0.0, 0.3, 1.0):
        torch.testing.assert_close(augment.embed_mixup(e1, e2, lam), lam * e1 + (1 - lam) * e2)


@pytest.mark.parametrize("lam", [0.0, 0.25, 0.3, 0.74, 1.0])
def test_embed_cutmix_takes_the_first_dimensions_from_the_second(lam: float):
    d = 10
    e1, e2 = torch.zeros(d), torch.ones(d)
    cut = math.floor((1 - lam) * d)
    mixed = augment.embed_cutmix(e1, e2, lam)
    assert mixed.tolist() == [1.0] * cut + [0.0] * (d - cut)


def test_embed_dropout_rate_and_scale():
    generator = torch.Generator().manual_seed(0)
    e = torch.ones(1000)
    fractions = [float((augment.embed_dropout(e, 0.4, generator) == 0).float().mean()) for _ in range(200)]
    assert abs(np.mean(fractions) - 0.4) < 0.005
    kept = augment.embed_dropout(e, 0.4, generator)
    assert kept.unique().tolist() == pytest.approx([0.0, 1 / 0.6])


def test_pixel_mixes_match_lambda():
    black, white = Image.new("RGB", (300, 260), (0, 0, 0)), Image.new("RGB", (300, 260), (255, 255, 255))
    mixed, lam = augment.pixel_mix(black, white, "pixel_mixup", 1.0, seed=3)
    assert mixed.shape == (3, 224, 224)
    torch.testing.assert_close(mixed, torch.full_like(mixed, 1 - lam))  # lam * black + (1 - lam) * white
    mixed, lam = augment.pixel_mix(black, white, "pixel_cutmix", 1.0, seed=4)
    assert float((mixed == 1).float().mean()) == pytest.approx(1 - lam, abs=1e-6)  # the box's share is 1 - lam
    assert augment.pixel_mix(black, white, "pixel_cutmix", 1.0, seed=4)[1] == lam  # the seed decides


def test_cond_aug_names_round_trip():
    for name in ALL_AUGMENTATIONS:
        aug = parse_name(name, alpha=0.5, p=0.3)
        assert parse_cond_aug(aug.describe()) == aug
    assert parse_name("embed_cutmix+dropout", 1.0, 0.4).describe() == "embed_cutmix(alpha=1)+dropout(p=0.4)"
    assert parse_cond_aug("dropout(p=0.4)") == Augmentation("dropout", True, p=0.4)
    with pytest.raises(ValueError, match="unknown augmentation 'embed_shuffle'"):
        parse_name("embed_shuffle", 1.0, 0.4)


def augcond_recipe(write_recipe, tmp_path: Path, name: str = "aug", **config) -> Path:
    folder = tmp_path / "real"
    if not folder.exists():
        make_image_folder(folder, {"n01440764": 4, "n01443537": 3, "n01484850": 2})
    return write_recipe(
        {
            "name": name,
            "builder": "synth_imagenet_lt" if "fill_up" in config else "synth_imagenet",
            "configs": [{"name": "augcond", "strategy": "augcond", "images_per_class": 4, **config}],
            "generator": {"model": "synthset-testing:tiny-unclip", "guidance": 2.0, "width": 64, "height": 64},
            "real_images": {"folder": str(folder)},
        },
        f"{name}.yaml",
    )


def test_augcond_rows_record_images_augmentation_and_lambda(write_recipe, tmp_path: Path):
    path = augcond_recipe(
        write_recipe, tmp_path, augcond={"augmentations": ALL_AUGMENTATIONS, "prompt": "a photo of a {class_name}"}
    )
    recipe = load_recipe(path)
    plan_run(recipe)
    summary = generate_run(recipe.run_dir)
    assert summary.images_made == 12
    rows = [r for f in sorted((recipe.run_dir / "shards").rglob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    wnid = {0: "n01440764", 1: "n01443537", 2: "n01484850"}
    for row in rows:
        aug = parse_cond_aug(row["cond_aug"])
        assert row["strategy"] == "augcond" and row["prompt"] == f"a photo of a {row['class_name']}"
        assert all(i.startswith(wnid[row["label"]] + "/") for i in row["cond_images"])  # same class only
        assert len(row["cond_images"]) == (2 if aug.paired else 1)
        assert (row["cond_lambda"] is not None) == aug.paired
        if aug.paired:
            assert 0 <= row["cond_lambda"] <= 1
    assert len({parse_cond_aug(r["cond_aug"]).base for r in rows}) >= 4


def test_augcond_is_byte_identical_on_one_and_two_processes(write_recipe, tmp_path: Path):
    one = load_recipe(augcond_recipe(write_recipe, tmp_path, "one", augcond={"augmentations": ALL_AUGMENTATIONS}))
    plan_run(one)
    generate_run(one.run_dir)
    two = load_recipe(augcond_recipe(write_recipe, tmp_path, "two", augcond={"augmentations": ALL_AUGMENTATIONS}))
    plan_run(two)
    launched = subprocess.run(
        accelerate_launch_command(2, "generate", str(two.run_dir)),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert launched.returncode == 0, launched.stderr[-2000:]
    assert images_by_sample(two.run_dir) == images_by_sample(one.run_dir)
    assert shard_hashes(two.run_dir) == shard_hashes(one.run_dir)


def test_fewshot_conditioning_never_leaves_the_k_shots(write_recipe, tmp_path: Path):
    from synthset.run.shots import read_shots

    recipe = load_recipe(
        augcond_recipe(write_recipe, tmp_path, "fs", shots=2, augcond={"augmentations": ALL_AUGMENTATIONS})
    )
    plan_run(recipe)
    shots = read_shots(RunDir(recipe.run_dir), "augcond")
    plan = pq.read_table(recipe.run_dir / PLAN_FILE)
    for row in plan.to_pylist():
        assert set(row["cond_images"]) <= set(shots[row["label"]])

    # A plan that would condition on a real image outside the k shots is refused at generation.
    outside = next(
        i for i in sorted((tmp_path / "real" / "n01440764").iterdir()) if f"n01440764/{i.name}" not in shots[0]
    )
    rows = plan.to_pylist()
    rows[0]["cond_images"] = [f"n01440764/{outside.name}"] * len(rows[0]["cond_images"])
    pq.write_table(pa.Table.from_pylist(rows, schema=plan.schema), recipe.run_dir / PLAN_FILE, row_group_size=6)
    with pytest.raises(
        SynthsetError,
        match=rf"{rows[0]['sample_id']}: conditioning image 'n01440764/{outside.name}' is not in the pool",
    ):
        generate_run(recipe.run_dir)
    assert not list((recipe.run_dir / "shards").rglob("*.json"))  # the shard with the bad row was not recorded


def test_augcond_needs_an_unclip_pipeline_and_real_images(write_recipe, tmp_path: Path):
    recipe = load_recipe(augcond_recipe(write_recipe, tmp_path, "wrong"))
    recipe = recipe.model_copy(
        update={"generator": recipe.generator.model_copy(update={"model": "synthset-testing:tiny-sd"})}
    )
    plan_run(recipe)
    with pytest.raises(SynthsetError, match="generator.model: augcond needs an unCLIP image-variation pipeline"):
        generate_run(recipe.run_dir)
    with pytest.raises(SynthsetError, match="augcond needs real_images"):
        load_recipe(
            write_recipe({"configs": [{"name": "augcond", "strategy": "augcond", "images_per_class": 1}]}, "x.yaml")
        )


def test_authors_code_variant_runs_and_its_embed_cutmix_is_one_image(write_recipe, tmp_path: Path):
    from synthset.classes import load_class_set
    from synthset.generation.conditioning import Conditioner
    from synthset.generation.real_images import open_real_images
    from synthset.recipe import RealImagesSpec

    recipe = load_recipe(
        augcond_recipe(
            write_recipe,
            tmp_path,
            "authors",
            augcond={"augmentations": {"embed_cutmix+dropout": 1, "dropout": 1, "none": 1}, "variant": "authors_code"},
        )
    )
    plan_run(recipe)
    assert generate_run(recipe.run_dir).images_made == 12
    rows = [r for f in sorted((recipe.run_dir / "shards").rglob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    assert {r["cond_aug"] for r in rows} <= {
        "embed_cutmix(alpha=1)+dropout(p=0.4)@authors_code",
        "dropout(p=0.4)@authors_code",
        "none",
    }

    from diffusers import StableUnCLIPImg2ImgPipeline

    from synthset.testing import tiny_unclip_path

    pipe = StableUnCLIPImg2ImgPipeline.from_pretrained(tiny_unclip_path())
    source = open_real_images(RealImagesSpec(folder=tmp_path / "real"), load_class_set("imagenet-1k"))
    images = ["n01440764/000.png", "n01440764/001.png"]
    conditioner = Conditioner(pipe, source, {"c": {0: set(images)}})
    base = {"config": "c", "label": 0, "cond_images": images}
    cut, lam, mask = conditioner.row_embedding(
        {**base, "sample_id": "a", "seed": 4, "cond_aug": "embed_cutmix(alpha=1)@authors_code"}
    )
    single, _, _ = conditioner.row_embedding({**base, "sample_id": "b", "seed": 4, "cond_aug": "none"})
    assert 0 < lam < 1 and mask is None
    # the batch-axis cut leaves the first image's embedding as it is (encoded in a batch of two: float noise only)
    torch.testing.assert_close(cut, single, rtol=1e-5, atol=1e-6)
    paper, _, _ = conditioner.row_embedding({**base, "sample_id": "c", "seed": 4, "cond_aug": "embed_cutmix(alpha=1)"})
    assert (paper - single).abs().max() > 1e-2
    dropped, _, mask = conditioner.row_embedding(
        {**base, "sample_id": "d", "seed": 4, "cond_aug": "dropout(p=0.4)@authors_code"}
    )
    assert torch.equal(dropped, single) and mask.shape == (2 * single.shape[-1],)  # the mask waits for noising
    assert 0.2 < float((mask == 0).float().mean()) < 0.6


def test_shard_names_of_a_one_augmentation_plan(write_recipe, tmp_path: Path):
    """Every row of a shard has the same cond_aug: its statistics must not be taken for the shard's name."""
    from synthset.run.plan import open_plan, plan_shard_names

    recipe = load_recipe(augcond_recipe(write_recipe, tmp_path, "single", augcond={"augmentations": {"dropout": 1}}))
    plan_run(recipe)
    plan = open_plan(RunDir(recipe.run_dir))
    shard_column = pq.read_table(RunDir(recipe.run_dir).plan_file, columns=["shard"]).column(0).to_pylist()
    expected = list(dict.fromkeys(shard_column))
    assert plan_shard_names(plan) == expected and all(name.startswith("augcond/") for name in expected)
