"""`synthset plan --check`: everything the plan stage validates, without writing anything or calling an LLM.

It resolves the model (a Hub id to its commit, a local directory to a hash) and, for a local pipeline,
checks that its family fits the strategies (augcond needs an unCLIP image-variation pipeline); loads the
class set and the selection; reads every fill-up train list; opens the real images, draws the few-shot
shots and builds every conditioning pool, so the leak guards (a long-tail fill-up conditions only on its
train list) run exactly as in a plan; and formats every augcond prompt template. LAR scoring, LLM
descriptions and the plan file are left to `synthset plan`. The shipped recipes are checked this way in
the tests, with tiny models and fixture data standing in for the real ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from synthset.classes import load_recipe_classes, select_classes
from synthset.generation.draw_shots import draw_shots
from synthset.generation.families import check_strategies_fit, local_pipeline_class
from synthset.generation.pinning import make_lock
from synthset.generation.plan import images_per_class, plan_pools
from synthset.recipe import Recipe
from synthset.run.families import check_family


@dataclass(frozen=True)
class RecipeCheck:
    """What a recipe would plan: images per config, the classes, the pinned model, the conditioning pools."""

    images_per_config: dict[str, int]
    classes: int
    model: str
    model_revision: str
    pools: dict[str, int] = field(default_factory=dict)  # config -> real images its pools hold in all
    real_images: str | None = None  # what opening real_images found, e.g. "240 images of 3 of 3 classes"
    unchecked: list[str] = field(default_factory=list)  # what only `synthset plan` (or generate) will load

    @property
    def images(self) -> int:
        return sum(self.images_per_config.values())


def check_recipe(recipe: Recipe) -> RecipeCheck:
    """Validate a recipe as `synthset plan` would, writing nothing; one SynthsetError line on the first problem."""
    check_family(recipe)
    classes = load_recipe_classes(recipe.classes)
    selected = select_classes(classes, recipe.classes.subset, recipe.classes.limit, recipe.classes.source)
    lock = make_lock(recipe)
    kind = local_pipeline_class(lock.model.load_path)
    if kind is not None:
        check_strategies_fit(kind, recipe.generator.model, any(c.strategy == "augcond" for c in recipe.configs))
    counts = {c.name: sum(images_per_class(c, selected, len(classes)).values()) * c.bands for c in recipe.configs}
    draws = draw_shots(recipe, classes, selected)
    pools = plan_pools(recipe, classes, selected, draws)
    for config in recipe.configs:
        if config.strategy == "augcond" and not config.augcond_options.prompt_strategy:
            from synthset.classes.imagenet import synonym_string

            for info in selected:
                config.augcond_options.prompt.format(class_name=info.class_name, synonyms=synonym_string(info))
    pooled: dict[str, int] = {}
    for row in pools:
        pooled[row.config] = pooled.get(row.config, 0) + len(row.real_ids)
    return RecipeCheck(
        counts,
        len(selected),
        lock.model.load_path,
        lock.model.revision,
        pooled,
        real_images=_real_images_found(recipe, classes, selected),
        unchecked=unchecked_parts(recipe),
    )


def _real_images_found(recipe: Recipe, classes: list, selected: list) -> str | None:
    """Open `real_images` (as LAR and augcond will) and count what it holds for the selected classes."""
    if recipe.real_images is None:
        return None
    from synthset.generation.real_images import open_real_images

    source = open_real_images(recipe.real_images, classes)
    counts = [len(source.ids_for(info.label)) for info in selected]
    found = sum(1 for n in counts if n)
    return f"{sum(counts)} images of {found} of {len(selected)} classes in {source.describe()}"


def unchecked_parts(recipe: Recipe) -> list[str]:
    """What --check does not load: it writes nothing, calls no LLM and loads no scoring model."""
    parts = []
    if recipe.uses_lar():
        parts.append(f"LAR's CLIP ({recipe.lar.clip_model})")
        if recipe.prompts.llm.backend != "template":
            parts.append(f"the LLM ({recipe.prompts.llm.backend})")
    if recipe.quality is not None:
        parts += [f"the quality gate's {name}" for name in ("checker", "clip_model") if getattr(recipe.quality, name)]
    return parts
