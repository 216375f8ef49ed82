"""The quality gate's models: a CLIP score and an NSFW verdict for every generated image, on the generation device.

Scoring happens in the generation process, on the decoded images of each pipeline call, before anything is
written (`make bench` measured it against a separate scoring stage, which would have to read and decode
every image again). Both models see exactly the batch the pipeline made, padding included, so every call
has the recipe's batch size: float reduction order depends on the batch shape, and a score must not
depend on the batch an image landed in. A class's text embedding is computed alone, for the same reason.

- CLIP score: 100 * max(cos(image, "a photo of a <class>"), 0) with the recipe's open_clip model, the
  CLIPScore convention (as torchmetrics computes it). The normalized image embedding also serves the
  near-duplicate check.
- NSFW: the diffusers `StableDiffusionSafetyChecker` (CompVis/stable-diffusion-safety-checker, the checker
  Stable Diffusion 1.x ships with). Its `forward` returns only a flag per image and blacks out flagged
  images; the gate needs the score too, so `checker_scores` computes the forward's own decision from the
  checker's parameters (concept embeddings and thresholds, special-care adjustment, rounding to 3
  decimals) and returns the highest concept score with it: flagged exactly when that score is > 0. A test
  holds it equal to `forward`'s flags.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synthset.errors import SynthsetError, first_line
from synthset.models import check_local_model, open_clip_reference

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL.Image import Image

    from synthset.recipe import QualitySpec
    from synthset.run.lock import Lock
    from synthset.run.paths import RunDir

logger = logging.getLogger(__name__)

CLIP_SCORE_PROMPT = "a photo of a {class_name}"
SPECIAL_CARE_ADJUSTMENT = 0.01  # the checker adds this to every concept score once a special-care concept fires


@dataclass(frozen=True)
class ImageScores:
    """What the gate knows about one image."""

    clip_score: float | None
    nsfw_score: float | None
    nsfw: bool | None
    embedding: Any = None  # the normalized CLIP image embedding (CPU float32 tensor), for near-duplicates


def float32(value: float) -> float:
    """`value` as the float32 the row stores: the gate decides on what a reader of the row sees."""
    import numpy as np

    return float(np.float32(value))


def checker_scores(checker: Any, pixel_values: torch.Tensor, adjustment: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(highest concept score, flagged) per image: `StableDiffusionSafetyChecker.forward`'s decision.

    Per image, every special-care score is round(cos - threshold + adjustment, 3); if one is > 0 the
    concept scores get 0.01 more. Every concept score is round(cos - threshold + adjustment, 3), and the
    image is flagged when one is > 0. With adjustment 0 this is the forward, float32 arithmetic included.
    """
    import numpy as np
    import torch

    with torch.inference_mode():
        pooled = checker.vision_model(pixel_values)[1]
        embeds = torch.nn.functional.normalize(checker.visual_projection(pooled))
        special_cos = (embeds @ torch.nn.functional.normalize(checker.special_care_embeds).T).cpu().float().numpy()
        concept_cos = (embeds @ torch.nn.functional.normalize(checker.concept_embeds).T).cpu().float().numpy()
    special_thresholds = checker.special_care_embeds_weights.detach().cpu().float().numpy()
    concept_thresholds = checker.concept_embeds_weights.detach().cpu().float().numpy()
    special = np.round(special_cos - special_thresholds + np.float32(adjustment), 3)
    special_care = (special > 0).any(axis=1)
    per_image = np.where(special_care, np.float32(adjustment + SPECIAL_CARE_ADJUSTMENT), np.float32(adjustment)).astype(
        np.float32
    )
    concepts = np.round(concept_cos - concept_thresholds + per_image[:, None], 3)
    return concepts.max(axis=1), (concepts > 0).any(axis=1)


def _model_location(pinned: dict[str, str]) -> tuple[str, str | None]:
    """(what from_pretrained receives, revision): the pinned local directory, or the hub id at its commit."""
    if "path" in pinned:
        return pinned["path"], None
    return pinned["model"], pinned["revision"]


class SafetyChecker:
    """The diffusers StableDiffusionSafetyChecker with its CLIP image processor (the CompVis repo's layout)."""

    def __init__(self, pinned: dict[str, str], device: torch.device, dtype: torch.dtype, adjustment: float) -> None:
        from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
        from transformers import CLIPImageProcessor

        from synthset.generation.diffusion import copy_module_to_aligned_memory

        location, revision = _model_location(pinned)
        try:
            revision = revision or "main"  # transformers' own default; a local directory ignores it
            self.processor = CLIPImageProcessor.from_pretrained(location, revision=revision)
            model = StableDiffusionSafetyChecker.from_pretrained(location, revision=revision, dtype=dtype)
        except (OSError, ValueError) as error:
            raise SynthsetError(
                f"quality.checker: cannot load {pinned['model']!r} as a StableDiffusionSafetyChecker with its "
                f"preprocessor_config.json: {first_line(error)}"
            ) from None
        model.to(device).eval()  # type: ignore[arg-type]  # transformers types .to() as a dtype-only call
        if device.type == "cpu":
            copy_module_to_aligned_memory(model)
        self.model, self.device, self.dtype, self.adjustment = model, device, dtype, adjustment

    def pixels(self, images: list[Image]) -> torch.Tensor:
        """The checker's own preprocessing (CPU work: `Screener.prepare` runs it beside the pipeline)."""
        return self.processor(images=images, return_tensors="pt").pixel_values

    def scores(self, pixels: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        return checker_scores(self.model, pixels.to(device=self.device, dtype=self.dtype), self.adjustment)


class ClipScorer:
    """An open_clip model that embeds a batch of images and scores each against its class's text."""

    def __init__(self, quality: QualitySpec, device: torch.device, dtype: torch.dtype) -> None:
        import open_clip

        from synthset.generation.diffusion import copy_module_to_aligned_memory

        name, pretrained, _ = open_clip_reference(
            quality.clip_model or "", quality.clip_pretrained, "quality.clip_model"
        )
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained)
            tokenizer = open_clip.get_tokenizer(name)
        except Exception as error:  # noqa: BLE001 - unknown name, missing dir, no network: one line
            raise SynthsetError(
                f"quality.clip_model: cannot load {quality.clip_model!r}: {first_line(error)}"
            ) from None
        model.to(device=device, dtype=dtype).eval()
        if device.type == "cpu":
            copy_module_to_aligned_memory(model)
        self.model, self.preprocess, self.tokenizer = model, preprocess, tokenizer
        self.device, self.dtype = device, dtype
        self._texts: dict[str, torch.Tensor] = {}

    def text_embedding(self, class_name: str) -> torch.Tensor:
        """The class's prompt embedded on its own (a batch of one, always), cached per class."""
        import torch

        if class_name not in self._texts:
            tokens = self.tokenizer([CLIP_SCORE_PROMPT.format(class_name=class_name)]).to(self.device)
            with torch.inference_mode():
                embedding = self.model.encode_text(tokens).float().cpu()[0]
            self._texts[class_name] = embedding / embedding.norm()
        return self._texts[class_name]

    def pixels(self, images: list[Image]) -> torch.Tensor:
        """open_clip's preprocessing of each image (CPU work: `Screener.prepare` runs it beside the pipeline)."""
        import torch

        return torch.stack([self.preprocess(image) for image in images])

    def image_embeddings(self, pixels: torch.Tensor) -> torch.Tensor:
        import torch

        with torch.inference_mode():
            embeddings = self.model.encode_image(pixels.to(device=self.device, dtype=self.dtype)).float().cpu()
        return embeddings / embeddings.norm(dim=-1, keepdim=True)


@dataclass(frozen=True)
class PreparedBatch:
    """A batch's model inputs, made on the CPU (resizing, cropping, normalizing: ~5-8 ms per 512 px image
    per model on one core, measured here), so the runner can make them while the pipeline makes the next batch."""

    clip_pixels: Any
    checker_pixels: Any


class Screener:
    """Loads the recipe's gate models once per process and scores whole pipeline batches."""

    def __init__(self, lock: Lock, run: RunDir, device: torch.device, dtype: str) -> None:
        import torch

        quality = lock.recipe.quality
        if quality is None:
            raise ValueError("Screener needs recipe.quality")
        self.quality = quality
        torch_dtype = getattr(torch, dtype)
        check_quality_models_unchanged(lock, run)
        self.clip = ClipScorer(quality, device, torch_dtype) if quality.clip_model is not None else None
        self.checker = None
        if quality.checker is not None:
            self.checker = SafetyChecker(
                lock.aux_models["safety_checker"], device, torch_dtype, quality.nsfw_adjustment
            )
        logger.debug("quality gate: clip=%s checker=%s on %s", quality.clip_model, quality.checker, device)

    def prepare(self, images: list[Image]) -> PreparedBatch:
        """The CPU half of scoring; thread-safe, so the runner calls it on a worker thread."""
        return PreparedBatch(
            self.clip.pixels(images) if self.clip is not None else None,
            self.checker.pixels(images) if self.checker is not None else None,
        )

    def score_prepared(self, prepared: PreparedBatch, rows: list[dict[str, Any]]) -> list[ImageScores]:
        """One CLIP and one checker call over the whole (padded) batch; a row's class names its text."""
        count = len(rows)
        clip_scores: list[float | None] = [None] * count
        embeddings: list[Any] = [None] * count
        if self.clip is not None:
            image_embeddings = self.clip.image_embeddings(prepared.clip_pixels)
            for i, row in enumerate(rows):
                cosine = float(image_embeddings[i] @ self.clip.text_embedding(row["class_name"]))
                clip_scores[i] = float32(100.0 * max(cosine, 0.0))  # decided on exactly the stored value
                embeddings[i] = image_embeddings[i]
        nsfw_scores: list[float | None] = [None] * count
        flags: list[bool | None] = [None] * count
        if self.checker is not None:
            scores, flagged = self.checker.scores(prepared.checker_pixels)
            nsfw_scores, flags = [float32(s) for s in scores], [bool(f) for f in flagged]
        return [ImageScores(c, n, f, e) for c, n, f, e in zip(clip_scores, nsfw_scores, flags, embeddings, strict=True)]

    def score(self, images: list[Image], rows: list[dict[str, Any]]) -> list[ImageScores]:
        return self.score_prepared(self.prepare(images), rows)


def check_quality_models_unchanged(lock: Lock, run: RunDir) -> None:
    """A local checker or CLIP directory must still hold the files the plan pinned: they decide what is kept."""
    for name, field_name in (("quality_clip", "quality.clip_model"), ("safety_checker", "quality.checker")):
        pinned = lock.aux_models.get(name) or {}
        if "path" in pinned and pinned.get("revision", "").startswith("sha256:"):
            check_local_model(Path(pinned["path"]), pinned["revision"], run.cache_dir / name, field_name)
