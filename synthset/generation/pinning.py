"""Pinning a recipe: the Lock that `synthset plan` writes, with every model resolved to an exact version.

The generator is pinned to a Hub commit (or a hash of a local directory's files); the CLIP that scores
LAR meanings and the LLM that writes descriptions are pinned the same way when the recipe uses them,
and package versions are recorded. See `synthset.run.lock` for what the lock's hashes cover.
"""

from __future__ import annotations

import importlib.metadata
import platform

from synthset.errors import ModelError
from synthset.models import ResolvedModel, open_clip_reference, open_clip_revision, pin_model, resolve_pipeline
from synthset.recipe import Recipe, recipe_to_dict
from synthset.run.lock import Lock, generation_key, provenance_hash

VERSIONED_PACKAGES = ("synthset", "torch", "diffusers", "transformers", "accelerate", "datasets", "pyarrow")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def resolve_aux_models(recipe: Recipe) -> dict[str, dict[str, str]]:
    """Pin the CLIP that scores LAR meanings and the LLM that writes descriptions, when the recipe uses them."""
    pinned: dict[str, dict[str, str]] = {}
    if not recipe.uses_lar():
        return pinned
    if recipe.real_images is not None:
        name, pretrained, local = open_clip_reference(
            recipe.lar.clip_model, recipe.lar.clip_pretrained, "lar.clip_model"
        )
        model = recipe.lar.clip_model if local is not None else name
        pinned["clip"] = {"model": model, "revision": open_clip_revision(name, local, pretrained)}
    llm = recipe.prompts.llm
    if llm.backend == "transformers":
        pinned["llm"] = pin_model(llm.model or "", llm.revision, "prompts.llm.model")
    elif llm.backend == "openai":
        urls = ", ".join(endpoint.base_url for endpoint in llm.endpoint_list())
        pinned["llm"] = {"model": llm.model or "", "base_url": urls, "revision": "served"}
    return pinned


def resolve_quality_models(recipe: Recipe) -> dict[str, dict[str, str]]:
    """Pin the quality gate's CLIP and safety checker: they decide which images a run keeps."""
    quality = recipe.quality
    pinned: dict[str, dict[str, str]] = {}
    if quality is None:
        return pinned
    if quality.clip_model is not None:
        name, pretrained, local = open_clip_reference(quality.clip_model, quality.clip_pretrained, "quality.clip_model")
        if local is not None and not local.is_dir():
            raise ModelError(f"quality.clip_model: no such model directory: {str(local)!r}")
        pinned["quality_clip"] = {
            "model": quality.clip_model if local is not None else name,
            **({"path": str(local.resolve())} if local is not None else {}),
            "revision": open_clip_revision(name, local, pretrained),
        }
    if quality.checker is not None:
        pinned["safety_checker"] = pin_model(quality.checker, quality.checker_revision, "quality.checker")
    return pinned


def make_lock(recipe: Recipe) -> Lock:
    model: ResolvedModel = resolve_pipeline(recipe.generator.model, recipe.generator.revision)
    aux_models = {**resolve_aux_models(recipe), **resolve_quality_models(recipe)}
    recipe_data = recipe_to_dict(recipe)
    versions = package_versions()
    return Lock(
        recipe=recipe,
        model=model,
        versions=versions,
        generation_key=generation_key(recipe_data, model.revision, aux_models),
        provenance=provenance_hash(recipe_data, model.revision, aux_models, versions),
        aux_models=aux_models,
    )
