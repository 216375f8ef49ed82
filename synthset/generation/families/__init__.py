"""The model family registry: model_index.json's `_class_name` -> the module that knows that pipeline.

Everything synthset does differently per kind of pipeline (load arguments, extra call arguments, which
strategies it serves, memory figures) lives in that family's module (`sd.py`, `sdxl.py`, `unclip.py`),
the way diffusers keeps one folder per pipeline family and maps class names to pipelines in one table
(`diffusers/pipelines/auto_pipeline.py`). Adding a family is one module plus one entry here
(docs/model-families.md). A pipeline class with no entry runs as a plain text-to-image pipeline
(`OTHER`): loaded without a safety checker or watermark, memory counted from its files.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

from synthset.errors import ModelError
from synthset.generation.families import sd, sdxl, unclip
from synthset.generation.families.base import ModelFamily, ModelMemory, without_safety_checker

FAMILIES: dict[str, ModelFamily] = {
    "StableDiffusionPipeline": sd.FAMILY,
    "StableDiffusionXLPipeline": sdxl.FAMILY,
    "StableUnCLIPImg2ImgPipeline": unclip.FAMILY,
}


def _any_pipeline_load_kwargs(model_index: dict[str, Any]) -> dict[str, Any]:
    """No safety checker, and no watermark wherever the pipeline class takes `add_watermarker`."""
    import diffusers

    kwargs = without_safety_checker(model_index)
    pipeline_class = getattr(diffusers, str(model_index.get("_class_name")), None)
    if pipeline_class is not None and "add_watermarker" in inspect.signature(pipeline_class.__init__).parameters:
        kwargs["add_watermarker"] = False
    return kwargs


OTHER = ModelFamily(pipeline_class="", title="pipeline", load_kwargs=_any_pipeline_load_kwargs)


def family_for(pipeline_class: str | None) -> ModelFamily:
    """The family of a `_class_name` (OTHER for a class with no family)."""
    return FAMILIES.get(str(pipeline_class), OTHER)


def local_pipeline_class(load_path: str) -> str | None:
    """The `_class_name` of a local pipeline directory's model_index.json (None for a Hub id)."""
    index = Path(load_path) / "model_index.json"
    if not index.is_file():
        return None
    return json.loads(index.read_text(encoding="utf-8")).get("_class_name")


def load_kwargs(model_index: dict[str, Any]) -> dict[str, Any]:
    """from_pretrained arguments that follow from the repo's model_index.json and its family."""
    return family_for(model_index.get("_class_name")).load_kwargs(model_index)


def known_memory() -> dict[str, ModelMemory]:
    """Hub id -> measured memory figures, over every family."""
    return {hub_id: figures for family in FAMILIES.values() for hub_id, figures in family.memory.items()}


def augcond_mismatch(pipeline_class: str | None, model: str) -> ModelError:
    """The one line for augcond on a family that is not image-conditioned (augcond needs unCLIP)."""
    return ModelError(
        f"generator.model: augcond needs an unCLIP image-variation pipeline "
        f"(e.g. stabilityai/stable-diffusion-2-1-unclip), {model!r} is a {pipeline_class}"
    )


def check_strategies_fit(pipeline_class: str, model: str, uses_augcond: bool) -> None:
    """An image-conditioned family serves augcond, and augcond needs one (what `plan --check` refuses).

    Raises:
        ModelError: one line naming `generator.model`.
    """
    family = family_for(pipeline_class)
    if uses_augcond and not family.conditions_on_images:
        raise augcond_mismatch(pipeline_class, model)
    if family.conditions_on_images and not uses_augcond:
        raise ModelError(f"generator.model: {model!r} is an {family.title} pipeline: it needs augcond")
