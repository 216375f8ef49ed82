"""Prompt strategies: how a plan row's text is made for a class.

A strategy is a plain function `(class_info, count, context) -> list[PromptFields]` registered in
`PROMPT_STRATEGIES` under the name a recipe config uses. The plan stage calls it; the diffusion runner
only ever reads the resulting plan columns, so adding a strategy never touches generation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from synthset.classes import ClassInfo
    from synthset.recipe import ConfigSpec, Recipe


@dataclass(frozen=True)
class PromptFields:
    """The plan columns a strategy fills for one image."""

    strategy: str
    prompt: str
    lar_meaning: str | None = None
    cd_aspects: dict[str, str] | None = None
    sd_style: str | None = None


@dataclass(frozen=True)
class PromptContext:
    """What a strategy may need beyond the class: the recipe, the config, and the run directory (for caches)."""

    recipe: Recipe
    config: ConfigSpec
    run_dir: Path


PromptStrategy = Callable[["ClassInfo", int, PromptContext], list[PromptFields]]


def naive_prompts(info: ClassInfo, count: int, context: PromptContext) -> list[PromptFields]:
    """The baseline of both papers: the bare class name in a fixed template."""
    return [PromptFields(strategy="naive", prompt=f"a photo of a {info.class_name}")] * count


PROMPT_STRATEGIES: dict[str, PromptStrategy] = {"naive": naive_prompts}
