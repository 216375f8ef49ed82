"""Each conditioning augmentation against a direct formula: paper B's text (default) and its authors' code."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from synthset.generation import augment
from synthset.generation.augment import Augmentation, parse_cond_aug, parse_name
from synthset.generation.conditioning import ConditioningBatch

VARIANT_NAMES = ["none", "pixel_mixup", "pixel_cutmix+dropout", "embed_mixup", "embed_cutmix", "embed_cutmix+dropout"]


def noise_image(seed: int, size: tuple[int, int] = (300, 260)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


@pytest.mark.parametrize("lam", [0.0, 0.01, 0.3, 0.5, 0.99, 1.0])
@pytest.mark.parametrize("guidance", [True, False])
def test_authors_embed_cutmix_cuts_the_guidance_batch_axis(lam: float, guidance: bool):
    e1, e2 = torch.randn(1024), torch.randn(1024)
    # The authors' line, on the (uncond zeros, cond) stack of their pipeline: dim 0, int((1 - lam) * rows).
    s1 = torch.stack([torch.zeros(1024), e1]) if guidance else e1[None]
    s2 = torch.stack([torch.zeros(1024), e2]) if guidance else e2[None]
    cut = int((1 - lam) * s1.size()[0])
    expected = torch.cat((s2[:cut], s1[cut:]), 0)[-1]
    result = augment.embed_cutmix_batch_axis(e1, e2, lam, guidance)
    assert torch.equal(result, expected)
    # ... which is the first image's embedding unless lam is exactly 0: in effect no mix at all.
    assert torch.equal(result, e2 if lam == 0.0 else e1)


def test_paper_dropout_is_inverted_dropout_of_the_image_embedding():
    e = torch.randn(1024)
    p = 0.4
    result = augment.embed_dropout(e, p, torch.Generator().manual_seed(5))
    keep = torch.rand(1024, generator=torch.Generator().manual_seed(5)) >= p
    assert torch.equal(result, e * keep.float() / (1 - p))
    assert result.shape == (1024,)


def test_authors_dropout_keeps_survivors_unscaled():
    e = torch.randn(2048)
    p = 0.4
    result = augment.embed_dropout_unscaled(e, p, torch.Generator().manual_seed(9))
    keep = torch.rand(2048, generator=torch.Generator().manual_seed(9)) >= p
    assert torch.equal(result, e * keep.float())
    # The authors' expression, F.dropout(e, p) * (1 - p): survivors come back to their own value.
    theirs = torch.nn.functional.dropout(e, p=p, training=True) * (1 - p)
    survived = theirs != 0
    torch.testing.assert_close(theirs[survived], e[survived])
    assert abs(float((~survived).float().mean()) - p) < 0.05


def test_dropout_mask_drops_p_of_the_dimensions():
    generator = torch.Generator().manual_seed(0)
    fractions = [float((~augment.dropout_keep_mask((1000,), 0.4, generator)).float().mean()) for _ in range(200)]
    assert abs(np.mean(fractions) - 0.4) < 0.005


def test_pixel_mixup_is_the_convex_combination_of_the_two_crops():
    first, second = noise_image(1), noise_image(2, (180, 320))
    mixed, lam = augment.pixel_mix(first, second, "pixel_mixup", 1.0, seed=3)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        crops = augment.pixel_crops(first, second)
    assert crops.shape == (2, 3, 224, 224) and crops.dtype == torch.float32
    torch.testing.assert_close(mixed, (lam * crops[0] + (1 - lam) * crops[1]).clamp(0, 1))


def test_pixel_crops_are_cut_from_uint8_then_scaled():
    """RandomResizedCrop runs on the uint8 image (the authors' order), so every value is a multiple of 1/255."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        crops = augment.pixel_crops(noise_image(4), noise_image(5))
    torch.testing.assert_close(crops * 255, (crops * 255).round())


def test_pixel_cutmix_pastes_one_box_of_the_second_crop():
    first, second = noise_image(6), noise_image(7)
    mixed, lam = augment.pixel_mix(first, second, "pixel_cutmix", 1.0, seed=11)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        crops = augment.pixel_crops(first, second)
    from_second = (mixed == crops[1]).all(dim=0) & (mixed != crops[0]).any(dim=0)
    rows, cols = torch.nonzero(from_second, as_tuple=True)
    box = torch.zeros_like(from_second)
    if len(rows):
        box[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = True
    expected = torch.where(box, crops[1], crops[0])
    torch.testing.assert_close(mixed, expected)
    assert float(box.float().mean()) == pytest.approx(1 - lam, abs=1e-6)  # lam is 1 - the box's share


def test_embed_mixup_and_paper_cutmix_formulas():
    e1, e2 = torch.randn(10), torch.randn(10)
    for lam in (0.0, 0.3, 1.0):
        torch.testing.assert_close(augment.embed_mixup(e1, e2, lam), lam * e1 + (1 - lam) * e2)
        cut = math.floor((1 - lam) * 10)
        assert torch.equal(augment.embed_cutmix(e1, e2, lam), torch.cat([e2[:cut], e1[cut:]]))


def test_variant_is_recorded_only_where_it_changes_the_result():
    assert parse_name("embed_cutmix", 1.0, 0.4, "authors_code").describe() == "embed_cutmix(alpha=1)@authors_code"
    assert parse_name("dropout", 1.0, 0.4, "authors_code").describe() == "dropout(p=0.4)@authors_code"
    assert parse_name("embed_mixup", 1.0, 0.4, "authors_code").describe() == "embed_mixup(alpha=1)"  # same either way
    assert parse_name("embed_mixup+dropout", 1.0, 0.4, "authors_code").dropout_after_noise
    assert not parse_name("embed_mixup+dropout", 1.0, 0.4, "paper").dropout_after_noise
    for name in VARIANT_NAMES + ["dropout"]:
        for variant in ("paper", "authors_code"):
            aug = parse_name(name, alpha=0.5, p=0.3, variant=variant)
            assert parse_cond_aug(aug.describe()) == aug
    assert parse_cond_aug("dropout(p=0.4)") == Augmentation("dropout", True, p=0.4)
    with pytest.raises(ValueError, match="not a cond_aug description"):
        parse_cond_aug("dropout(p=0.4)@nobody")


def test_after_noising_masks_the_pipelines_noised_embedding(synthset_home):
    from diffusers import StableUnCLIPImg2ImgPipeline

    from synthset.testing import tiny_unclip_path

    pipe = StableUnCLIPImg2ImgPipeline.from_pretrained(tiny_unclip_path(synthset_home))
    d = pipe.image_normalizer.mean.shape[-1]
    embeds = torch.randn(2, d)
    masks = (torch.rand(2, 2 * d, generator=torch.Generator().manual_seed(1)) >= 0.4).float()
    plain = pipe.noise_image_embeddings(embeds, 0, generator=torch.Generator().manual_seed(3))
    assert plain.shape == (2, 2 * d)  # the image embedding, then the noise-level embedding
    batch = ConditioningBatch(embeds, [None, None], masks)
    with batch.after_noising(pipe):
        masked = pipe.noise_image_embeddings(embeds, 0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(masked, plain * masks)
    assert "noise_image_embeddings" not in vars(pipe)  # the pipeline's own method again
    assert torch.equal(pipe.noise_image_embeddings(embeds, 0, generator=torch.Generator().manual_seed(3)), plain)
