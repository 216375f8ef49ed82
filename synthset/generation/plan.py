"""The plan stage: recipe -> recipe.lock.yaml, classes.parquet, plan.parquet.

plan.parquet has one row per image to make, written before any GPU work: the contract between prompting
and generation. Each row has a stable `sample_id` (`<config>/<label:04d>/<index:06d>`), a seed derived
from the recipe seed and that id alone, and the `shard` it belongs to. Shards are fixed here, by the
plan, not by the number of processes that later run it, so the generated files are the same on one GPU
or a hundred, and a resumed run with another world size picks up exactly the shards that are missing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from synthset.builders.features import plan_features
from synthset.classes import ClassInfo, load_class_set, select_classes
from synthset.errors import SynthsetError
from synthset.fsutil import atomic_path
from synthset.generation.prompts import PROMPT_STRATEGIES, PromptContext
from synthset.lock import LOCK_FILE, Lock, make_lock, read_lock, write_lock
from synthset.recipe import Recipe

CLASSES_FILE = "classes.parquet"
PLAN_FILE = "plan.parquet"

CLASSES_SCHEMA = pa.schema(
    [
        ("label", pa.int64()),
        ("wnid", pa.string()),
        ("class_name", pa.string()),
        ("label_name", pa.string()),
        ("gloss", pa.string()),
        ("selected", pa.bool_()),
        ("lar_candidates", pa.list_(pa.string())),
        ("lar_scores", pa.list_(pa.float32())),
        ("lar_meaning", pa.string()),
        ("lar_source", pa.string()),
    ]
)


def make_sample_id(config: str, label: int, index: int) -> str:
    return f"{config}/{label:04d}/{index:06d}"


def sample_seed(recipe_seed: int, sample_id: str) -> int:
    """A 63-bit seed from (recipe seed, sample id) only: never from rank, world size or batch position."""
    digest = hashlib.sha256(f"{recipe_seed}/{sample_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def shard_name(config: str, split: str, index: int) -> str:
    return f"{config}/{split}-{index:05d}"


@dataclass(frozen=True)
class PlanSummary:
    run_dir: Path
    rows: int
    shards: int
    rows_per_config: dict[str, int]


def write_classes(run_dir: Path, classes: list[ClassInfo], selected: list[ClassInfo]) -> None:
    """classes.parquet: the whole label space, with the classes this run generates marked `selected`."""
    chosen = {info.label for info in selected}
    rows = [
        {
            "label": info.label,
            "wnid": info.wnid,
            "class_name": info.class_name,
            "label_name": info.label_name,
            "gloss": info.gloss,
            "selected": info.label in chosen,
            "lar_candidates": None,
            "lar_scores": None,
            "lar_meaning": None,
            "lar_source": None,
        }
        for info in classes
    ]
    with atomic_path(run_dir / CLASSES_FILE) as tmp:
        pq.write_table(pa.Table.from_pylist(rows, schema=CLASSES_SCHEMA), tmp)


def read_classes(run_dir: Path) -> list[ClassInfo]:
    table = pq.read_table(run_dir / CLASSES_FILE, columns=["label", "class_name", "label_name", "wnid", "gloss"])
    return [ClassInfo(**row) for row in table.to_pylist()]


def read_label_names(run_dir: Path) -> list[str]:
    return pq.read_table(run_dir / CLASSES_FILE, columns=["label_name"]).column(0).to_pylist()


def iter_plan_shards(lock: Lock, selected: list[ClassInfo], run_dir: Path) -> Iterator[tuple[str, list[dict]]]:
    """Yield (shard name, rows) in plan order: config, then class, then image index.

    Only one shard's rows are in memory at a time, so planning millions of images stays flat in memory.
    """
    recipe = lock.recipe
    size = recipe.storage.shard_size
    for config in recipe.configs:
        strategy = PROMPT_STRATEGIES[config.strategy]
        context = PromptContext(recipe=recipe, config=config, run_dir=run_dir)
        pending: list[dict] = []
        shard_index = 0
        for info in selected:
            prompts = strategy(info, config.images_per_class, context)
            for index, fields in enumerate(prompts):
                sample_id = make_sample_id(config.name, info.label, index)
                pending.append(
                    {
                        "sample_id": sample_id,
                        "config": config.name,
                        "split": config.split,
                        "label": info.label,
                        "class_name": info.class_name,
                        "strategy": fields.strategy,
                        "prompt": fields.prompt,
                        "negative_prompt": recipe.generator.negative_prompt,
                        "lar_meaning": fields.lar_meaning,
                        "cd_aspects": fields.cd_aspects,
                        "sd_style": fields.sd_style,
                        "seed": sample_seed(recipe.seed, sample_id),
                        "cond_images": None,
                        "cond_aug": None,
                        "cond_lambda": None,
                        "shard": shard_name(config.name, config.split, shard_index),
                    }
                )
                if len(pending) == size:
                    yield pending[0]["shard"], pending
                    pending, shard_index = [], shard_index + 1
        if pending:
            yield pending[0]["shard"], pending


def _check_run_compatible(run_dir: Path, lock: Lock) -> None:
    """Refuse to re-plan a run whose finished shards were made under other generation settings."""
    if not (run_dir / LOCK_FILE).is_file():
        return
    previous = read_lock(run_dir)
    from synthset.generation.manifest import read_records

    if previous.generation_key != lock.generation_key and read_records(run_dir):
        raise SynthsetError(
            f"{run_dir}: has shards made with other generation settings (seed, generator, storage or model "
            "changed); give the recipe a new name to start a new run"
        )


def plan_run(recipe: Recipe) -> PlanSummary:
    """Write the lock, the classes and the plan of a recipe's run directory (each atomically)."""
    classes = load_class_set(recipe.classes.set)
    selected = select_classes(classes, recipe.classes.subset, recipe.classes.limit, recipe.classes.set)
    lock = make_lock(recipe)
    run_dir = recipe.run_dir
    _check_run_compatible(run_dir, lock)
    run_dir.mkdir(parents=True, exist_ok=True)
    label_names = [info.label_name for info in classes]
    schema = plan_features(label_names).arrow_schema
    rows_per_config: dict[str, int] = {}
    shards = 0
    with atomic_path(run_dir / PLAN_FILE) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for _, rows in iter_plan_shards(lock, selected, run_dir):
            writer.write_table(pa.Table.from_pylist(rows, schema=schema))  # one row group per shard
            rows_per_config[rows[0]["config"]] = rows_per_config.get(rows[0]["config"], 0) + len(rows)
            shards += 1
    write_classes(run_dir, classes, selected)
    write_lock(run_dir, lock)
    return PlanSummary(run_dir, sum(rows_per_config.values()), shards, rows_per_config)
