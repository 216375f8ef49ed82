"""Image embeddings for augcond rows: real images -> (augmented) CLIP image embeddings for unCLIP.

Every row is encoded on its own (one or two images through the pipeline's own CLIP image encoder), so
its embedding does not depend on the batch it lands in; every random number comes from the row's seed.
Before anything is encoded, each conditioning image is checked against the pool the plan recorded for the
row's config and class (conditioning_pool.parquet: the k shots of a few-shot config, the long-tail train
list of a fill-up): conditioning on an image outside it would leak data, so it is refused, not logged.

The `authors_code` variant of dropout acts after unCLIP's noise augmentation, inside the pipeline call, on
the 2048-d vector (noised image embedding + noise-level embedding). `ConditioningBatch.after_noising` wraps
the pipeline's `noise_image_embeddings` for one call to multiply each row by its mask.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from synthset.errors import SynthsetError
from synthset.generation.augment import Augmentation, parse_cond_aug

if TYPE_CHECKING:
    import torch

    from synthset.generation.real_images import RealImageSource
    from synthset.run.lock import Lock
    from synthset.run.paths import RunDir

_LAMBDA_STREAM = 1  # numpy stream of a sample's seed that draws lam
_DROPOUT_STREAM = 0x5EED  # xor'ed into the seed for the dropout mask's torch.Generator


@dataclass
class ConditioningBatch:
    """What one pipeline call needs: the image embeddings, each row's lam, and masks to apply after noising."""

    embeddings: torch.Tensor
    lambdas: list[float | None]
    after_noise_masks: torch.Tensor | None  # (rows, 2 * d) or None when no row drops after noising

    @contextlib.contextmanager
    def after_noising(self, pipe: Any) -> Iterator[None]:
        """For one call: multiply the pipeline's noised (image + noise-level) embeddings by the rows' masks."""
        if self.after_noise_masks is None:
            yield
            return
        masks = self.after_noise_masks
        original = pipe.noise_image_embeddings

        def noised_then_masked(*args: Any, **kwargs: Any) -> torch.Tensor:
            noised = original(*args, **kwargs)
            return noised * masks.to(device=noised.device, dtype=noised.dtype)

        pipe.noise_image_embeddings = noised_then_masked
        try:
            yield
        finally:
            del pipe.noise_image_embeddings  # the class's method shows through again


@dataclass
class Conditioner:
    pipe: Any
    source: RealImageSource
    pools: dict[str, dict[int, set[str]]]  # config -> label -> allowed real image ids
    guidance: bool = True  # classifier-free guidance on (guidance > 1): the authors' CutMix cuts that stack

    def check_pool(self, row: dict[str, Any]) -> None:
        allowed = self.pools.get(row["config"], {}).get(row["label"], set())
        for image_id in row["cond_images"] or []:
            if image_id not in allowed:
                raise SynthsetError(
                    f"{row['sample_id']}: conditioning image {image_id!r} is not in the pool of config "
                    f"{row['config']!r} for label {row['label']} (conditioning_pool.parquet: the config's k shots, "
                    "its long-tail train list, or its class's real images)"
                )

    def encode(self, images: list) -> torch.Tensor:
        import torch

        pixels = self.pipe.feature_extractor(images=images, return_tensors="pt").pixel_values
        encoder = self.pipe.image_encoder
        with torch.inference_mode():
            return encoder(pixels.to(device=encoder.device, dtype=encoder.dtype)).image_embeds.float().cpu()

    def _images(self, row: dict[str, Any]) -> list:
        images = []
        for image_id in row["cond_images"]:
            image = self.source.load(image_id)
            if image is None:
                raise SynthsetError(f"{row['sample_id']}: conditioning image {image_id!r} does not decode")
            images.append(image)
        return images

    def _mixed(self, augmentation: Augmentation, images: list, seed: int) -> tuple[torch.Tensor, float | None]:
        return EMBEDDINGS[augmentation.base](self, augmentation, images, seed)

    def row_embedding(self, row: dict[str, Any]) -> tuple[torch.Tensor, float | None, torch.Tensor | None]:
        """(embedding, lam, the mask to apply after noising or None) of one row."""
        import torch

        from synthset.generation import augment

        self.check_pool(row)
        augmentation = parse_cond_aug(row["cond_aug"])
        seed = row["seed"]
        embedding, lam = self._mixed(augmentation, self._images(row), seed)
        mask = None
        if augmentation.dropout:
            generator = torch.Generator().manual_seed(seed ^ _DROPOUT_STREAM)
            if augmentation.dropout_after_noise:
                # the noised vector is the image embedding plus an equally long noise-level embedding
                mask = augment.dropout_keep_mask((2 * embedding.shape[-1],), augmentation.p, generator).float()
            else:
                embedding = augment.embed_dropout(embedding, augmentation.p, generator)
        return embedding, lam, mask

    def embeddings(self, rows: list[dict[str, Any]]) -> ConditioningBatch:
        import torch

        encoded = [self.row_embedding(row) for row in rows]
        embeddings = torch.stack([embedding for embedding, _, _ in encoded])
        masks = None
        if any(mask is not None for _, _, mask in encoded):
            ones = torch.ones(2 * embeddings.shape[-1])
            masks = torch.stack([mask if mask is not None else ones for _, _, mask in encoded])
        return ConditioningBatch(embeddings, [lam for _, lam, _ in encoded], masks)


def _one_image(
    conditioner: Conditioner, augmentation: Augmentation, images: list, seed: int
) -> tuple[torch.Tensor, float | None]:
    """`none` and `dropout`: the first image's embedding (dropout acts on it afterwards)."""
    return conditioner.encode(images[:1])[0], None


def _pixel_mix(
    conditioner: Conditioner, augmentation: Augmentation, images: list, seed: int
) -> tuple[torch.Tensor, float | None]:
    """`pixel_mixup` and `pixel_cutmix`: mix the two images, then embed the mix."""
    from torchvision.transforms.functional import to_pil_image

    from synthset.generation import augment

    mixed, lam = augment.pixel_mix(images[0], images[1], augmentation.base, augmentation.alpha, seed)
    return conditioner.encode([to_pil_image(mixed)])[0], lam


def _embed_mix(
    conditioner: Conditioner, augmentation: Augmentation, images: list, seed: int
) -> tuple[torch.Tensor, float | None]:
    """`embed_mixup` and `embed_cutmix`: embed both images, then mix the embeddings with lam ~ Beta(alpha, alpha)."""
    import numpy as np

    from synthset.generation import augment

    lam = float(np.random.default_rng([seed, _LAMBDA_STREAM]).beta(augmentation.alpha, augmentation.alpha))
    first, second = conditioner.encode(images[:2])
    if augmentation.base == "embed_mixup":
        return augment.embed_mixup(first, second, lam), lam
    if augmentation.cutmix_on_batch_axis:
        return augment.embed_cutmix_batch_axis(first, second, lam, conditioner.guidance), lam
    return augment.embed_cutmix(first, second, lam), lam


# augmentation base (recipe.AUGMENTATION_BASES) -> how a row's conditioning embedding is made from its images
EMBEDDINGS: dict[str, Callable[[Conditioner, Augmentation, list, int], tuple[torch.Tensor, float | None]]] = {
    "none": _one_image,
    "pixel_mixup": _pixel_mix,
    "pixel_cutmix": _pixel_mix,
    "embed_mixup": _embed_mix,
    "embed_cutmix": _embed_mix,
    "dropout": _one_image,
}


def make_conditioner(pipe: Any, lock: Lock, run: RunDir) -> Conditioner:
    """The conditioner of an augcond run: its real-image source and the pools the plan recorded."""
    from synthset.generation.real_images import open_real_images
    from synthset.run.classes_table import read_class_infos
    from synthset.run.pools import read_pools

    recipe = lock.recipe
    if recipe.real_images is None:
        raise SynthsetError("real_images: augcond needs the real images that condition the generation")
    classes = read_class_infos(run)
    source = open_real_images(recipe.real_images, classes)
    return Conditioner(pipe, source, read_pools(run), guidance=recipe.generator.guidance > 1.0)
