"""Every shipped recipe and training config validates, and the paper-B few-shot pairs fit together;
the demo recipes run end to end."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import REPO
from recipe_stand_ins import MODEL_STAND_INS, stand_in

from synthset.builders.assemble import build_dataset
from synthset.cards import write_card
from synthset.generation.check import check_recipe
from synthset.generation.plan import plan_run
from synthset.generation.runner import generate_run
from synthset.recipe import load_recipe
from synthset.run.families import check_family
from synthset.training.config import load_train_config

RECIPES = sorted((REPO / "recipes").glob("*.yaml"))
TRAIN_CONFIGS = sorted((REPO / "configs" / "train").glob("*.yaml"))


def test_the_shipped_recipes_are_there():
    shipped = {"demo.yaml", "demo-lt.yaml", "demo-fewshot.yaml", "imagenet-1k.yaml", "imagenet-lt.yaml"}
    paper_b = {
        "imagenet-lt-augcond.yaml",
        "fewshot-coco.yaml",
        "fewshot-pascal-voc.yaml",
        "fewshot-caltech101.yaml",
        "fewshot-flowers102.yaml",
    }
    assert {p.name for p in RECIPES} >= shipped | paper_b
    assert len(TRAIN_CONFIGS) == 12


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_is_valid_for_its_builder(path: Path):
    recipe = load_recipe(path)
    check_family(recipe)
    assert recipe.generator.model in MODEL_STAND_INS, "a new model needs a tiny stand-in for this test"


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_passes_the_plan_check(path: Path, tmp_path: Path):
    """`synthset plan --check` on the recipe as shipped, with tiny stand-ins for its model and data only."""
    recipe = stand_in(load_recipe(path), tmp_path)
    checked = check_recipe(recipe)
    assert checked.classes == 3 and checked.images > 0
    assert not (tmp_path / "runs").exists()  # nothing written
    for config in recipe.configs:
        if config.strategy == "augcond":
            assert checked.pools[config.name] > 0


def test_paper_b_lt_recipe_is_the_papers_setup():
    recipe = load_recipe(REPO / "recipes" / "imagenet-lt-augcond.yaml")
    generator, config = recipe.generator, recipe.configs[0]
    assert generator.model == "stabilityai/stable-diffusion-2-1-unclip" and generator.dtype == "float16"
    assert (generator.width, generator.height, generator.guidance, generator.noise_level) == (768, 768, 2.0, 0)
    assert config.fill_up.target == 1280 and config.augcond.prompt == "{synonyms}"
    assert list(config.augcond.augmentations) == ["embed_cutmix+dropout"] and config.augcond.dropout == 0.4
    for name in ("fewshot-coco", "fewshot-pascal-voc", "fewshot-caltech101", "fewshot-flowers102"):
        few = load_recipe(REPO / "recipes" / f"{name}.yaml")
        assert few.generator.guidance == 10.0 and few.generator.width == 768
        assert {c.images_per_class for c in few.configs} == {16}
        assert {c.augcond.prompt for c in few.configs} == {"a photo of a {class_name}"}
        assert sorted((c.shots, c.shot_draw.trial) for c in few.configs) == [
            (k, t) for k in (1, 2, 4, 8, 16) for t in range(4)
        ]


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: p.name)
def test_training_config_validates(path: Path):
    config = load_train_config(path)
    assert config.output_dir.parts[:2] == ("runs", "train")


FEWSHOT_PAIRS = [p for p in TRAIN_CONFIGS if p.name.startswith("paper-b-fewshot") and not p.name.endswith("-real.yaml")]


@pytest.mark.parametrize("path", FEWSHOT_PAIRS, ids=lambda p: p.name)
def test_fewshot_config_and_recipe_fit_together(path: Path):
    """The probe's real split, label rule, halves, shots and trials are the recipe's; every (k, trial) exists."""
    config = load_train_config(path)
    recipe_name = re.match(r"runs/(?P<name>[^/]+)/dataset", config.synthetic.path)["name"]
    recipe = next(r for r in map(load_recipe, RECIPES) if r.name == recipe_name)
    real = recipe.real_images
    assert config.real.path == real.dataset and config.real.split == real.split
    assert config.real.label_from == real.label_from
    if real.match == "name" or real.label_from is not None:
        assert config.real.classes == recipe.classes.set
    spec = config.few_shot
    assert spec.protocol == "dafusion" and spec.real_shots.path == Path(config.synthetic.path)
    by_name = {c.name: c for c in recipe.configs}
    for k in spec.shots:
        for trial in range(spec.trials):
            made = by_name[config.synthetic.name.format(k=k, trial=trial)]
            assert spec.real_shots.config.format(k=k, trial=trial) == made.name
            assert made.shots == k and made.shot_draw.trial == config.seed + trial
            assert made.shot_draw.halves == spec.halves
            assert made.augcond_options.condition_on in (None, "shots")


def test_check_refuses_what_plan_would(tmp_path: Path):
    from synthset.errors import SynthsetError

    recipe = stand_in(load_recipe(REPO / "recipes" / "imagenet-lt-augcond.yaml"), tmp_path)
    wrong = recipe.model_copy(
        update={"generator": recipe.generator.model_copy(update={"model": "synthset-testing:tiny-sd"})}
    )
    with pytest.raises(SynthsetError, match="generator.model: augcond needs an unCLIP image-variation pipeline"):
        check_recipe(wrong)
    listed = recipe.configs[0].fill_up.train_list
    listed.write_text(listed.read_text() + "train/n01440764/n01440764_999.JPEG 0\n")
    with pytest.raises(SynthsetError, match=r"n01440764_999.JPEG \(label 0\) is not in real_images"):
        check_recipe(recipe)


@pytest.mark.parametrize(("name", "images"), [("demo-lt.yaml", 20 * 10 - 100), ("demo-fewshot.yaml", 40)])
def test_demo_recipes_run(name: str, images: int, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(REPO)  # recipe paths are relative to the repository, as in `make demo`
    recipe = load_recipe(REPO / "recipes" / name)
    recipe = recipe.model_copy(update={"output_dir": tmp_path})
    plan_run(recipe)
    summary = generate_run(recipe.run_dir)
    assert summary.images_made + summary.dropped == images  # the demos screen their images (quality gate)
    _, splits = build_dataset(recipe.run_dir)
    assert [s.num_examples for s in splits] == [summary.images_made]  # one config, one band
    write_card(recipe.run_dir, license="apache-2.0")
    card = (recipe.run_dir / "dataset" / "README.md").read_text()
    assert f"| {images} | {summary.images_made} | {images + summary.redraws} |" in card  # planned, published, screened


def test_plan_check_command_writes_nothing(tmp_path: Path, capsys, monkeypatch):
    from synthset.cli import main

    monkeypatch.chdir(REPO)  # the demo's train list path is relative to the repository
    recipe = tmp_path / "demo-lt.yaml"
    recipe.write_text(
        (REPO / "recipes" / "demo-lt.yaml").read_text().replace("output_dir: runs", f"output_dir: {tmp_path}/runs")
    )
    assert main(["plan", "--check", str(recipe)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "recipe OK: 100 images over 10 classes (lar_cd_sd: 100)"
    assert out[1].startswith("model: ") and out[1].endswith("; nothing was written")
    assert not (tmp_path / "runs").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO / "recipes" / "demo-augcond.yaml").read_text().replace("tiny-unclip", "tiny-sd"))
    assert main(["plan", "--check", str(bad)]) == 2
    assert "generator.model: augcond needs an unCLIP image-variation pipeline" in capsys.readouterr().err


def test_one_config_serves_every_row_of_a_table():
    from synthset.errors import SynthsetError

    path = REPO / "configs" / "train" / "paper-a-imagenet-resnet50-auxbn.yaml"
    config = load_train_config(path, ["synthetic.name=lar_cd", "output_dir=runs/train/lar_cd", "train.epochs=2"])
    assert (config.synthetic.name, str(config.output_dir), config.train.epochs) == ("lar_cd", "runs/train/lar_cd", 2)
    with pytest.raises(SynthsetError, match=r"^--set 'synthetic': expected KEY=VALUE, e.g. synthetic.name=lar_cd$"):
        load_train_config(path, ["synthetic"])
    with pytest.raises(SynthsetError, match=r"train.epochs: Input should be greater than 0 \(got 0\)"):
        load_train_config(path, ["train.epochs=0"])
