"""Scaled-down versions of the replicas' configs: the same component classes and wiring, small widths.

A test that only needs the wiring of SDXL (two text encoders whose widths add up to the UNet's
cross-attention width, a pooled projection and six time ids feeding the added embedding) or of unCLIP
(image embeddings that the noise-level embedding doubles before the UNet's class projection) should not
pay for 3.5B parameters. These functions shrink every width, depth and head count of a published config
and then recompute the widths that one component takes from another, so a scaled-down pipeline is wired
exactly as the full one. What stays as published: every class, block type, scheduler, tokenizer (the
real 49,408-token CLIP BPE), sample size, scaling factor and flag.
"""

from __future__ import annotations

from typing import Any

SMALL_WIDTH = 32
SMALL_CHANNELS = (32, 64, 64, 64)  # UNet levels (GroupNorm needs multiples of 32)
SMALL_VAE_CHANNELS = (32, 32, 64, 64)
SMALL_HEADS = 2
SMALL_TIME_EMBED = 8
TIME_IDS = 6  # SDXL micro-conditioning: original size (2), crop top-left (2), target size (2)

Config = dict[str, Any]


def small_clip_tower(config: Config) -> Config:
    """A CLIP text or vision tower: 2 layers of width 32 (vocab, positions, patch and image size kept)."""
    changes = {"hidden_size": SMALL_WIDTH, "intermediate_size": 2 * SMALL_WIDTH, "num_hidden_layers": 2,
               "num_attention_heads": SMALL_HEADS}  # fmt: skip
    if "projection_dim" in config:
        changes["projection_dim"] = SMALL_WIDTH
    return {**config, **changes}


def small_safety_checker(config: Config) -> Config:
    """The safety checker's CLIPConfig: both towers shrunk (old files carry `*_config_dict` copies too)."""
    out = {**config, "projection_dim": SMALL_WIDTH}
    for key in ("text_config", "vision_config", "text_config_dict", "vision_config_dict"):
        if isinstance(config.get(key), dict):
            out[key] = small_clip_tower(config[key])
    return out


def small_vae(config: Config) -> Config:
    levels = len(config["block_out_channels"])
    return {**config, "block_out_channels": list(SMALL_VAE_CHANNELS[:levels]), "layers_per_block": 1}


def _per_level(value: Any, levels: int, small: int) -> Any:
    return small if isinstance(value, int) else [small] * levels


def small_unet(config: Config, text_widths: list[int], pooled_width: int | None, image_width: int | None) -> Config:
    """The UNet with its cross-attention and added-embedding widths taken from the shrunk encoders."""
    levels = len(config["block_out_channels"])
    out = {
        **config,
        "block_out_channels": list(SMALL_CHANNELS[:levels]),
        "layers_per_block": 1,
        "attention_head_dim": _per_level(config["attention_head_dim"], levels, SMALL_HEADS),
        "cross_attention_dim": sum(text_widths),
    }
    layers = config.get("transformer_layers_per_block")
    if isinstance(layers, list):
        out["transformer_layers_per_block"] = [min(n, 2) for n in layers]
    if config.get("addition_embed_type") == "text_time":  # SDXL: pooled text embedding + embedded time ids
        out["addition_time_embed_dim"] = SMALL_TIME_EMBED
        out["projection_class_embeddings_input_dim"] = TIME_IDS * SMALL_TIME_EMBED + (pooled_width or 0)
    if config.get("class_embed_type") == "projection":  # unCLIP: image embedding + its noise-level embedding
        out["projection_class_embeddings_input_dim"] = 2 * (image_width or 0)
    return out


def scaled_down(configs: dict[str, Config]) -> dict[str, Config]:
    """Every model config of a replica (keyed by file, `<component>/config.json`), shrunk and rewired.

    Other files (model_index.json, schedulers, tokenizers, processors) pass through untouched.
    """
    out = dict(configs)
    for component in ("text_encoder", "text_encoder_2", "image_encoder"):
        key = f"{component}/config.json"
        if key in configs:
            out[key] = small_clip_tower(configs[key])
    if "safety_checker/config.json" in configs:
        out["safety_checker/config.json"] = small_safety_checker(configs["safety_checker/config.json"])
    if "vae/config.json" in configs:
        out["vae/config.json"] = small_vae(configs["vae/config.json"])
    image = out.get("image_encoder/config.json")
    if "image_normalizer/config.json" in configs and image is not None:
        out["image_normalizer/config.json"] = {**configs["image_normalizer/config.json"],
                                               "embedding_dim": image["projection_dim"]}  # fmt: skip
    if "unet/config.json" in configs:
        texts = [out[f"{c}/config.json"] for c in ("text_encoder", "text_encoder_2") if f"{c}/config.json" in out]
        pooled = out["text_encoder_2/config.json"]["projection_dim"] if "text_encoder_2/config.json" in out else None
        out["unet/config.json"] = small_unet(
            configs["unet/config.json"],
            [t["hidden_size"] for t in texts],
            pooled,
            image["projection_dim"] if image is not None else None,
        )
    return out
