"""Augmentation-conditioning (paper B): augment the real image (or its CLIP embedding) that conditions unCLIP.

Both source images of a pair come from the same class, so the label stays the hard class label.
Augmentations, by name (each may be followed by `+dropout`):
  none          one real image, as it is
  pixel_mixup   torchvision v2 MixUp of two RandomResizedCrop(224) images
  pixel_cutmix  torchvision v2 CutMix of two RandomResizedCrop(224) images
  embed_mixup   e = lam * e1 + (1 - lam) * e2, lam ~ Beta(alpha, alpha)
  embed_cutmix  the first floor((1 - lam) * d) dimensions from e2, the rest from e1
  dropout       dropout on the embedding (p of the dimensions zeroed, the rest scaled by 1 / (1 - p),
                as torch's dropout does)

The plan picks the images and the augmentation; every random number after that (lam, crops, the CutMix
box, the dropout mask) comes from the sample's own seed, so a row regenerates exactly from its metadata.
`cond_aug` spells the parameters out, e.g. `embed_cutmix(alpha=1)+dropout(p=0.4)`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from synthset.recipe import AUGMENTATION_BASES, check_augmentation_name

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image

BASES = AUGMENTATION_BASES
PAIRED = ("pixel_mixup", "pixel_cutmix", "embed_mixup", "embed_cutmix")
CROP_SIZE = 224
_PARAMETERS = re.compile(
    r"^(?P<base>[a-z_]+)(?:\(alpha=(?P<alpha>[0-9.e-]+)\))?(?P<dropout>\+dropout\(p=(?P<p>[0-9.e-]+)\))?$"
)


@dataclass(frozen=True)
class Augmentation:
    base: str
    dropout: bool
    alpha: float = 1.0
    p: float = 0.4

    @property
    def paired(self) -> bool:
        return self.base in PAIRED

    @property
    def name(self) -> str:
        """The recipe name: `embed_cutmix+dropout`."""
        return self.base + ("+dropout" if self.dropout and self.base != "dropout" else "")

    def describe(self) -> str:
        """The `cond_aug` value: the name with every parameter that decides the result."""
        text = self.base + (f"(alpha={self.alpha:g})" if self.paired else "")
        if self.base == "dropout":
            return f"dropout(p={self.p:g})"
        return text + (f"+dropout(p={self.p:g})" if self.dropout else "")


def parse_name(name: str, alpha: float, p: float) -> Augmentation:
    """`embed_cutmix+dropout` -> Augmentation; raises ValueError naming the unknown part."""
    base, dropout = check_augmentation_name(name)
    # Parameters that play no part keep their defaults, so equal augmentations compare equal.
    return Augmentation(base, dropout, alpha=alpha if base in PAIRED else 1.0, p=p if dropout else 0.4)


def parse_cond_aug(text: str) -> Augmentation:
    """The Augmentation a row's `cond_aug` describes (the inverse of `Augmentation.describe`)."""
    if text.startswith("dropout(p="):
        return Augmentation("dropout", True, p=float(text[len("dropout(p=") : -1]))
    match = _PARAMETERS.match(text)
    if match is None:
        raise ValueError(f"not a cond_aug description: {text!r}")
    return Augmentation(
        match["base"],
        dropout=match["dropout"] is not None,
        alpha=float(match["alpha"] or 1.0),
        p=float(match["p"] or 0.4),
    )


# -- the arithmetic, on plain tensors ------------------------------------------------------------------
def embed_mixup(e1: torch.Tensor, e2: torch.Tensor, lam: float) -> torch.Tensor:
    return lam * e1 + (1 - lam) * e2


def embed_cutmix(e1: torch.Tensor, e2: torch.Tensor, lam: float) -> torch.Tensor:
    cut = math.floor((1 - lam) * e1.shape[-1])
    mixed = e1.clone()
    mixed[..., :cut] = e2[..., :cut]
    return mixed


def embed_dropout(e: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    import torch

    keep = torch.rand(e.shape, generator=generator) >= p
    return e * keep.to(e.dtype) / (1 - p)


def pixel_mix(first: Image, second: Image, kind: str, alpha: float, seed: int) -> tuple[torch.Tensor, float]:
    """torchvision v2 MixUp/CutMix of two RandomResizedCrop(224) crops: (mixed image in [0, 1], lam).

    torchvision draws crops, lam and the box from torch's global generator, so they run inside a forked
    RNG seeded from the sample; lam is read back from the mixed one-hot labels (CutMix adjusts it to the
    box area).
    """
    import torch
    from torchvision.transforms import v2

    to_tensor = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        crop = v2.RandomResizedCrop(CROP_SIZE, antialias=True)
        batch = torch.stack([crop(to_tensor(first)), crop(to_tensor(second))])
        mixer = (
            v2.CutMix(alpha=alpha, num_classes=2) if kind == "pixel_cutmix" else v2.MixUp(alpha=alpha, num_classes=2)
        )
        mixed, labels = mixer(batch, torch.tensor([0, 1]))
    return mixed[0].clamp(0, 1), float(labels[0, 0])
