"""Every shipped recipe parses and is one its builder can make; the demo ones run end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import REPO

from synthset.builders.assemble import build_dataset
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
    assert generate_run(recipe.run_dir).images_made == images
    _, splits = build_dataset(recipe.run_dir)
    assert [s.num_examples for s in splits] == [images]  # one config, one band
    assert (recipe.run_dir / "dataset" / "README.md").is_file()
