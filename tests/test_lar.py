"""Label Ambiguity Resolution on the tiny open_clip model, checked against a direct open_clip computation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from synthset.classes import ClassInfo, load_class_set
from synthset.errors import SynthsetError
from synthset.generation.lar import candidate_text, load_clip, resolve_class_meaning, wordnet_meanings
from synthset.generation.plan import plan_run
from synthset.generation.real_images import open_real_images
from synthset.recipe import LARSpec, RealImagesSpec, load_recipe

CRANE_BIRD, CRANE_MACHINE = 134, 517
TINY_CLIP = LARSpec(clip_model="synthset-testing:tiny-clip", images_per_class=3)


def make_image_folder(root: Path, per_class: dict[str, int], corrupt: dict[str, int] | None = None) -> Path:
    """<root>/<wnid>/NNN.png of seeded noise, plus undecodable files where asked."""
    rng = np.random.default_rng(0)
    corrupt = corrupt or {}
    for key in sorted({*per_class, *corrupt}):
        folder = root / key
        folder.mkdir(parents=True)
        for i in range(per_class.get(key, 0)):
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
        for i in range(corrupt.get(key, 0)):
            (folder / f"000-broken-{i}.jpg").write_bytes(b"not an image")
    return root


def imagenet() -> list[ClassInfo]:
    return load_class_set("imagenet-1k")


def test_candidates_are_synsets_sharing_the_name():
    classes = imagenet()
    bird, machine = classes[CRANE_BIRD], classes[CRANE_MACHINE]
    assert wordnet_meanings(bird)[0].startswith("large long-necked wading bird")
    assert wordnet_meanings(machine)[0].startswith("lifts and moves heavy objects")
    assert set(wordnet_meanings(bird)) == set(wordnet_meanings(machine))
    assert wordnet_meanings(classes[0]) == [classes[0].gloss]  # tench: one meaning


def test_scored_pick_is_the_highest_mean_cosine_similarity(tmp_path: Path):
    import open_clip

    classes = imagenet()
    folder = make_image_folder(tmp_path / "real", {"n02012849": 3}, corrupt={"n02012849": 1})
    source = open_real_images(RealImagesSpec(folder=folder), classes)
    result = resolve_class_meaning(classes[CRANE_BIRD], source, lambda: load_clip(TINY_CLIP), 3)
    assert result.source == "scored"
    assert source.decode_failures == 1  # the broken file sorts first, is skipped, and three good ones are used

    # The same numbers straight from open_clip: mean over images of cosine(image, "crane, <meaning>").
    scorer = load_clip(TINY_CLIP)
    model, _, preprocess = open_clip.create_model_and_transforms(scorer.name)
    tokenizer = open_clip.get_tokenizer(scorer.name)
    files = sorted((folder / "n02012849").glob("*.png"))
    with torch.no_grad():
        images = model.encode_image(torch.stack([preprocess(Image.open(f).convert("RGB")) for f in files]))
        texts = model.encode_text(tokenizer([candidate_text("crane", m) for m in result.candidates]))
    images = images / images.norm(dim=-1, keepdim=True)
    texts = texts / texts.norm(dim=-1, keepdim=True)
    expected = (images @ texts.T).numpy()  # 3 images x 2 candidates
    np.testing.assert_allclose(result.scores, expected.mean(axis=0), rtol=1e-5, atol=1e-6)
    assert result.meaning == result.candidates[int(np.argmax(expected.mean(axis=0)))]


def test_fallbacks(tmp_path: Path):
    classes = imagenet()
    folder = make_image_folder(tmp_path / "real", {"n01440764": 2}, corrupt={"n03126707": 2})
    source = open_real_images(RealImagesSpec(folder=folder), classes)

    def no_clip():
        raise AssertionError("CLIP must not load when nothing is scored")

    tench = resolve_class_meaning(classes[0], source, no_clip, 3)
    assert (tench.source, tench.meaning, tench.scores) == ("single", classes[0].gloss, None)
    # Only undecodable images for the crane machine: its own gloss, said so, and the failures counted.
    machine = resolve_class_meaning(classes[CRANE_MACHINE], source, no_clip, 3)
    assert (machine.source, machine.meaning) == ("no-real-images", classes[CRANE_MACHINE].gloss)
    assert source.decode_failures == 2
    unknown = ClassInfo(label=0, class_name="zorblax", label_name="zorblax")
    assert resolve_class_meaning(unknown, source, no_clip, 3).source == "no-candidates"


def test_real_images_from_a_datasets_source_by_index_and_by_name(tmp_path: Path):
    import datasets

    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)) for _ in range(4)]
    features = datasets.Features({"img": datasets.Image(), "y": datasets.ClassLabel(names=["goldfish", "tench"])})
    ds = datasets.Dataset.from_dict({"img": images, "y": [1, 0, 1, 0]}, features=features)
    ds.save_to_disk(str(tmp_path / "real"))
    classes = imagenet()
    by_name = open_real_images(
        RealImagesSpec(dataset=str(tmp_path / "real"), image_column="img", label_column="y", match="name"), classes
    )
    assert by_name.ids_for(0) == [f"{tmp_path / 'real'}:train:0", f"{tmp_path / 'real'}:train:2"]  # tench
    assert by_name.ids_for(1) == [f"{tmp_path / 'real'}:train:1", f"{tmp_path / 'real'}:train:3"]  # goldfish
    assert [im.image.size for im in by_name.images_for(0, 5)] == [(20, 20), (20, 20)]
    by_index = open_real_images(
        RealImagesSpec(dataset=str(tmp_path / "real"), image_column="img", label_column="y"), classes
    )
    assert len(by_index.ids_for(1)) == 2 and by_index.ids_for(1)[0].endswith(":0")
    with pytest.raises(SynthsetError, match=r"real_images: column 'image' not in"):
        open_real_images(RealImagesSpec(dataset=str(tmp_path / "real"), label_column="y"), classes)


def test_plan_records_lar_in_classes_parquet_and_reuses_it(write_recipe, tmp_path: Path):
    folder = make_image_folder(tmp_path / "real", {"n02012849": 2, "n03126707": 2})
    recipe = load_recipe(
        write_recipe(
            {
                "classes": {"set": "imagenet-1k", "subset": ["tench", "n02012849", "n03126707"], "limit": None},
                "configs": [{"name": "lar", "strategy": "lar", "images_per_class": 2}],
                "lar": {"clip_model": "synthset-testing:tiny-clip", "images_per_class": 2},
                "real_images": {"folder": str(folder)},
            }
        )
    )
    summary = plan_run(recipe)
    assert summary.lar_sources == {"single": 1, "scored": 2}
    rows = {r["label"]: r for r in pq.read_table(recipe.run_dir / "classes.parquet").to_pylist() if r["selected"]}
    assert set(rows) == {0, CRANE_BIRD, CRANE_MACHINE}
    assert rows[CRANE_BIRD]["lar_source"] == "scored" and len(rows[CRANE_BIRD]["lar_scores"]) == 2
    assert rows[CRANE_BIRD]["lar_meaning"] in rows[CRANE_BIRD]["lar_candidates"]
    plan = pq.read_table(recipe.run_dir / "plan.parquet").to_pylist()
    crane_rows = [r for r in plan if r["label"] == CRANE_BIRD]
    assert crane_rows[0]["lar_meaning"] == rows[CRANE_BIRD]["lar_meaning"]
    assert crane_rows[0]["prompt"] == f"a photo of a crane, {rows[CRANE_BIRD]['lar_meaning'].split(';')[0]}"
    lock = (recipe.run_dir / "recipe.lock.yaml").read_text()
    assert "aux_models:" in lock and "clip:" in lock

    # A second plan reuses the stored results: CLIP is never loaded.
    import synthset.generation.meanings as meanings

    def fail(*args, **kwargs):
        raise AssertionError("LAR recomputed")

    original = meanings.resolve_class_meaning
    meanings.resolve_class_meaning = fail
    try:
        assert plan_run(recipe).lar_sources == summary.lar_sources
    finally:
        meanings.resolve_class_meaning = original


def test_killed_lar_resumes_at_the_next_class(write_recipe, tmp_path: Path, monkeypatch):
    import synthset.generation.meanings as meanings

    recipe = load_recipe(
        write_recipe(
            {
                "classes": {"set": "imagenet-1k", "subset": ["tench", "goldfish", "n02012849"], "limit": None},
                "configs": [{"name": "lar", "strategy": "lar", "images_per_class": 1}],
            }
        )
    )
    calls: list[int] = []
    original = meanings.resolve_class_meaning

    def crash_on_second(info, *args, **kwargs):
        calls.append(info.label)
        if len(calls) == 2:
            raise KeyboardInterrupt  # a kill between classes
        return original(info, *args, **kwargs)

    monkeypatch.setattr(meanings, "resolve_class_meaning", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        plan_run(recipe)
    monkeypatch.setattr(
        meanings, "resolve_class_meaning", lambda info, *a, **k: calls.append(info.label) or original(info, *a, **k)
    )
    summary = plan_run(recipe)
    assert calls == [0, 1, 1, CRANE_BIRD]  # tench was kept from the first run
    assert summary.lar_sources == {"single": 2, "no-real-images": 1}
