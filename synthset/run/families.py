"""Dataset families (`builder:` in a recipe): which configs each publishes and which recipes make it.

Both ends of a run need this: the plan refuses a recipe its family cannot publish before any GPU work,
and the `datasets` builders (`synthset.builders`) declare exactly these config names. Keeping the rules
here, as data and plain checks, lets generation and builders share them without importing each other.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from synthset.classes import PACKAGED_SETS
from synthset.errors import RecipeError
from synthset.recipe import STRATEGIES, Recipe
from synthset.run.published import published_configs

MAX_SCALE = 6  # synth_imagenet publishes <strategy>_1x .. <strategy>_6x (paper A's largest scale)
FEWSHOT_SETS = (*PACKAGED_SETS, "custom")  # the shipped benchmark class lists, or any custom list
SHOTS = (1, 2, 4, 8, 16)
TRIALS = 8  # DA-Fusion's default number of trials; `_t<trial>` names a set made from one trial's shots
FEWSHOT_CONFIG = re.compile(r"^(?P<dataset>[a-z0-9_]+)_(?P<k>\d+)shot(?:_t(?P<trial>\d))?$")


def _imagenet_configs() -> list[str]:
    return [*STRATEGIES, *(f"{s}_{k}x" for s in STRATEGIES for k in range(1, MAX_SCALE + 1))]


def _imagenet_lt_configs() -> list[str]:
    return list(STRATEGIES)


def _fewshot_configs() -> list[str]:
    trials = ["", *(f"_t{t}" for t in range(TRIALS))]
    return [f"{d}_{k}shot{t}" for d in FEWSHOT_SETS for k in SHOTS for t in trials]


def fewshot_dataset(config_name: str) -> str:
    """The benchmark a few-shot config belongs to: `caltech101_4shot` -> `caltech101`."""
    match = FEWSHOT_CONFIG.match(config_name)
    if match is None:
        raise RecipeError(f"configs: {config_name!r} is not a few-shot config name (<dataset>_<k>shot[_t<trial>])")
    return match["dataset"]


def _check_strategy_named(recipe: Recipe) -> None:
    """synth_imagenet and synth_classes: one config per strategy, named after it (bands give its scales)."""
    for i, config in enumerate(recipe.configs):
        if config.fill_up is not None:
            raise RecipeError(f"configs[{i}].fill_up: {recipe.builder} has no fill-up; use synth_imagenet_lt")
        if config.name != config.strategy:
            raise RecipeError(
                f"configs[{i}].name: {recipe.builder} names each config after its strategy "
                f"(name: {config.strategy}, not {config.name!r})"
            )


def _check_imagenet(recipe: Recipe) -> None:
    if recipe.classes.set != "imagenet-1k":
        raise RecipeError(
            f"classes.set: synth_imagenet needs imagenet-1k, not {recipe.classes.source!r} "
            "(leave builder out, or use builder: synth_classes, for any other class list)"
        )
    _check_strategy_named(recipe)


def _check_imagenet_lt(recipe: Recipe) -> None:
    if recipe.classes.set != "imagenet-1k":
        raise RecipeError("classes.set: synth_imagenet_lt needs imagenet-1k")
    for i, config in enumerate(recipe.configs):
        if config.fill_up is None:
            raise RecipeError(f"configs[{i}]: synth_imagenet_lt configs need fill_up (the ImageNet-LT train list)")


def _check_fewshot(recipe: Recipe) -> None:
    for i, config in enumerate(recipe.configs):
        match = FEWSHOT_CONFIG.match(config.name)
        if match is None:
            raise RecipeError(
                f"configs[{i}].name: synth_fewshot configs are named <dataset>_<k>shot (or <dataset>_<k>shot_t<trial>)"
            )
        dataset = match["dataset"]
        if dataset != "custom" and recipe.classes.set != dataset:
            raise RecipeError(f"configs[{i}].name: {config.name!r} needs classes.set: {dataset}")


@dataclass(frozen=True)
class DatasetFamily:
    """One dataset family: the config names it may publish, and the check that a recipe fits it."""

    config_names: Callable[[], list[str]]
    check: Callable[[Recipe], None]  # raises SynthsetError (one line) when the recipe does not fit


# a recipe's `builder:` -> its family; synthset.builders.BUILDERS holds the matching `datasets` builders
DATASET_FAMILIES: dict[str, DatasetFamily] = {
    "synth_imagenet": DatasetFamily(_imagenet_configs, _check_imagenet),
    "synth_imagenet_lt": DatasetFamily(_imagenet_lt_configs, _check_imagenet_lt),
    "synth_fewshot": DatasetFamily(_fewshot_configs, _check_fewshot),
    # any class list (a text/CSV/YAML file, a named set, a dataset's label names): synth_imagenet's configs
    "synth_classes": DatasetFamily(_imagenet_configs, _check_strategy_named),
}


def config_names(family: str) -> list[str]:
    """Every config name a family may publish (KeyError for an unknown family)."""
    return DATASET_FAMILIES[family].config_names()


def check_family(recipe: Recipe) -> None:
    """Raise SynthsetError (one line) when the recipe's family cannot publish what the recipe makes."""
    DATASET_FAMILIES[recipe.builder].check(recipe)
    names = set(config_names(recipe.builder))
    for config in published_configs(recipe):
        if config.name not in names:
            raise RecipeError(
                f"configs: {config.name!r} is not a config of {recipe.builder} "
                f"(it publishes e.g. {', '.join(sorted(names)[:6])}, ...)"
            )
