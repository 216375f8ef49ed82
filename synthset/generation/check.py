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

from synthset.classes import load_class_set, select_classes
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

    @property
    def images(self) -> int:
        return sum(self.images_per_config.values())


def check_recipe(recipe: Recipe) -> RecipeCheck:
    """Validate a recipe as `synthset plan` would, writing nothing; one SynthsetError line on the first problem."""
    check_family(recipe)
    classes = load_class_set(recipe.classes.set)
    selected = select_classes(classes, recipe.classes.subset, recipe.classes.limit, recipe.classes.set)
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
    return RecipeCheck(counts, len(selected), lock.model.load_path, lock.model.revision, pooled)
