"""Label Ambiguity Resolution (paper A): pick the meaning of a class name that its real images show.

"crane" is a bird and a machine. The candidates come from `lar.candidates`: `wordnet` (the class's own
gloss and every WordNet synset sharing a lemma with the class name, from the tables timm ships), `llm` (the
meanings an LLM lists for the bare name, as paper A proposes them), or `both`. CLIP embeds each candidate
as text and M real images of the class; the candidate with the highest mean image-text cosine similarity
wins and becomes context in every later prompt of the class. Each candidate's origin is recorded
(`candidate_sources`) and so is the winner's (`meaning_from`), so a reader sees which source decided.
An `llm` class for which the LLM lists nothing usable keeps its own gloss (origin wordnet).

`lar_source` says how a meaning was chosen: `scored` (CLIP picked among several), `single` (only one
candidate: nothing to score), `no-real-images` (several candidates but no decodable real image: the
class's own gloss is kept), `no-candidates` (a custom class unknown to WordNet, without a gloss).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from synthset.classes.imagenet import synsets_sharing_a_lemma, wordnet_glosses
from synthset.errors import SynthsetError, first_line
from synthset.models import open_clip_reference
from synthset.run.classes_table import LARResult

if TYPE_CHECKING:
    from PIL.Image import Image

    from synthset.classes import ClassInfo
    from synthset.generation.real_images import RealImageSource
    from synthset.recipe import LARSpec

logger = logging.getLogger(__name__)


@dataclass
class ClipScorer:
    """An open_clip model with its preprocessing and tokenizer, and what to record about it."""

    model: Any
    preprocess: Any
    tokenizer: Any
    device: Any
    name: str
    batch_size: int

    def image_embeddings(self, images: list[Image]):
        import torch

        chunks = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                pixels = torch.stack([self.preprocess(im) for im in images[start : start + self.batch_size]])
                chunks.append(self.model.encode_image(pixels.to(self.device)).float())
        embeddings = torch.cat(chunks)
        return embeddings / embeddings.norm(dim=-1, keepdim=True)

    def text_embeddings(self, texts: list[str]):
        import torch

        with torch.inference_mode():
            embeddings = self.model.encode_text(self.tokenizer(texts).to(self.device)).float()
        return embeddings / embeddings.norm(dim=-1, keepdim=True)


def open_clip_identifier(spec: LARSpec) -> tuple[str, str | None]:
    """(model name for open_clip, pretrained tag): tiny test models and local directories as `local-dir:`."""
    name, pretrained, _ = open_clip_reference(spec.clip_model, spec.clip_pretrained, "lar.clip_model")
    return name, pretrained


def load_clip(spec: LARSpec) -> ClipScorer:
    import open_clip
    import torch

    name, pretrained = open_clip_identifier(spec)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained, device=device)
        tokenizer = open_clip.get_tokenizer(name)
    except Exception as error:  # noqa: BLE001 - unknown name, missing dir, no network: one line
        raise SynthsetError(f"lar.clip_model: cannot load {spec.clip_model!r}: {first_line(error)}") from None
    model.eval()
    return ClipScorer(model, preprocess, tokenizer, device, name, spec.batch_size)


def wordnet_meanings(info: ClassInfo) -> list[str]:
    """The class's own gloss first, then the glosses of every other synset sharing its name."""
    glosses = wordnet_glosses()
    meanings = [info.gloss] if info.gloss else []
    for wnid in synsets_sharing_a_lemma(info.class_name):
        gloss = glosses.get(wnid)
        if gloss and gloss not in meanings:
            meanings.append(gloss)
    return meanings


_LIST_MARKER = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*")


def meanings_request(info: ClassInfo, seed: int):
    """The LLM request that asks for the bare name's meanings (one per class)."""
    from synthset.generation.llm import LLMRequest

    prompt = (
        f'List the distinct meanings of the word "{info.class_name}" as short dictionary definitions, '
        "one per line, without numbering."
    )
    return LLMRequest(prompt=prompt, seed=seed)


def parse_meanings(text: str, max_chars: int = 200) -> list[str]:
    """The meanings of an answer, one per line, cleaned; garbage lines are dropped."""
    meanings = []
    for line in text.splitlines():
        line = _LIST_MARKER.sub("", line).strip().strip("\"'")
        if 8 <= len(line) <= max_chars and line.isprintable() and line not in meanings:
            meanings.append(line)
    return meanings


def candidate_text(class_name: str, meaning: str) -> str:
    """What CLIP embeds for a candidate: the name in the context of one meaning."""
    return f"{class_name}, {meaning}"


def score_meanings(scorer: ClipScorer, images: list[Image], class_name: str, meanings: list[str]) -> list[float]:
    """Mean over images of the cosine similarity between each image and each candidate text."""
    image_embeddings = scorer.image_embeddings(images)
    text_embeddings = scorer.text_embeddings([candidate_text(class_name, m) for m in meanings])
    return (image_embeddings @ text_embeddings.T).mean(dim=0).tolist()


def merge_candidates(wordnet: list[str], llm: list[str]) -> tuple[list[str], list[str]]:
    """(candidates, the source of each): WordNet's first, then the LLM's; one listed by both is `both`."""
    candidates = list(wordnet)
    sources = ["wordnet"] * len(wordnet)
    for meaning in llm:
        if meaning in candidates:
            sources[candidates.index(meaning)] = "both"
        else:
            candidates.append(meaning)
            sources.append("llm")
    return candidates, sources


def resolve_class_meaning(
    info: ClassInfo,
    real_images: RealImageSource | None,
    scorer_factory,
    images_per_class: int,
    extra_meanings: list[str] | None = None,
    candidate_source: str = "both",
) -> LARResult:
    """LAR for one class; `scorer_factory()` loads CLIP only if some class needs scoring.

    `candidate_source` is wordnet, llm or both; `extra_meanings` are the LLM's (None without an LLM).
    """
    wordnet = wordnet_meanings(info) if candidate_source in ("wordnet", "both") else []
    llm = list(extra_meanings or []) if candidate_source in ("llm", "both") else []
    if candidate_source == "llm" and not llm and info.gloss:
        wordnet = [info.gloss]  # the LLM listed nothing usable: the class keeps its own gloss
    candidates, sources = merge_candidates(wordnet, llm)
    if not candidates:
        return LARResult([], None, None, "no-candidates", [], None)
    if len(candidates) == 1:
        return LARResult(candidates, None, candidates[0], "single", sources, sources[0])
    images = [im.image for im in real_images.images_for(info.label, images_per_class)] if real_images else []
    if not images:
        kept = info.gloss if info.gloss in candidates else candidates[0]
        return LARResult(candidates, None, kept, "no-real-images", sources, sources[candidates.index(kept)])
    scores = score_meanings(scorer_factory(), images, info.class_name, candidates)
    best = max(range(len(candidates)), key=lambda i: scores[i])
    return LARResult(candidates, scores, candidates[best], "scored", sources, sources[best])
