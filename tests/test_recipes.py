"""Every shipped recipe parses and is one its builder can make; the demo ones run end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import REPO

from synthset.builders.assemble import build_dataset
from synthset.cards import write_card
from synthset.generation.plan import plan_run
from synthset.generation.runner import generate_run
from synthset.recipe import load_recipe
from synthset.run.families import check_family

RECIPES = sorted((REPO / "recipes").glob("*.yaml"))


def test_the_shipped_recipes_are_there():
    shipped = {"demo.yaml", "demo-lt.yaml", "demo-fewshot.yaml", "imagenet-1k.yaml", "imagenet-lt.yaml"}
    assert {p.name for p in RECIPES} >= shipped | {"fewshot-caltech101.yaml"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_is_valid_for_its_builder(path: Path):
    recipe = load_recipe(path)
    check_family(recipe)


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
