"""recipe.lock.yaml: the recipe as given plus everything resolved, so a run is reproducible from its files.

The lock pins the model to a commit (a Hub commit hash, or for a local directory a hash of its files),
records package versions, and carries two hashes: `provenance` over all of it, and `generation_key` over
just what decides the pixels and bytes of an image (seed, generator settings, storage, model commit).
Shard records carry the generation key, so a shard made under other settings is never mistaken for
finished work.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from synthset.errors import SynthsetError, first_line
from synthset.fsutil import sha256_tree, write_text_atomic
from synthset.recipe import GeneratorSpec, Recipe, recipe_from_dict, recipe_to_dict

LOCK_FILE = "recipe.lock.yaml"
TESTING_SCHEME = "synthset-testing:"
HUB_ID_PATTERN = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
VERSIONED_PACKAGES = ("synthset", "torch", "diffusers", "transformers", "accelerate", "datasets", "pyarrow")


@dataclass(frozen=True)
class ResolvedModel:
    """Where the weights are loaded from and which exact version they are."""

    load_path: str  # what from_pretrained receives: a hub id or a local directory
    revision: str  # hub commit hash, or "sha256:<tree hash>" for a local directory
    source: str  # "hub" | "local"

    @property
    def hub_revision(self) -> str | None:
        """The revision to pass to from_pretrained: the pinned commit for hub models, none for local ones."""
        return self.revision if self.source == "hub" else None


def resolve_tiny_model(model: str, field_name: str) -> Path | None:
    """The directory of a `synthset-testing:<name>` model (built on first use), or None for any other string."""
    if not model.startswith(TESTING_SCHEME):
        return None
    from synthset import testing

    name = model.removeprefix(TESTING_SCHEME)
    if name not in testing.TINY_MODELS:
        known = ", ".join(sorted(testing.TINY_MODELS))
        raise SynthsetError(f"{field_name}: unknown tiny model {name!r} (known: {known})")
    return testing.tiny_model_path(name)


def _local_model_dir(model: str, field_name: str = "generator.model") -> Path | None:
    """The local directory a model string names (a path or a tiny test model), or None for a hub id."""
    tiny = resolve_tiny_model(model, field_name)
    if tiny is not None:
        return tiny
    path = Path(model).expanduser()
    if path.exists() or not HUB_ID_PATTERN.match(model):
        return path
    return None


def resolve_model(spec: GeneratorSpec) -> ResolvedModel:
    """Pin the recipe's model to an exact version; a missing path or unknown repo is a one-line error."""
    local = _local_model_dir(spec.model)
    if local is not None:
        if not (local / "model_index.json").is_file():
            what = "no such model directory" if not local.exists() else "not a diffusers pipeline directory"
            raise SynthsetError(f"generator.model: {what}: {str(local)!r} (model_index.json missing)")
        return ResolvedModel(str(local.resolve()), "sha256:" + sha256_tree(local), "local")
    from huggingface_hub import HfApi

    try:
        info = HfApi().model_info(spec.model, revision=spec.revision)
    except Exception as error:  # network, auth, 404: all end the same way for the user
        raise SynthsetError(f"generator.model: cannot resolve {spec.model!r} on the Hub: {first_line(error)}") from None
    return ResolvedModel(spec.model, info.sha, "hub")


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def _hash(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def generation_key(recipe_data: dict[str, Any], model_revision: str) -> str:
    """Hash of what decides an image's bytes given its plan row."""
    return _hash(
        {
            "seed": recipe_data["seed"],
            "generator": {k: v for k, v in recipe_data["generator"].items() if k != "model"},
            "storage": {k: v for k, v in recipe_data["storage"].items() if k not in ("shard_size",)},
            "model_revision": model_revision,
        }
    )[:16]


@dataclass(frozen=True)
class Lock:
    recipe: Recipe
    model: ResolvedModel
    versions: dict[str, str]
    generation_key: str
    provenance: str
    aux_models: dict[str, dict[str, str]] = field(default_factory=dict)  # "clip", "llm": what made the prompts


def _pin_local_or_hub(field_name: str, model: str, revision: str | None) -> dict[str, str]:
    """A model other than the generator (CLIP, LLM) pinned like the generator: tree hash or hub commit."""
    local = _local_model_dir(model, field_name)
    if local is not None:
        if not local.is_dir():
            raise SynthsetError(f"{field_name}: no such model directory: {str(local)!r}")
        return {"model": model, "path": str(local.resolve()), "revision": "sha256:" + sha256_tree(local)}
    from huggingface_hub import HfApi

    try:
        sha = HfApi().model_info(model, revision=revision).sha
    except Exception as error:  # network, auth, 404
        raise SynthsetError(f"{field_name}: cannot resolve {model!r} on the Hub: {first_line(error)}") from None
    return {"model": model, "revision": sha}


def resolve_aux_models(recipe: Recipe) -> dict[str, dict[str, str]]:
    """Pin the CLIP that scores LAR meanings and the LLM that writes descriptions, when the recipe uses them."""
    from synthset.generation.prompts import LAR_STRATEGIES, text_strategies

    strategies = text_strategies(recipe)
    pinned: dict[str, dict[str, str]] = {}
    if strategies & set(LAR_STRATEGIES) and recipe.real_images is not None:
        from synthset.generation.lar import open_clip_identifier

        name, pretrained = open_clip_identifier(recipe.lar)
        if name.startswith("local-dir:"):
            pinned["clip"] = {"model": recipe.lar.clip_model, "revision": "sha256:" + sha256_tree(Path(name[10:]))}
        else:
            pinned["clip"] = {"model": name, "revision": f"open_clip:{pretrained}"}
    llm = recipe.prompts.llm
    if llm.backend == "transformers" and strategies & set(LAR_STRATEGIES):
        pinned["llm"] = _pin_local_or_hub("prompts.llm.model", llm.model or "", llm.revision)
    elif llm.backend == "openai" and strategies & set(LAR_STRATEGIES):
        pinned["llm"] = {"model": llm.model or "", "base_url": llm.base_url or "", "revision": "served"}
    return pinned


def make_lock(recipe: Recipe) -> Lock:
    model = resolve_model(recipe.generator)
    aux_models = resolve_aux_models(recipe)
    recipe_data = recipe_to_dict(recipe)
    key = generation_key(recipe_data, model.revision)
    versions = _versions()
    provenance = _hash({"recipe": recipe_data, "model": model.revision, "aux": aux_models, "versions": versions})
    return Lock(recipe, model, versions, key, provenance[:16], aux_models)


def write_lock(run_dir: Path, lock: Lock) -> None:
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
    write_text_atomic(run_dir / LOCK_FILE, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def read_lock(run_dir: Path) -> Lock:
    path = run_dir / LOCK_FILE
    if not path.is_file():
        raise SynthsetError(f"{run_dir}: not a planned run directory ({LOCK_FILE} missing; run `synthset plan` first)")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    resolved = data["resolved"]
    return Lock(
        recipe=recipe_from_dict(data["recipe"], str(path)),
        model=ResolvedModel(resolved["model"], resolved["model_revision"], resolved["model_source"]),
        versions=resolved["versions"],
        generation_key=data["generation_key"],
        provenance=data["provenance"],
        aux_models=resolved.get("aux_models", {}),
    )
