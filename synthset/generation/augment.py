"""Augmentation-conditioning (paper B): augment the real image (or its CLIP embedding) that conditions unCLIP.

Both source images of a pair come from the same class, so the label stays the hard class label.
Augmentations, by name (each may be followed by `+dropout`):
  none          one real image, as it is
  pixel_mixup   torchvision v2 MixUp of two RandomResizedCrop(224) images
  pixel_cutmix  torchvision v2 CutMix of two RandomResizedCrop(224) images
  embed_mixup   e = lam * e1 + (1 - lam) * e2, lam ~ Beta(alpha, alpha)
  embed_cutmix  the first floor((1 - lam) * d) dimensions from e2, the rest from e1
  dropout       p of the embedding's dimensions zeroed

Where the method as described (research notes on paper B's abstract and code: its full text was not read) and
its authors' code (JiahuiKChen/diffusers, `pipeline_stable_unclip_img2img.py`) disagree, the default
(`variant: paper`) follows the description and `variant: authors_code` reproduces the code, the only one that
can chase a published number (docs/papers.md):

  dropout       paper: torch's inverted dropout on the 1024-d CLIP image embedding before unCLIP's noise
                augmentation (survivors scaled by 1 / (1 - p)).
                authors_code: `F.dropout(e, p) * (1 - p)` on the 2048-d noised embedding (the image part
                plus the noise-level embedding unCLIP appends): the two scalings cancel, so survivors keep
                their value, and 40% of the noise-level half is zeroed too.
  embed_cutmix  paper: cut along the feature dimensions (above).
                authors_code: the cut runs along dim 0 of the (uncond zeros, cond) guidance stack, so
                `int((1 - lam) * 2)` rows come from e2: row 0 is zeros in both, and the result is e1
                unless lam == 0 exactly. In effect a no-op: "embed_cutmix" conditions on one image.

The plan picks the images and the augmentation; every random number after that (lam, crops, the CutMix
box, the dropout mask) comes from the sample's own seed, so a row regenerates exactly from its metadata.
`cond_aug` spells the parameters out, e.g. `embed_cutmix(alpha=1)+dropout(p=0.4)`, with `@authors_code`
appended when that variant changes the result.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from synthset.recipe import AUGMENTATION_BASES, AUGMENTATION_VARIANTS, check_augmentation_name

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image

BASES = AUGMENTATION_BASES
PAIRED = ("pixel_mixup", "pixel_cutmix", "embed_mixup", "embed_cutmix")
CROP_SIZE = 224
AUTHORS_CODE = "authors_code"
_PARAMETERS = re.compile(
    r"^(?P<base>[a-z_]+)(?:\(alpha=(?P<alpha>[0-9.e-]+)\))?(?P<dropout>\+dropout\(p=(?P<p>[0-9.e-]+)\))?"
    r"(?:@(?P<variant>[a-z_]+))?$"
)
_DROPOUT_ONLY = re.compile(r"^dropout\(p=(?P<p>[0-9.e-]+)\)(?:@(?P<variant>[a-z_]+))?$")


@dataclass(frozen=True)
class Augmentation:
    base: str
    dropout: bool
    alpha: float = 1.0
    p: float = 0.4
    variant: str = "paper"

    @property
    def paired(self) -> bool:
        return self.base in PAIRED

    @property
    def name(self) -> str:
        """The recipe name: `embed_cutmix+dropout`."""
        return self.base + ("+dropout" if self.dropout and self.base != "dropout" else "")

    @property
    def dropout_after_noise(self) -> bool:
        """The authors' dropout: a mask on the 2048-d noised embedding, survivors unscaled."""
        return self.dropout and self.variant == AUTHORS_CODE

    @property
    def cutmix_on_batch_axis(self) -> bool:
        return self.base == "embed_cutmix" and self.variant == AUTHORS_CODE

    def describe(self) -> str:
        """The `cond_aug` value: the name with every parameter that decides the result."""
        suffix = f"@{self.variant}" if self.variant != "paper" else ""
        if self.base == "dropout":
            return f"dropout(p={self.p:g}){suffix}"
        text = self.base + (f"(alpha={self.alpha:g})" if self.paired else "")
        return text + (f"+dropout(p={self.p:g})" if self.dropout else "") + suffix


def variant_matters(base: str, dropout: bool) -> bool:
    """Whether paper text and authors' code give different results for this augmentation."""
    return dropout or base == "embed_cutmix"


def parse_name(name: str, alpha: float, p: float, variant: str = "paper") -> Augmentation:
    """`embed_cutmix+dropout` -> Augmentation; raises ValueError naming the unknown part."""
    base, dropout = check_augmentation_name(name)
    if variant not in AUGMENTATION_VARIANTS:
        raise ValueError(f"unknown augmentation variant {variant!r} (known: {', '.join(AUGMENTATION_VARIANTS)})")
    # Parameters that play no part keep their defaults, so equal augmentations compare equal.
    return Augmentation(
        base,
        dropout,
        alpha=alpha if base in PAIRED else 1.0,
        p=p if dropout else 0.4,
        variant=variant if variant_matters(base, dropout) else "paper",
    )


def parse_cond_aug(text: str) -> Augmentation:
    """The Augmentation a row's `cond_aug` describes (the inverse of `Augmentation.describe`)."""
    only = _DROPOUT_ONLY.match(text)
    if only is not None and (only["variant"] or "paper") in AUGMENTATION_VARIANTS:
        return Augmentation("dropout", True, p=float(only["p"]), variant=only["variant"] or "paper")
    match = _PARAMETERS.match(text)
    if match is None or match["base"] not in BASES or (match["variant"] or "paper") not in AUGMENTATION_VARIANTS:
        raise ValueError(f"not a cond_aug description: {text!r}")
    return Augmentation(
        match["base"],
        dropout=match["dropout"] is not None,
        alpha=float(match["alpha"] or 1.0),
        p=float(match["p"] or 0.4),
        variant=match["variant"] or "paper",
    )


# -- the arithmetic, on plain tensors ------------------------------------------------------------------
def embed_mixup(e1: torch.Tensor, e2: torch.Tensor, lam: float) -> torch.Tensor:
    return lam * e1 + (1 - lam) * e2


def embed_cutmix(e1: torch.Tensor, e2: torch.Tensor, lam: float) -> torch.Tensor:
    """Paper B's text: the first floor((1 - lam) * d) dimensions from e2, the rest from e1."""
    cut = math.floor((1 - lam) * e1.shape[-1])
    mixed = e1.clone()
    mixed[..., :cut] = e2[..., :cut]
    return mixed


def embed_cutmix_batch_axis(e1: torch.Tensor, e2: torch.Tensor, lam: float, guidance: bool) -> torch.Tensor:
    """The authors' code: cut the guidance stack (zeros row for the unconditional pass, then e) along dim 0.

    Returns the conditional row of the mixed stack: e1 unless `int((1 - lam) * rows)` reaches every row.
    """
    import torch

    def stack(e: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.zeros_like(e), e]) if guidance else e[None]

    first, second = stack(e1), stack(e2)
    cut = int((1 - lam) * first.shape[0])
    return torch.cat([second[:cut], first[cut:]])[-1]


def dropout_keep_mask(shape: tuple[int, ...], p: float, generator: torch.Generator) -> torch.Tensor:
    """True where a dimension survives: each is dropped with probability p (one uniform draw per element)."""
    import torch

    return torch.rand(shape, generator=generator) >= p


def embed_dropout(e: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Paper B's text, as torch's dropout: zero p of the dimensions, scale the survivors by 1 / (1 - p)."""
    keep = dropout_keep_mask(tuple(e.shape), p, generator)
    return e * keep.to(e.dtype) / (1 - p)


def embed_dropout_unscaled(e: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """The authors' code, `F.dropout(e, p) * (1 - p)`: zero p of the dimensions, survivors unchanged."""
    return e * dropout_keep_mask(tuple(e.shape), p, generator).to(e.dtype)


def pixel_mix(first: Image, second: Image, kind: str, alpha: float, seed: int) -> tuple[torch.Tensor, float]:
    """torchvision v2 MixUp/CutMix of two RandomResizedCrop(224) crops: (mixed image in [0, 1], lam).

    As the authors' code: each image is cropped as uint8 (PILToTensor, RandomResizedCrop(224) with its
    default scale and ratio), then converted to float in [0, 1], and the pair is mixed with row 0 as the
    base. torchvision draws crops, lam and the box from torch's global generator, so they run inside a
    forked RNG seeded from the sample; lam is read back from the mixed one-hot labels (CutMix adjusts it
    to the box area).
    """
    import torch
    from torchvision.transforms import v2

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        crops = pixel_crops(first, second)
        mixer = (
            v2.CutMix(alpha=alpha, num_classes=2) if kind == "pixel_cutmix" else v2.MixUp(alpha=alpha, num_classes=2)
        )
        mixed, labels = mixer(crops, torch.tensor([0, 1]))
    return mixed[0].clamp(0, 1), float(labels[0, 0])


def pixel_crops(first: Image, second: Image) -> torch.Tensor:
    """The two RandomResizedCrop(224) crops, cropped as uint8 then scaled to [0, 1] (draws from torch's RNG)."""
    import torch
    from torchvision.transforms import v2

    crop = v2.Compose(
        [v2.PILToTensor(), v2.RandomResizedCrop(CROP_SIZE, antialias=True), v2.ToDtype(torch.float32, scale=True)]
    )
    return torch.stack([crop(first.convert("RGB")), crop(second.convert("RGB"))])
