"""`synthset new`: a commented starting recipe for the user's own classes.

The recipe is written as text (so it keeps its comments) from a few choices: the classes (a class list
file, a named set or a `datasets` source), the model, images per class and the strategies. Before it is
written it is read back through the same validation as any recipe, so what `new` writes `plan` accepts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from synthset.errors import RecipeError

DEFAULT_TEXT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
DEFAULT_UNCLIP_MODEL = "stabilityai/stable-diffusion-2-1-unclip"
TESTING_PREFIX = "synthset-testing:"


@dataclass(frozen=True)
class RecipeChoices:
    """What the user chose on the command line; everything else takes the defaults written in the recipe."""

    classes: str
    name: str
    model: str
    images_per_class: int
    strategies: tuple[str, ...]
    real_images: str | None = None
    output_dir: str = "runs"


def classes_block(classes: str) -> str:
    """`classes:` naming a list file or named set as `set`, anything else as a `datasets` source."""
    from synthset.classes import CLASS_LIST_SUFFIXES, NAMED_SETS

    if classes in NAMED_SETS or Path(classes).suffix.lower() in CLASS_LIST_SUFFIXES:
        return f"classes:\n  set: {_quoted(classes)}   # a .txt/.csv/.yaml class list or a named set\n"
    return (
        f"classes:\n  dataset: {_quoted(classes)}   # the label names of this `datasets` source\n"
        "  label_column: label\n"
    )


def _quoted(text: str) -> str:
    """A YAML scalar that reads back as `text` (JSON strings are YAML)."""
    import json

    return text if re.fullmatch(r"[A-Za-z0-9_./-]+", text) and text[0] not in "-." else json.dumps(text)


def _configs_block(choices: RecipeChoices) -> str:
    lines = ["configs:   # paper A's ladder; `bands: k` also publishes <strategy>_1x .. <strategy>_<k>x"]
    for strategy in choices.strategies:
        extra = ", sd_ratio: 0.5" if strategy == "lar_cd_sd" else ""
        lines.append(
            f"  - {{name: {strategy}, strategy: {strategy}, images_per_class: {choices.images_per_class}{extra}}}"
        )
    return "\n".join(lines) + "\n"


def _generator_block(choices: RecipeChoices) -> str:
    tiny = choices.model.startswith(TESTING_PREFIX)
    size, steps = (64, 4) if tiny else (512, 30)
    return (
        "generator:\n"
        f"  model: {_quoted(choices.model)}   # a Hub id, a local save_pretrained directory\n"
        "  # revision: main             # pinned to a commit in recipe.lock.yaml at plan time\n"
        f"  steps: {steps}\n"
        f"  guidance: {2.0 if 'augcond' in choices.strategies else 7.5}\n"
        f"  width: {size}\n"
        f"  height: {size}\n"
        "  batch_size: 8                 # raise it on a large GPU (`synthset plan --gpu-memory 80GB` says how far)\n"
    )


def _aux_models_block(choices: RecipeChoices) -> str:
    """LAR's CLIP and the quality gate: the real defaults, or the tiny offline stand-ins for a tiny model."""
    tiny = choices.model.startswith(TESTING_PREFIX)
    clip = f"{TESTING_PREFIX}tiny-clip" if tiny else "ViT-B-32"
    checker = f"{TESTING_PREFIX}tiny-safety-checker" if tiny else "CompVis/stable-diffusion-safety-checker"
    return (
        "prompts:\n"
        "  # template: no LLM; transformers (a local causal LM) or openai (any compatible server) also give LAR\n"
        "  # the LLM's meanings of each class name\n"
        "  llm: {backend: template}\n"
        "lar:\n"
        "  # CLIP scores each class's candidate meanings (WordNet's, your descriptions, the LLM's) on real images\n"
        f"  clip_model: {_quoted(clip)}\n"
        "quality:   # every image is screened before it is written (push needs it, or --allow-unscreened)\n"
        f"  checker: {_quoted(checker)}\n"
        f"  clip_model: {_quoted(clip)}\n"
    )


def _real_images_block(choices: RecipeChoices) -> str:
    if choices.real_images is None:
        return (
            "# real_images:   # your photos: LAR scores meanings on them, augcond is conditioned on them\n"
            "#   folder: data/my-photos    # <folder>/<class name>/*.jpg, or dataset: <hub id or ./local/path>\n"
        )
    key = "folder" if Path(choices.real_images).is_dir() and not _is_dataset_dir(choices.real_images) else "dataset"
    return (
        "real_images:   # your photos: LAR scores meanings on them, augcond is conditioned on them\n"
        f"  {key}: {_quoted(choices.real_images)}\n"
    )


def _is_dataset_dir(path: str) -> bool:
    """A directory `datasets` loads (a built dataset or a saved one), rather than a folder of class folders."""
    root = Path(path)
    return (root / "README.md").is_file() or (root / "dataset_info.json").is_file()


def recipe_text(choices: RecipeChoices, class_count: int) -> str:
    """The recipe file's text, comments included."""
    return (
        f"# {choices.name}: {class_count} classes from {choices.classes}, written by `synthset new`.\n"
        f"# Check it: synthset plan --check <this file>; then synthset plan, accelerate launch -m synthset\n"
        f"# generate {choices.output_dir}/{choices.name}, synthset build, synthset card (see the README).\n"
        f"name: {_quoted(choices.name)}\n"
        "seed: 0\n"
        f"output_dir: {_quoted(choices.output_dir)}   # the run directory is <output_dir>/<name>\n"
        "# license: creativeml-openrail-m   # the dataset's Hub license id, when the model card states none\n"
        + classes_block(choices.classes)
        + "  # limit: 10   # try the first ten classes first\n"
        + _configs_block(choices)
        + _generator_block(choices)
        + _aux_models_block(choices)
        + _real_images_block(choices)
    )


def check_strategies(choices: RecipeChoices) -> None:
    """augcond needs an unCLIP model and real images, so it is a recipe of its own."""
    from synthset.recipe import STRATEGIES

    for strategy in choices.strategies:
        if strategy not in STRATEGIES:
            raise RecipeError(f"--strategies: unknown strategy {strategy!r} (known: {', '.join(STRATEGIES)})")
    if "augcond" in choices.strategies and len(choices.strategies) > 1:
        raise RecipeError("--strategies: augcond needs an unCLIP model, so it goes in a recipe of its own")
    if "augcond" in choices.strategies and choices.real_images is None:
        raise RecipeError("--real-images: augcond is conditioned on your real images; name their folder or dataset")


def write_new_recipe(choices: RecipeChoices, out: Path, overwrite: bool = False) -> int:
    """Write the recipe to `out` after validating it as `plan` would read it; returns the class count.

    Raises:
        RecipeError: a bad choice, an unreadable class list, or `out` exists (without `overwrite`).
    """
    import yaml

    from synthset.classes import load_recipe_classes
    from synthset.fsutil import write_text_atomic
    from synthset.recipe import recipe_from_dict

    check_strategies(choices)
    if out.exists() and not overwrite:
        raise RecipeError(f"{out}: already exists; choose another --out or pass --force")
    probe = recipe_from_dict(yaml.safe_load(recipe_text(choices, 0)), str(out))
    count = len(load_recipe_classes(probe.classes))
    text = recipe_text(choices, count)
    recipe_from_dict(yaml.safe_load(text), str(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, text)
    return count
