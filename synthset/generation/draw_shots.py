"""Few-shot draws: the k real images per class that a few-shot config (and its training) may use.

They are drawn once, at plan time, from the real-image source with a seed derived from the recipe seed,
the config and the class, and written to real_shots.parquet with that seed (`synthset.run.shots`).
Augmentation-conditioning reads its conditioning pool from there and nowhere else, so a few-shot dataset
can never be conditioned on a real image outside its k-shot subset.
"""

from __future__ import annotations

import random

from synthset.classes import ClassInfo
from synthset.errors import SynthsetError
from synthset.recipe import Recipe
from synthset.run.ids import sample_seed


def draw_shots(recipe: Recipe, classes: list[ClassInfo], selected: list[ClassInfo]) -> list[dict]:
    """One row per (few-shot config, class): k real image ids drawn with a recorded seed."""
    configs = [c for c in recipe.configs if c.shots is not None]
    if not configs:
        return []
    from synthset.generation.real_images import open_real_images

    source = open_real_images(recipe.real_images, classes)
    rows = []
    for config in configs:
        for info in selected:
            pool = source.ids_for(info.label)
            if len(pool) < config.shots:
                raise SynthsetError(
                    f"configs: {config.name} needs {config.shots} real images of class {info.label_name!r}, "
                    f"the real_images source has {len(pool)}"
                )
            seed = sample_seed(recipe.seed, f"shots/{config.name}/{info.label}")
            rows.append(
                {
                    "config": config.name,
                    "label": info.label,
                    "class_name": info.class_name,
                    "seed": seed,
                    "real_ids": random.Random(seed).sample(pool, config.shots),
                }
            )
    return rows
