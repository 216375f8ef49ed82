"""Few-shot draws: the k real images per class that a few-shot config (and its training) may use.

They are drawn once, at plan time, from the real-image source with a seed derived from the recipe seed,
the config and the class, and written to real_shots.parquet with that seed. Augmentation-conditioning
reads its conditioning pool from here and nowhere else, so a few-shot dataset can never be conditioned
on a real image outside its k-shot subset.
"""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from synthset.classes import ClassInfo
from synthset.errors import SynthsetError
from synthset.fsutil import atomic_path
from synthset.generation.ids import sample_seed
from synthset.recipe import Recipe

SHOTS_FILE = "real_shots.parquet"
SHOTS_SCHEMA = pa.schema(
    [
        ("config", pa.string()),
        ("label", pa.int64()),
        ("class_name", pa.string()),
        ("seed", pa.int64()),
        ("real_ids", pa.list_(pa.string())),
    ]
)


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


def write_shots(run_dir: Path, rows: list[dict]) -> None:
    path = run_dir / SHOTS_FILE
    if not rows:
        path.unlink(missing_ok=True)
        return
    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pylist(rows, schema=SHOTS_SCHEMA), tmp)


def read_shots(run_dir: Path, config: str) -> dict[int, list[str]]:
    """label -> the k real image ids of a few-shot config."""
    path = run_dir / SHOTS_FILE
    if not path.is_file():
        return {}
    table = pq.read_table(path, filters=[("config", "=", config)])
    return {row["label"]: row["real_ids"] for row in table.to_pylist()}
