"""Prompt strategies: how a plan row's text is made for a class.

A strategy is a plain function `(class_info, indices, context) -> list[PromptFields]` registered in
`PROMPT_STRATEGIES` under the name a recipe config uses. The plan stage calls it; the diffusion runner
only ever reads the resulting plan columns, so adding a strategy never touches generation.

The strategies form paper A's ablation ladder: `naive` (the class name in a template), `lar` (plus the
meaning Label Ambiguity Resolution chose), `lar_cd` (contextual descriptions), `lar_cd_sd` (contextual
and style descriptions mixed at the config's `sd_ratio`). The row's `strategy` column says which kind
of prompt it got: naive, lar, cd or sd.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from synthset.generation.diversify import (
    Draft,
    PromptStats,
    aspect_vocabularies,
    describe,
    draw_aspects,
    propose_aspects,
)

if TYPE_CHECKING:
    from synthset.classes import ClassInfo
    from synthset.generation.llm import LLMCache
    from synthset.recipe import ConfigSpec, Recipe
    from synthset.run.classes_table import LARResult
    from synthset.run.paths import RunDir


@dataclass(frozen=True)
class PromptFields:
    """The plan columns a strategy fills for one image."""

    strategy: str
    prompt: str
    lar_meaning: str | None = None
    cd_aspects: dict[str, str] | None = None
    sd_style: str | None = None
    cond_images: list[str] | None = None
    cond_aug: str | None = None


@dataclass
class PromptContext:
    """What a strategy may need beyond the class: the recipe and config, LAR results, the LLM, counters."""

    recipe: Recipe
    config: ConfigSpec
    run: RunDir
    meanings: dict[int, LARResult] = field(default_factory=dict)
    llm: LLMCache | None = None
    stats: PromptStats = field(default_factory=PromptStats)
    # label -> the real image ids augcond may condition on (the k-shot subset for few-shot configs)
    conditioning_pools: dict[int, list[str]] = field(default_factory=dict)
    # label -> its CD aspect lists (with cd_aspects llm: asked once per class, shared by every band)
    aspect_lists: dict[int, dict] = field(default_factory=dict)

    def meaning(self, label: int) -> str | None:
        result = self.meanings.get(label)
        return result.meaning if result is not None else None

    def prompt_meaning(self, label: int) -> str | None:
        """The meaning as prompt context: its first clause, so the prompt stays within CLIP's 77 tokens."""
        meaning = self.meaning(label)
        return meaning.split(";")[0].strip() if meaning else None

    def rng(self, label: int, index: int) -> random.Random:
        """The prompt draws of one sample: from the recipe seed and the sample id, like its image seed."""
        from synthset.run.ids import make_sample_id

        return random.Random(f"prompt/{self.recipe.seed}/{make_sample_id(self.config.name, label, index)}")


# (class, the image indices of the class to write prompts for, context): one PromptFields per index.
# Indices, not a count, because a scale band covers indices [k * n, (k + 1) * n) and each sample's draws
# come from its own index: growing a run from 2x to 6x leaves the first two bands' prompts unchanged.
PromptStrategy = Callable[["ClassInfo", range, PromptContext], list[PromptFields]]


def naive_prompts(info: ClassInfo, indices: range, context: PromptContext) -> list[PromptFields]:
    """The baseline of both papers: the bare class name in a fixed template."""
    return [PromptFields(strategy="naive", prompt=f"a photo of a {info.class_name}")] * len(indices)


def lar_prompts(info: ClassInfo, indices: range, context: PromptContext) -> list[PromptFields]:
    """The class name with its resolved meaning as context, e.g. "a photo of a crane, large ... bird"."""
    meaning = context.prompt_meaning(info.label)
    prompt = f"a photo of a {info.class_name}, {meaning}" if meaning else f"a photo of a {info.class_name}"
    return [PromptFields(strategy="lar", prompt=prompt, lar_meaning=context.meaning(info.label))] * len(indices)


def is_style_index(index: int, ratio: float) -> bool:
    """Spread round(count * ratio) style prompts evenly over the indices: exact count, deterministic."""
    return int((index + 1) * ratio + 1e-9) > int(index * ratio + 1e-9)


def class_aspects(info: ClassInfo, context: PromptContext) -> dict:
    """The CD aspect lists of a class: the vocabularies, or (cd_aspects llm) the LLM's proposals for it."""
    spec = context.recipe.prompts
    vocabularies = aspect_vocabularies(spec)
    if spec.cd_aspects != "llm" or context.llm is None:
        return vocabularies
    if info.label not in context.aspect_lists:
        from synthset.run.ids import sample_seed

        seed = sample_seed(context.recipe.seed, f"aspects/{info.label}")
        context.aspect_lists[info.label] = propose_aspects(
            info.class_name, context.prompt_meaning(info.label), vocabularies, spec, context.llm, context.stats, seed
        )
    return context.aspect_lists[info.label]


def _diversified(info: ClassInfo, indices: range, context: PromptContext, sd_ratio: float) -> list[PromptFields]:
    spec = context.recipe.prompts
    meaning = context.prompt_meaning(info.label)
    vocabularies = class_aspects(info, context)
    drafts = []
    for index in indices:
        rng = context.rng(info.label, index)
        seed = rng.getrandbits(63)
        if is_style_index(index, sd_ratio):
            drafts.append(Draft(info.class_name, meaning, style=rng.choice(spec.styles), seed=seed))
        else:
            drafts.append(Draft(info.class_name, meaning, aspects=draw_aspects(rng, vocabularies), seed=seed))
    names = [info.class_name, info.label_name]
    if info.wnid:
        from synthset.classes.imagenet import wordnet_lemmas

        names += wordnet_lemmas().get(info.wnid, [])
    texts = describe(drafts, names, spec, context.llm, context.stats)
    return [
        PromptFields(
            strategy="sd" if draft.style is not None else "cd",
            prompt=text,
            lar_meaning=context.meaning(info.label),
            cd_aspects=draft.aspects,
            sd_style=draft.style,
        )
        for draft, text in zip(drafts, texts, strict=True)
    ]


def lar_cd_prompts(info: ClassInfo, indices: range, context: PromptContext) -> list[PromptFields]:
    return _diversified(info, indices, context, sd_ratio=0.0)


def lar_cd_sd_prompts(info: ClassInfo, indices: range, context: PromptContext) -> list[PromptFields]:
    return _diversified(info, indices, context, sd_ratio=context.config.sd_ratio)


def augcond_prompts(info: ClassInfo, indices: range, context: PromptContext) -> list[PromptFields]:
    """Paper B: a prompt plus the real images and augmentation that will condition unCLIP.

    The plan picks the augmentation (by the recipe's weights) and the image ids from the class's pool,
    both from the sample's own draws; generation applies them (see `synthset.generation.augment`).
    """
    from synthset.errors import SynthsetError
    from synthset.generation.augment import parse_name

    options = context.config.augcond_options
    pool = context.conditioning_pools.get(info.label, [])
    if not pool:
        raise SynthsetError(
            f"configs: {context.config.name} has no real image of class {info.label_name!r} to condition on"
        )
    if options.prompt_strategy:
        texts = PROMPT_STRATEGIES[options.prompt_strategy](info, indices, context)
    else:
        from synthset.classes.imagenet import synonym_string

        prompt = options.prompt.format(class_name=info.class_name, synonyms=synonym_string(info))
        texts = [PromptFields(strategy="augcond", prompt=prompt)] * len(indices)
    augmentations = [
        parse_name(name, options.alpha, options.dropout, options.variant) for name in options.augmentations
    ]
    weights = list(options.augmentations.values())
    fields = []
    for index, text in zip(indices, texts, strict=True):
        rng = context.rng(info.label, index)
        augmentation = rng.choices(augmentations, weights)[0]
        if not augmentation.paired:
            images = [rng.choice(pool)]
        else:
            images = rng.sample(pool, 2) if len(pool) >= 2 else [pool[0], pool[0]]
        fields.append(
            PromptFields(
                strategy="augcond",
                prompt=text.prompt,
                lar_meaning=text.lar_meaning,
                cd_aspects=text.cd_aspects,
                sd_style=text.sd_style,
                cond_images=images,
                cond_aug=augmentation.describe(),
            )
        )
    return fields


PROMPT_STRATEGIES: dict[str, PromptStrategy] = {
    "naive": naive_prompts,
    "lar": lar_prompts,
    "lar_cd": lar_cd_prompts,
    "lar_cd_sd": lar_cd_sd_prompts,
    "augcond": augcond_prompts,
}
