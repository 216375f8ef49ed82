"""Contextual (CD) and style (SD) diversification (paper A): many different descriptions of one class.

For each image a CD prompt samples one foreground, background, lighting and camera aspect; an SD prompt
samples one style. The draws come from the sample's own seed, so the plan is the same on every re-run.
The aspects come from curated class-agnostic vocabularies, or (`prompts.cd_aspects: llm`, as paper A does
it) from lists the LLM proposes for each class: its plausible companions, backgrounds, lighting and
viewpoints (`propose_aspects`), cleaned like descriptions, retried, and replaced by the vocabulary when the
LLM gives no usable list.
The `template` backend writes the description itself from the words (the no-LLM baseline); an LLM is
instead asked, with SynCLR-style in-context examples, for one line that combines them.

Every LLM output is cleaned and checked before use (one line, bounded length, printable, names the
class or its meaning, no instructions or refusals, not a duplicate of the class's earlier prompts);
a bad one is retried with a new seed, and after `max_attempts` it is replaced by the template text and
counted.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from synthset.generation import vocabulary
from synthset.run.schema import CD_ASPECTS

if TYPE_CHECKING:
    from synthset.generation.llm import LLMCache
    from synthset.recipe import PromptsSpec

# Outputs that are an assistant talking, not an image description, or text trying to steer us.
_REJECT = re.compile(
    r"(ignore (all |the )?(previous|above|prior)|instruction|as an ai|language model|i cannot|i can't|i'm sorry|"
    r"sorry,|https?://|<\|)",
    re.IGNORECASE,
)
_LEADING_LABEL = re.compile(r"^\s*(description|caption|answer|output|prompt)\s*:\s*", re.IGNORECASE)


@dataclass
class PromptStats:
    """Counts for the plan summary: what the LLM gave and what had to be replaced."""

    llm_requests: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    replaced: int = 0
    aspect_lists_replaced: int = 0  # cd_aspects llm: per-class lists that fell back to the vocabulary

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1


@dataclass(frozen=True)
class Draft:
    """What a description must say: the class, its meaning, and either CD aspects or an SD style."""

    class_name: str
    meaning: str | None
    aspects: dict[str, str] | None = None
    style: str | None = None
    seed: int = 0


def aspect_vocabularies(spec: PromptsSpec) -> dict[str, Sequence[str]]:
    defaults = {
        "foreground": vocabulary.FOREGROUND,
        "background": vocabulary.BACKGROUND,
        "lighting": vocabulary.LIGHTING,
        "camera": vocabulary.CAMERA,
    }
    return {aspect: getattr(spec.aspects, aspect) or defaults[aspect] for aspect in CD_ASPECTS}


def draw_aspects(rng: random.Random, vocabularies: dict[str, Sequence[str]]) -> dict[str, str]:
    return {aspect: rng.choice(vocabularies[aspect]) for aspect in CD_ASPECTS}


def with_article(noun: str) -> str:
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def _subject(class_name: str, meaning: str | None) -> str:
    return f"{with_article(class_name)} ({meaning})" if meaning else with_article(class_name)


def template_description(draft: Draft) -> str:
    """The no-LLM description: the words combined in a fixed order."""
    subject = _subject(draft.class_name, draft.meaning)
    if draft.style is not None:
        return f"{with_article(draft.style)} of {subject}"
    a = draft.aspects or {}
    with_what = "" if a.get("foreground") == "no other objects" else f" with {a['foreground']},"
    return f"a photo of {subject},{with_what} in {a['background']}, {a['lighting']}, {a['camera']}"


def llm_instruction(draft: Draft, rng: random.Random) -> str:
    """A SynCLR-style few-shot prompt: three random examples, then the open line for this draft."""
    if draft.style is not None:
        examples = rng.sample(vocabulary.SD_EXAMPLES, 3)
        header = "Generate a one-sentence image description of the object category in the given style."
        shots = [f"{name}, {style} => {text}" for name, style, text in examples]
        query = f"{draft.class_name}{f' ({draft.meaning})' if draft.meaning else ''}, {draft.style} =>"
    else:
        examples = rng.sample(vocabulary.CD_EXAMPLES, 3)
        header = "Generate a one-sentence image description of the object category that combines the given aspects."
        shots = [f"{name}, {aspects} => {text}" for name, aspects, text in examples]
        aspects = "; ".join(f"{k}: {v}" for k, v in (draft.aspects or {}).items())
        query = f"{draft.class_name}{f' ({draft.meaning})' if draft.meaning else ''}, {aspects} =>"
    return "\n\n".join([header, *shots, query])


def _mentions(text: str, names: Sequence[str]) -> bool:
    lowered = text.lower().replace("-", " ")
    return any(name.lower().replace("-", " ") in lowered for name in names if name)


def clean_description(text: str, names: Sequence[str], max_chars: int) -> tuple[str | None, str]:
    """(the usable description, "ok") or (None, why it was rejected)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return None, "empty"
    line = _LEADING_LABEL.sub("", lines[0]).strip().strip("\"'`").strip()
    line = re.sub(r"\s+", " ", line)
    if not line:
        return None, "empty"
    if not line.isprintable():
        return None, "unprintable"
    if len(line) > max_chars:
        return None, "too long"
    if _REJECT.search(line):
        return None, "not a description"
    if not _mentions(line, names):
        return None, "does not name the class"
    return line, "ok"


def describe(
    drafts: list[Draft],
    names: Sequence[str],
    spec: PromptsSpec,
    llm: LLMCache | None,
    stats: PromptStats,
) -> list[str]:
    """One description per draft; LLM outputs are checked, retried, and replaced by the template if need be.

    All drafts of a class are requested together (one batch per attempt), so a backend batches well and
    duplicates within the class can be dropped.
    """
    if llm is None:
        return [template_description(d) for d in drafts]
    from synthset.generation.llm import LLMRequest

    results: list[str | None] = [None] * len(drafts)
    seen: set[str] = set()
    pending = list(range(len(drafts)))
    for attempt in range(spec.max_attempts):
        if not pending:
            break
        requests = []
        for i in pending:
            seed = drafts[i].seed + attempt * 1_000_003
            requests.append(LLMRequest(prompt=llm_instruction(drafts[i], random.Random(seed)), seed=seed))
        stats.llm_requests += len(requests)
        outputs = llm.complete(requests)
        still = []
        for i, output in zip(pending, outputs, strict=True):
            text, reason = clean_description(output, names, spec.max_chars)
            if text is not None and text.lower() in seen:
                text, reason = None, "duplicate"
            if text is None:
                stats.reject(reason)
                still.append(i)
            else:
                seen.add(text.lower())
                results[i] = text
        pending = still
    for i in pending:
        stats.replaced += 1
        results[i] = template_description(drafts[i])
    return [text for text in results if text is not None]  # every slot is filled by now


# -- per-class aspects proposed by the LLM (paper A's CD) -------------------------------------------------
ASPECT_QUESTIONS = {
    "foreground": "other objects or beings that could plausibly appear next to",
    "background": "plausible backgrounds or places for",
    "lighting": "plausible lighting conditions for",
    "camera": "plausible camera angles or viewpoints for",
}
MIN_ASPECTS = 3  # a shorter list is no diversity: retried, then replaced by the vocabulary
MAX_ASPECT_CHARS = 60


def aspect_instruction(aspect: str, class_name: str, meaning: str | None, count: int) -> str:
    """The question for one kind of aspect of one class."""
    subject = _subject(class_name, meaning)
    return (
        f"List {count} {ASPECT_QUESTIONS[aspect]} a photo of {subject}. "
        "Answer with one short phrase per line, without numbering or explanations."
    )


def clean_aspect_list(text: str, limit: int) -> list[str]:
    """The usable phrases of an LLM's list, in order, deduplicated: short, printable, not an assistant talking."""
    phrases: list[str] = []
    for line in text.splitlines():
        phrase = _LIST_MARKER.sub("", line).strip().strip("\"'`").rstrip(".;,").strip()
        phrase = re.sub(r"\s+", " ", phrase)
        if not phrase or len(phrase) > MAX_ASPECT_CHARS or not phrase.isprintable() or _REJECT.search(phrase):
            continue
        if ":" in phrase:  # "Here are 10 backgrounds:" and similar preambles
            continue
        if phrase.lower() not in (p.lower() for p in phrases):
            phrases.append(phrase)
        if len(phrases) == limit:
            break
    return phrases


_LIST_MARKER = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*")


def propose_aspects(
    class_name: str,
    meaning: str | None,
    vocabularies: dict[str, Sequence[str]],
    spec: PromptsSpec,
    llm: LLMCache,
    stats: PromptStats,
    seed: int,
) -> dict[str, Sequence[str]]:
    """Each kind of CD aspect for one class as the LLM proposes it; the vocabulary where it fails (counted).

    All pending kinds are asked together per attempt (one batch), every answer goes through the cache, and an
    attempt that yields fewer than MIN_ASPECTS usable phrases is retried with a new seed.
    """
    from synthset.generation.llm import LLMRequest

    proposed: dict[str, Sequence[str]] = {}
    pending = list(CD_ASPECTS)
    for attempt in range(spec.max_attempts):
        if not pending:
            break
        requests = [
            LLMRequest(
                aspect_instruction(aspect, class_name, meaning, spec.aspects_per_list),
                seed + 7919 * i + attempt * 1_000_003,
            )
            for i, aspect in enumerate(pending)
        ]
        stats.llm_requests += len(requests)
        still = []
        for aspect, text in zip(pending, llm.complete(requests), strict=True):
            phrases = clean_aspect_list(text, spec.aspects_per_list)
            if len(phrases) >= MIN_ASPECTS:
                proposed[aspect] = tuple(phrases)
            else:
                stats.reject("aspect list too short")
                still.append(aspect)
        pending = still
    for aspect in pending:
        stats.aspect_lists_replaced += 1
        proposed[aspect] = vocabularies[aspect]
    return {aspect: proposed[aspect] for aspect in CD_ASPECTS}
