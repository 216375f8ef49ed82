"""Few-shot draws: the k real images per class that a few-shot config (and its training) may use.

They are drawn once, at plan time, from the real-image source, and written to real_shots.parquet
(`synthset.run.shots`). Two rules:
- synthset's (no `shot_draw`): k ids per class sampled with a seed derived from the recipe seed, the config
  and the class (recorded in the row);
- DA-Fusion's (`shot_draw: {trial, halves}`, `synthset.classes.dafusion`): the first k ids of the class's
  training split for that trial, exactly the images the DA-Fusion probe trains on for that trial (the row's
  seed is the trial).
Augmentation-conditioning reads its pool from these draws (the k shots, or with `condition_on: train_split`
the whole training split of the draw) and nowhere else.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from synthset.classes import ClassInfo
from synthset.errors import SynthsetError
from synthset.recipe import ConfigSpec, Recipe
from synthset.run.ids import sample_seed


@dataclass(frozen=True)
class ShotDraw:
    """One (few-shot config, class): its k shots and the training split they were drawn from."""

    config: str
    label: int
    class_name: str
    seed: int
    real_ids: list[str]
    train_ids: list[str]

    def shots_row(self) -> dict:
        """The row real_shots.parquet records."""
        return {
            "config": self.config,
            "label": self.label,
            "class_name": self.class_name,
            "seed": self.seed,
            "real_ids": self.real_ids,
        }


def _check_enough(config: ConfigSpec, info: ClassInfo, available: int, where: str) -> None:
    if available < (config.shots or 0):
        raise SynthsetError(
            f"configs: {config.name} needs {config.shots} real images of class {info.label_name!r}, "
            f"{where} has {available}"
        )


def draw_shots(recipe: Recipe, classes: list[ClassInfo], selected: list[ClassInfo]) -> list[ShotDraw]:
    """One ShotDraw per (few-shot config, selected class)."""
    configs = [c for c in recipe.configs if c.shots is not None]
    if not configs:
        return []
    from synthset.generation.real_images import open_real_images

    assert recipe.real_images is not None, "the recipe's validator requires real_images for few-shot configs"
    source = open_real_images(recipe.real_images, classes)
    draws = []
    for config in configs:
        k = config.shots
        assert k is not None  # configs holds the few-shot configs only
        if config.shot_draw is not None:
            from synthset.classes.dafusion import dafusion_split

            draw = config.shot_draw
            splits = dafusion_split(source.ids_by_label, len(classes), draw.trial, draw.halves)
            for info in selected:
                split = splits[info.label]
                where = "the training half of the real_images source" if draw.halves else "the real_images source"
                _check_enough(config, info, len(split.train), where)
                draws.append(
                    ShotDraw(config.name, info.label, info.class_name, draw.trial, split.shots(k), split.train)
                )
            continue
        for info in selected:
            pool = source.ids_for(info.label)
            _check_enough(config, info, len(pool), "the real_images source")
            seed = sample_seed(recipe.seed, f"shots/{config.name}/{info.label}")
            shots = random.Random(seed).sample(pool, k)
            draws.append(ShotDraw(config.name, info.label, info.class_name, seed, shots, list(pool)))
    return draws
