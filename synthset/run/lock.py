"""recipe.lock.yaml: the recipe as given plus everything resolved, so a run is reproducible from its files.

The lock pins the model to a commit (a Hub commit hash, or for a local directory a hash of its files),
records package versions, and carries two hashes: `provenance` over all of it, and `generation_key` over
just what decides the pixels and bytes of an image (seed, generator settings, storage, model commit).
Shard records carry the generation key, so a shard made under other settings is never mistaken for
finished work. The key is also recomputed from the lock's own recipe whenever the lock is read: a lock
edited by hand after planning no longer matches its key and is refused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml

from synthset.errors import RunStateError
from synthset.fsutil import write_text_atomic
from synthset.models import ResolvedModel
from synthset.recipe import Recipe, recipe_from_dict, recipe_to_dict

if TYPE_CHECKING:
    from synthset.run.paths import RunDir


def _hash(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


# The columns of a generated row; raised whenever they change (2: the quality gate's columns), so a shard
# written with other columns is never taken for finished work.
ROW_FORMAT = 2
QUALITY_MODELS = ("quality_clip", "safety_checker")  # aux_models entries that decide which images are kept


def generation_key(recipe_data: dict[str, Any], model_revision: str, aux_models: dict | None = None) -> str:
    """Hash of what decides a shard's bytes given its plan rows: the image settings and, with a quality
    gate, its policy and the exact checker and CLIP that decide which images are kept."""
    key = {
        "row_format": ROW_FORMAT,
        "seed": recipe_data["seed"],
        "generator": {k: v for k, v in recipe_data["generator"].items() if k != "model"},
        "storage": {k: v for k, v in recipe_data["storage"].items() if k not in ("shard_size",)},
        "model_revision": model_revision,
    }
    if recipe_data.get("quality") is not None:
        models = aux_models or {}
        key["quality"] = recipe_data["quality"]
        key["quality_models"] = {name: (models.get(name) or {}).get("revision") for name in QUALITY_MODELS}
    return _hash(key)[:16]


def provenance_hash(recipe_data: dict[str, Any], model_revision: str, aux: dict, versions: dict[str, str]) -> str:
    return _hash({"recipe": recipe_data, "model": model_revision, "aux": aux, "versions": versions})[:16]


@dataclass(frozen=True)
class Lock:
    recipe: Recipe
    model: ResolvedModel
    versions: dict[str, str]
    generation_key: str
    provenance: str
    aux_models: dict[str, dict[str, str]] = field(default_factory=dict)  # "clip", "llm": what made the prompts


def write_lock(run: RunDir, lock: Lock) -> None:
    data = {
        "recipe": recipe_to_dict(lock.recipe),
        "resolved": {
            "model": lock.model.load_path,
            "model_revision": lock.model.revision,
            "model_source": lock.model.source,
            **({"aux_models": lock.aux_models} if lock.aux_models else {}),
            "versions": lock.versions,
        },
        "generation_key": lock.generation_key,
        "provenance": lock.provenance,
    }
    write_text_atomic(run.lock_file, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def _read_lock_data(run: RunDir) -> dict[str, Any]:
    """The lock's YAML as plain data, for `read_lock` alone (every stage reads the typed, checked `Lock`);
    a missing or broken file is one line."""
    path = run.lock_file
    if not path.is_file():
        raise RunStateError(f"{run}: not a planned run directory ({path.name} missing; run `synthset plan` first)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise RunStateError(f"{path}:{where}: not valid YAML; run `synthset plan` again to rewrite it") from None
    if not isinstance(data, dict):
        raise RunStateError(f"{path}: not a lock file (a YAML mapping); run `synthset plan` again to rewrite it")
    return data


def read_lock(run: RunDir) -> Lock:
    """The run's lock, checked: every key present, and its generation key still that of its recipe."""
    path = run.lock_file
    data = _read_lock_data(run)
    try:
        resolved = data["resolved"]
        recipe_data = data["recipe"]
        lock = Lock(
            recipe=recipe_from_dict(recipe_data, str(path)),
            model=ResolvedModel(resolved["model"], resolved["model_revision"], resolved["model_source"]),
            versions=resolved["versions"],
            generation_key=data["generation_key"],
            provenance=data["provenance"],
            aux_models=resolved.get("aux_models", {}),
        )
    except (KeyError, TypeError) as error:
        key = error.args[0] if isinstance(error, KeyError) else "a section"
        raise RunStateError(
            f"{path}: {key} missing or malformed; the lock is written by `synthset plan`, run it again"
        ) from None
    expected = generation_key(recipe_to_dict(lock.recipe), lock.model.revision, lock.aux_models)
    if expected != lock.generation_key:
        raise RunStateError(
            f"{path}: edited after planning (its recipe's generation settings no longer match generation_key "
            f"{lock.generation_key}); change the recipe file and run `synthset plan` instead"
        )
    return lock
