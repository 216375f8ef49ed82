"""Quality figures for the card: mean CLIP score and intra-class diversity (Vendi score) per config.

Both need an open_clip model, so they are an optional step: `quality_figures(..., clip_model=...)`.
Scoring is capped at `per_class` images per class (the first ones in file order, so the figures are
reproducible) because embedding a whole 7.7M-image dataset for a card is not worth a GPU-day.

- CLIP score: 100 * max(cos(image, text), 0) with the text "a photo of a {class name}", the
  convention of CLIPScore as torchmetrics computes it; the card reports its mean over scored images.
- Vendi score (Friedman & Dieng, 2023): exp of the Shannon entropy of the eigenvalues of K/n, where K
  is the n x n cosine-similarity matrix of one class's CLIP image embeddings. It is 1 when all images
  are identical and n when they are mutually orthogonal: an "effective number of distinct images".
  The card reports its mean over classes, with n, since the score is bounded by n.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from synthset.errors import SynthsetError, first_line
from synthset.run import objects
from synthset.run.paths import RunDir

CLASS_PROMPT = "a photo of a {class_name}"


def vendi_score(embeddings: np.ndarray) -> float:
    """Vendi score of row vectors under cosine similarity: exp(entropy of eig(K / n)).

    The nonzero eigenvalues of X Xᵀ / n equal those of Xᵀ X / n, so the smaller Gram matrix is
    decomposed: d x d when there are more images than dimensions.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError("vendi_score needs a non-empty 2-D array of embeddings")
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    n = len(x)
    gram = (x.T @ x) / n if x.shape[1] < n else (x @ x.T) / n
    eigenvalues = np.clip(np.linalg.eigvalsh(gram), 0.0, None)
    eigenvalues = eigenvalues[eigenvalues > 1e-12]
    return float(np.exp(-np.sum(eigenvalues * np.log(eigenvalues))))


@dataclass(frozen=True)
class QualityFigures:
    config: str
    images: int  # images scored
    classes: int
    per_class: int  # the cap on images per class
    mean_clip_score: float
    mean_vendi: float  # mean over classes with at least 2 scored images


@dataclass(frozen=True)
class ClipModelInfo:
    """What the card records about the CLIP model: what was asked for, and the exact version used."""

    name: str
    revision: str


@dataclass
class _Clip:
    model: Any
    preprocess: Any
    tokenizer: Any
    info: ClipModelInfo


def _model_revision(name: str, local: Path | None, pretrained: str | None) -> str:
    """A pin for the card: a tree hash for a local dir, the Hub commit for hf-hub:, else the pretrained tag."""
    from synthset.models import open_clip_revision

    try:
        return open_clip_revision(name, local, pretrained)
    except SynthsetError as error:  # the figures stay valid; only the pin is unknown
        return f"unknown ({error})"


def load_clip(model: str, pretrained: str | None = None) -> _Clip:
    """Load an open_clip model by name (+ pretrained tag), hf-hub:<id>, local-dir:<path>, a directory,
    or synthset-testing:<tiny model>; a failure is one line naming the model."""
    import open_clip

    from synthset.models import open_clip_reference

    name, pretrained, local = open_clip_reference(model, pretrained, "--clip-model")
    try:
        clip, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained)
        tokenizer = open_clip.get_tokenizer(name)
    except Exception as error:  # noqa: BLE001 - unknown name, missing dir, no network: one line
        raise SynthsetError(f"--clip-model: cannot load {model!r}: {first_line(error)}") from None
    clip.eval()
    return _Clip(clip, preprocess, tokenizer, ClipModelInfo(model, _model_revision(name, local, pretrained)))


def _class_samples(run: RunDir, files: list[str], per_class: int) -> dict[int, tuple[str, list[bytes]]]:
    """label -> (class name, up to per_class image bytes), in file order. Each row group's labels are read
    first and its images only when it has a row to take (on an object store: by range requests)."""
    samples: dict[int, tuple[str, list[bytes]]] = {}
    for relative in files:
        with objects.parquet_file(run, run.dataset_dir / relative) as parquet:
            for group in range(parquet.num_row_groups):
                _take_from_group(parquet, group, samples, per_class)
    return samples


def _take_from_group(parquet: pq.ParquetFile, group: int, samples: dict, per_class: int) -> None:
    table = parquet.read_row_group(group, columns=["label", "class_name"]).to_pydict()
    taken: list[tuple[int, int]] = []  # (row, label)
    wanted = {label: per_class - len(entry[1]) for label, entry in samples.items()}
    for row, (label, name) in enumerate(zip(table["label"], table["class_name"], strict=True)):
        samples.setdefault(label, (name, []))
        if wanted.setdefault(label, per_class) > 0:
            wanted[label] -= 1
            taken.append((row, label))
    if taken:
        images = parquet.read_row_group(group, columns=["image"]).column("image").to_pylist()
        for row, label in taken:
            samples[label][1].append(images[row]["bytes"])


def _embed_images(clip: _Clip, images: list[bytes], batch_size: int) -> np.ndarray:
    import torch
    from PIL import Image

    chunks = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = [Image.open(io.BytesIO(b)).convert("RGB") for b in images[start : start + batch_size]]
            pixels = torch.stack([clip.preprocess(image) for image in batch])
            chunks.append(clip.model.encode_image(pixels).float())
    embeddings = torch.cat(chunks)
    return (embeddings / embeddings.norm(dim=-1, keepdim=True)).numpy()


def _embed_text(clip: _Clip, texts: list[str]) -> np.ndarray:
    import torch

    with torch.inference_mode():
        embeddings = clip.model.encode_text(clip.tokenizer(texts)).float()
    return (embeddings / embeddings.norm(dim=-1, keepdim=True)).numpy()


def quality_figures(
    run: RunDir,
    data_files: dict[str, dict[str, list[str]]],
    clip_model: str,
    pretrained: str | None = None,
    per_class: int = 50,
    batch_size: int = 64,
) -> tuple[ClipModelInfo, list[QualityFigures]]:
    """Score the first split of every config with one CLIP model."""
    clip = load_clip(clip_model, pretrained)
    figures = []
    for config, splits in data_files.items():
        samples = _class_samples(run, next(iter(splits.values()), []), per_class)
        labels = sorted(samples)
        texts = _embed_text(clip, [CLASS_PROMPT.format(class_name=samples[label][0]) for label in labels])
        scores, vendis = [], []
        for label, text in zip(labels, texts, strict=True):
            images = _embed_images(clip, samples[label][1], batch_size)
            scores.extend((100.0 * np.clip(images @ text, 0.0, None)).tolist())
            if len(images) >= 2:
                vendis.append(vendi_score(images))
        figures.append(
            QualityFigures(
                config=config,
                images=len(scores),
                classes=len(labels),
                per_class=per_class,
                mean_clip_score=float(np.mean(scores)) if scores else float("nan"),
                mean_vendi=float(np.mean(vendis)) if vendis else float("nan"),
            )
        )
    return clip.info, figures
