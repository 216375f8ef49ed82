"""`synthset.demo()`: the demo pipeline from the recipes shipped inside the package.

The recipes live in the package (`synthset/recipes/`, package data), so an installed wheel runs the demo
without the repository. They name the tiny offline models (`synthset-testing:...`): the caller builds those
first (`synthset demo` does, through `synthset tiny-models`' code), since the product never imports
`synthset.testing`.
"""

from __future__ import annotations

import contextlib
import importlib.resources
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synthset.api import stages
from synthset.api.results import BuildResult, Described

if TYPE_CHECKING:
    from synthset.recipe import Recipe

# In the order they run: augcond conditions on the first one's naive images (runs/demo/dataset).
DEMO_RECIPES = ("demo.yaml", "demo-augcond.yaml")
# `quick`: the same pipeline at its smallest useful size (a smoke test of an install, seconds not minutes).
QUICK_CLASSES = 2
QUICK_IMAGES_PER_CLASS = 4
DEMO_LICENSE = "apache-2.0"


@dataclass(frozen=True)
class DemoResult(Described):
    """`synthset.demo()`: every demo run's built dataset, with the lines that load it."""

    directory: str
    builds: list[BuildResult]

    def lines(self) -> list[str]:
        lines = [f"demo finished in {self.directory}"]
        for build in self.builds:
            lines += build.lines()
        lines.append("cards: runs/<name>/dataset/README.md; review pages: runs/<name>/review.html")
        return lines


def demo_recipe_text(name: str) -> str:
    """One shipped demo recipe's YAML, read from the installed package.

    Raises:
        FileNotFoundError: no such recipe in the package (a broken install).
    """
    return (importlib.resources.files("synthset") / "recipes" / name).read_text(encoding="utf-8")


def demo_recipe(name: str, quick: bool = False) -> Recipe:
    """A shipped demo recipe, validated; with `quick`, cut to QUICK_CLASSES x QUICK_IMAGES_PER_CLASS."""
    import yaml

    from synthset.recipe import recipe_from_dict

    data = yaml.safe_load(demo_recipe_text(name))
    if quick:
        _shrink(data)
    return recipe_from_dict(data, f"synthset/recipes/{name}")


def _shrink(data: dict[str, Any]) -> None:
    data["classes"]["limit"] = QUICK_CLASSES
    for config in data["configs"]:
        config["images_per_class"] = QUICK_IMAGES_PER_CLASS


def demo(directory: str | Path = ".", quick: bool = False) -> DemoResult:
    """Run the demo pipeline in `directory`: plan, generate, build, card and review each demo recipe.

    The runs land in `<directory>/runs/<name>/` (the recipes' relative `output_dir`), so the demo
    works from any directory; generation runs in this one process.

    Args:
        directory: where to work (default: the current directory).
        quick: run the smallest version (2 classes, 4 images per config and class).

    Returns:
        Each run's built dataset and how to load it.

    Raises:
        ModelError: the tiny models were not built (`synthset tiny-models` builds them).
    """
    with contextlib.chdir(directory):
        builds = [_run_one(demo_recipe(name, quick)) for name in DEMO_RECIPES]
    return DemoResult(str(Path(directory).resolve()), builds)


def _run_one(recipe: Recipe) -> BuildResult:
    run = stages.plan(recipe).run
    stages.generate(run)
    built = stages.build(run)
    stages.card(run, license=DEMO_LICENSE)
    stages.review(run)
    return built
