"""Image embeddings for augcond rows: real images -> (augmented) CLIP image embeddings for unCLIP.

Every row is encoded on its own (one or two images through the pipeline's own CLIP image encoder), so
its embedding does not depend on the batch it lands in; every random number comes from the row's seed.
Before anything is encoded, each conditioning image is checked against the pool the row may use: the
k-shot subset for a few-shot config, the class's own images otherwise. Conditioning a few-shot dataset
on an image outside its k shots would leak data, so it is refused, not logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from synthset.errors import SynthsetError
from synthset.generation.augment import parse_cond_aug

if TYPE_CHECKING:
    import torch

    from synthset.generation.real_images import RealImageSource
    from synthset.run.lock import Lock
    from synthset.run.paths import RunDir

_LAMBDA_STREAM = 1  # numpy stream of a sample's seed that draws lam
_DROPOUT_STREAM = 0x5EED  # xor'ed into the seed for the dropout mask's torch.Generator


@dataclass
class Conditioner:
    pipe: Any
    source: RealImageSource
    pools: dict[str, dict[int, set[str]]]  # config -> label -> allowed real image ids

    def check_pool(self, row: dict[str, Any]) -> None:
        allowed = self.pools.get(row["config"], {}).get(row["label"], set())
        for image_id in row["cond_images"] or []:
            if image_id not in allowed:
                raise SynthsetError(
                    f"{row['sample_id']}: conditioning image {image_id!r} is not in the pool of config "
                    f"{row['config']!r} for label {row['label']} (few-shot configs may use only their k shots)"
                )

    def encode(self, images: list) -> torch.Tensor:
        import torch

        pixels = self.pipe.feature_extractor(images=images, return_tensors="pt").pixel_values
        encoder = self.pipe.image_encoder
        with torch.inference_mode():
            return encoder(pixels.to(device=encoder.device, dtype=encoder.dtype)).image_embeds.float().cpu()

    def row_embedding(self, row: dict[str, Any]) -> tuple[torch.Tensor, float | None]:
        import numpy as np
        import torch
        from torchvision.transforms.functional import to_pil_image

        from synthset.generation import augment

        self.check_pool(row)
        augmentation = parse_cond_aug(row["cond_aug"])
        images = []
        for image_id in row["cond_images"]:
            image = self.source.load(image_id)
            if image is None:
                raise SynthsetError(f"{row['sample_id']}: conditioning image {image_id!r} does not decode")
            images.append(image)
        seed = row["seed"]
        lam = None
        if augmentation.base in ("pixel_mixup", "pixel_cutmix"):
            mixed, lam = augment.pixel_mix(images[0], images[1], augmentation.base, augmentation.alpha, seed)
            embedding = self.encode([to_pil_image(mixed)])[0]
        elif augmentation.base in ("embed_mixup", "embed_cutmix"):
            lam = float(np.random.default_rng([seed, _LAMBDA_STREAM]).beta(augmentation.alpha, augmentation.alpha))
            first, second = self.encode(images[:2])
            mix = augment.embed_mixup if augmentation.base == "embed_mixup" else augment.embed_cutmix
            embedding = mix(first, second, lam)
        else:
            embedding = self.encode(images[:1])[0]
        if augmentation.dropout:
            generator = torch.Generator().manual_seed(seed ^ _DROPOUT_STREAM)
            embedding = augment.embed_dropout(embedding, augmentation.p, generator)
        return embedding, lam

    def embeddings(self, rows: list[dict[str, Any]]) -> tuple[torch.Tensor, list[float | None]]:
        import torch

        pairs = [self.row_embedding(row) for row in rows]
        return torch.stack([embedding for embedding, _ in pairs]), [lam for _, lam in pairs]


def make_conditioner(pipe: Any, lock: Lock, run: RunDir) -> Conditioner:
    """The conditioner of an augcond run: its real-image source and each config's allowed pools."""
    from synthset.classes import load_class_set
    from synthset.generation.real_images import open_real_images
    from synthset.run.shots import read_shots

    recipe = lock.recipe
    if recipe.real_images is None:
        raise SynthsetError("real_images: augcond needs the real images that condition the generation")
    classes = load_class_set(recipe.classes.set)
    source = open_real_images(recipe.real_images, classes)
    pools: dict[str, dict[int, set[str]]] = {}
    for config in recipe.configs:
        if config.shots is not None:
            pools[config.name] = {label: set(ids) for label, ids in read_shots(run, config.name).items()}
        else:
            pools[config.name] = {info.label: set(source.ids_for(info.label)) for info in classes}
    return Conditioner(pipe, source, pools)
