"""The papers' tables point at the data they mean: every training config's synthetic config is a published config
of its recipe, with the bands and row count the table row is about (paper A's ladder at 1x, its scale curve at
k x 1.3M; paper B's fill-up and 16-per-class few-shot sets), and the README's loop trains exactly those rows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import REPO

from synthset.classes import load_class_set, select_classes
from synthset.recipe import Recipe, load_recipe
from synthset.run.published import PublishedConfig, published_configs
from synthset.training.config import load_train_config

IMAGENET_ROWS = 1000 * 1300
LT_TRAIN_LIST_IMAGES = 115_846  # ImageNet_LT_train.txt of the ImageNet-LT release
PAPER_A_LADDER = ["naive", "lar", "lar_cd", "lar_cd_sd_1x"]
PAPER_A_SCALE = [f"lar_cd_sd_{k}x" for k in range(1, 7)]

# training config -> {published synthetic config: (bands, rows)}: the rows of the paper's table it serves
INTENDED: dict[str, dict[str, tuple[int, int]]] = {
    "paper-a-imagenet-resnet50-auxbn.yaml": {
        **{name: (1, IMAGENET_ROWS) for name in PAPER_A_LADDER},
        **{f"lar_cd_sd_{k}x": (k, k * IMAGENET_ROWS) for k in range(1, 7)},
    },
    "paper-b-imagenet-lt-resnext50.yaml": {"augcond": (1, 1000 * 1280 - LT_TRAIN_LIST_IMAGES)},
    "paper-b-fewshot-coco.yaml": {f"coco_{k}shot_t{t}": (1, 80 * 16) for k in (1, 2, 4, 8, 16) for t in range(4)},
    "paper-b-fewshot-pascal-voc.yaml": {
        f"pascal_voc_{k}shot_t{t}": (1, 20 * 16) for k in (1, 2, 4, 8, 16) for t in range(4)
    },
    "paper-b-fewshot-caltech101.yaml": {
        f"caltech101_dafusion_{k}shot_t{t}": (1, 102 * 16) for k in (1, 2, 4, 8, 16) for t in range(4)
    },
    "paper-b-fewshot-flowers102.yaml": {
        f"flowers102_dafusion_{k}shot_t{t}": (1, 102 * 16) for k in (1, 2, 4, 8, 16) for t in range(4)
    },
}

TRAIN_CONFIGS = sorted((REPO / "configs" / "train").glob("*.yaml"))
RECIPES = {recipe.name: recipe for recipe in map(load_recipe, sorted((REPO / "recipes").glob("*.yaml")))}


def recipe_of(synthetic_path: str) -> Recipe:
    """The shipped recipe whose run directory holds `synthetic_path` (`runs/<name>/dataset`)."""
    name = re.fullmatch(r"runs/(?P<name>[^/]+)/dataset", synthetic_path)["name"]
    return RECIPES[name]


def rows_of(recipe: Recipe, published: PublishedConfig) -> int:
    """Rows a published config holds, from the recipe alone (a fill-up config: target x classes - listed)."""
    config = next(c for c in recipe.configs if c.name == published.generation_config)
    options = recipe.classes
    classes = len(select_classes(load_class_set(options.set), options.subset, options.limit, options.set))
    if config.fill_up is not None:
        return config.fill_up.target * classes - LT_TRAIN_LIST_IMAGES
    return config.images_per_class * classes * published.bands


def names_served(path: Path) -> list[str]:
    """The synthetic configs a training config trains: its own name (every k and trial), and for paper A the
    other rows its header lists (`--set synthetic.name=...`)."""
    config = load_train_config(path)
    name, few = config.synthetic.name, config.few_shot
    if config.mode == "few_shot":
        return [name.format(k=k, trial=t) for k in few.shots for t in range(few.trials)]
    return list(INTENDED[path.name]) if path.name.startswith("paper-a-") else [name]


def test_every_synthetic_training_config_is_in_the_table():
    with_synthetic = [p.name for p in TRAIN_CONFIGS if load_train_config(p).synthetic is not None]
    assert sorted(with_synthetic) == sorted(INTENDED)


@pytest.mark.parametrize("name", sorted(INTENDED))
def test_synthetic_config_is_published_with_its_bands_and_rows(name: str):
    path = REPO / "configs" / "train" / name
    config = load_train_config(path)
    recipe = recipe_of(config.synthetic.path)
    published = {p.name: p for p in published_configs(recipe)}
    served = names_served(path)
    assert sorted(served) == sorted(INTENDED[name])
    if config.mode != "few_shot":
        assert config.synthetic.name in INTENDED[name]
    for synthetic in served:
        assert synthetic in published, f"{name}: {synthetic} is not a published config of {recipe.name}"
        assert (published[synthetic].bands, rows_of(recipe, published[synthetic])) == INTENDED[name][synthetic]


def test_paper_a_trains_the_ladder_at_1x_and_the_scale_curve():
    config = load_train_config(REPO / "configs" / "train" / "paper-a-imagenet-resnet50-auxbn.yaml")
    assert config.synthetic.name == "lar_cd_sd_1x"
    published = {p.name: p for p in published_configs(recipe_of(config.synthetic.path))}
    assert published["lar_cd_sd"].bands == 6  # the unsuffixed name is the 6x set, never a 1x rung
    section = (REPO / "docs" / "guides" / "reproduce.md").read_text()  # the guide the README points to
    loop = re.search(r"for c in (?P<names>[a-z0-9_ ]+); do\n\s+accelerate launch .*paper-a-imagenet", section)
    assert loop["names"].split() == PAPER_A_LADDER + PAPER_A_SCALE[1:]


@pytest.mark.parametrize(
    ("name", "epoch"),
    [
        ("paper-a-imagenet-resnet50-auxbn.yaml", "real"),
        ("paper-a-imagenet-resnet50-real.yaml", "real"),
        ("paper-b-imagenet-lt-resnext50.yaml", 1_164_154 // 256),
        ("paper-b-imagenet-lt-resnext50-real.yaml", "real"),
    ],
)
def test_supervised_configs_state_their_epoch(name: str, epoch: str | int):
    """Paper A's rows all run the same steps (a pass over the real set); paper B's LT epoch is the authors'
    sampler's: one walk over the synthetic set in full half-batches."""
    config = load_train_config(REPO / "configs" / "train" / name)
    assert config.train.epoch == epoch


def test_lt_recipes_name_their_augmentation_variant():
    """The recipe that chases paper B's published LT number runs the authors' code (variant authors_code); the
    dimension-wise CutMix of the method's description stays available under a name that says so, and is the
    same recipe in every other field."""
    from synthset.recipe import recipe_to_dict

    authors = load_recipe(REPO / "recipes" / "imagenet-lt-augcond.yaml")
    described = load_recipe(REPO / "recipes" / "imagenet-lt-augcond-dim-cutmix.yaml")
    assert authors.configs[0].augcond.variant == "authors_code"
    assert described.configs[0].augcond.variant == "paper"
    assert authors.storage.quality == 75  # PIL's default, the authors' .save("x.jpg")
    assert authors.generator.steps == 30  # their fork's pipeline default at the final LT run (ed283794)
    mine, theirs = recipe_to_dict(described), recipe_to_dict(authors)
    for data in (mine, theirs):
        data.pop("name")
        data["configs"][0]["augcond"].pop("variant")
    assert mine == theirs


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: p.name)
def test_weight_decay_on_norm_and_bias_is_the_authors_choice(path: Path):
    """Paper B's authors decay every parameter (one SGD group); paper A's schedule is timm's/torchvision's."""
    config = load_train_config(path)
    if config.mode != "few_shot":
        assert config.train.decay_norm_and_bias == path.name.startswith("paper-b-")
