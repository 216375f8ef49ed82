"""Tiny offline stand-ins for the hub models synthset uses.

The test suite and the demo must run without network access and in seconds on a CPU, but the code
under test loads models with the ordinary ``from_pretrained(name_or_path)`` call it uses for a hub id.
So instead of mocking, we build tiny, randomly initialised models from configs (with fixed seeds, so
every build is byte-identical), ``save_pretrained`` them into ``<SYNTHSET_HOME>/models/<name>`` and
hand that directory to the code under test in place of a hub id.  The images they generate are noise,
but every code path (tokenizer, text encoder, UNet, scheduler, VAE, saving) is the real one.

Each model has one small ``_build_<name>(out_dir)`` function and one public ``<name>_path()`` that
builds it on first use through :func:`synthset.testing.store.build_atomically`, so concurrent test processes never see a
half-written model; ``TINY_MODELS`` maps the names recipes use (``synthset-testing:<name>``) to those.
Heavy imports (torch, diffusers, transformers) stay inside the functions because the CLI imports this
module and must start fast.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from synthset.errors import SynthsetError
from synthset.testing.clip_bpe import bytes_to_unicode
from synthset.testing.store import build_atomically, models_dir

TINY_SD = "tiny-sd"


def _tiny_clip_vocab() -> dict[str, int]:
    """A character-level CLIP vocab in CLIP's own order: bytes, bytes + ``</w>``, then specials.

    With no merges every word tokenizes to its characters, so any text works and the vocab (and the
    text encoder's embedding table) stays at 514 entries.
    """
    alphabet = list(bytes_to_unicode().values())
    tokens = alphabet + [c + "</w>" for c in alphabet] + ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(tokens)}


def _write_tiny_clip_tokenizer_files(out: Path) -> None:
    """Write a generated CLIP vocab.json/merges.txt (the real ones are on the hub, out of reach).

    They stay next to the saved tokenizer.json for transformers 4.x, whose CLIPTokenizer reads these files.
    """
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps(_tiny_clip_vocab(), ensure_ascii=False), "utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n", "utf-8")


def _tiny_text_stack(out: Path):
    """The generated-vocab CLIP tokenizer (saved under out/tokenizer) and a 2-layer CLIP text encoder."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    _write_tiny_clip_tokenizer_files(out / "tokenizer")
    # model_max_length is saved with the tokenizer; the SD pipeline pads prompts to it.
    tokenizer = CLIPTokenizer.from_pretrained(out / "tokenizer", model_max_length=77)
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            layer_norm_eps=1e-5,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    return tokenizer, text_encoder


def _tiny_vae():
    """A 2-block VAE: it upsamples latents by 2, so 32x32 latents decode to 64 px images."""
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(
        sample_size=64,
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=32,
    )


def _build_tiny_sd(out: Path) -> None:
    """Save a tiny StableDiffusionPipeline to ``out``: 64 px images (32x32 latents), ~1.7 M parameters."""
    import torch
    from diffusers import PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    tokenizer, text_encoder = _tiny_text_stack(out)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=32,  # latent size; the VAE below upsamples by 2, so the default image is 64 px
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=2,  # diffusers' legacy name: this is the number of heads (2 x 32 channels)
        norm_num_groups=32,
    )
    vae = _tiny_vae()

    # Stable Diffusion 1.x's scheduler config.
    scheduler = PNDMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        skip_prk_steps=True,
        set_alpha_to_one=False,
        steps_offset=1,
    )

    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out, safe_serialization=True)  # type: ignore[attr-defined]  # diffusers' mixin, untyped


TINY_UNCLIP = "tiny-unclip"
UNCLIP_EMBED_DIM = 32


def _build_tiny_unclip(out: Path) -> None:
    """A tiny StableUnCLIPImg2ImgPipeline (SD 2.1 unCLIP's layout): CLIP image encoder with projection,
    image normalizer and noising scheduler, and a UNet whose class embedding takes the image embedding
    plus its noise-level embedding (2 x 32 inputs)."""
    import torch
    from diffusers import DDIMScheduler, DDPMScheduler, StableUnCLIPImg2ImgPipeline, UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    tokenizer, text_encoder = _tiny_text_stack(out)
    torch.manual_seed(0)
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            projection_dim=UNCLIP_EMBED_DIM,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            intermediate_size=37,
            patch_size=8,
        )
    )
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=2,
        norm_num_groups=32,
        class_embed_type="projection",
        projection_class_embeddings_input_dim=UNCLIP_EMBED_DIM * 2,
    )
    pipe = StableUnCLIPImg2ImgPipeline(
        feature_extractor=CLIPImageProcessor(crop_size=32, size=32),
        image_encoder=image_encoder,
        image_normalizer=StableUnCLIPImageNormalizer(embedding_dim=UNCLIP_EMBED_DIM),
        image_noising_scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2"),
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        unet=unet,
        scheduler=DDIMScheduler(
            beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, set_alpha_to_one=False, steps_offset=1
        ),
        vae=_tiny_vae(),
    )
    pipe.save_pretrained(out, safe_serialization=True)  # type: ignore[attr-defined]  # diffusers' mixin, untyped


def tiny_unclip_path(home: Path | None = None) -> Path:
    """Directory of the tiny unCLIP image-variation pipeline (augmentation-conditioning's model)."""
    return build_atomically(models_dir(home) / TINY_UNCLIP, _build_tiny_unclip)


def tiny_sd_path(home: Path | None = None) -> Path:
    """Return the directory of a tiny Stable Diffusion text-to-image pipeline, building it on first use.

    Layout = what StableDiffusionPipeline.save_pretrained writes (model_index.json, unet/, vae/,
    text_encoder/, tokenizer/, scheduler/), safetensors weights. Lives at <home>/models/tiny-sd.
    Pass it wherever a hub id such as "stable-diffusion-v1-5/stable-diffusion-v1-5" would go.
    """
    target = models_dir(home) / TINY_SD
    if (target / "model_index.json").is_file():
        return target
    build_atomically(target, _build_tiny_sd)
    if not (target / "model_index.json").is_file():
        raise SynthsetError(f"{target} exists but is not a complete tiny-sd build; delete it and retry")
    return target


# One entry per tiny model; recipes name them as "synthset-testing:<name>".
TINY_OPEN_CLIP = "tiny-clip"

# open_clip's own format for a local model: what `create_model_and_transforms("local-dir:<dir>")` reads.
TINY_OPEN_CLIP_CONFIG: dict[str, Any] = {
    "model_cfg": {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    },
    "preprocess_cfg": {
        "mean": [0.48145466, 0.4578275, 0.40821073],
        "std": [0.26862954, 0.26130258, 0.27577711],
        "interpolation": "bicubic",
        "resize_mode": "shortest",
    },
}


def _build_tiny_open_clip(out: Path) -> None:
    """A CLIP with a 1-layer ViT and a 1-layer text tower, in open_clip's local-dir layout (safetensors).

    The text tower keeps open_clip's standard BPE tokenizer (its vocab ships inside the package), so
    the tokenizer path is the real one.
    """
    import open_clip
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = open_clip.CLIP(**TINY_OPEN_CLIP_CONFIG["model_cfg"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "open_clip_config.json").write_text(json.dumps(TINY_OPEN_CLIP_CONFIG, indent=2, sort_keys=True))
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, str(out / "open_clip_model.safetensors"))


def tiny_open_clip_path(home: Path | None = None) -> Path:
    """Directory of the tiny open_clip model; load it as `local-dir:<path>` (lar.clip_model does that)."""
    return build_atomically(models_dir(home) / TINY_OPEN_CLIP, _build_tiny_open_clip)


TINY_LM = "tiny-lm"

# The tiny LM's chat template: one "<|role|>" line per message, each message closed by EOS.
TINY_LM_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
TINY_LM_SPECIAL_TOKENS = ("<|pad|>", "<|bos|>", "<|eos|>", "<|system|>", "<|user|>", "<|assistant|>")


def _build_tiny_lm(out: Path) -> None:
    """Save a tiny Llama causal LM and its tokenizer to ``out`` (~25 k parameters, safetensors).

    The tokenizer is generated, not downloaded: byte-level BPE with the 256-byte alphabet and no merges
    (token id = byte value, so any text round-trips), then pad/bos/eos and the chat role markers as
    special tokens, and a chat template, so the chat-template path of the LLM backend is the real one.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    byte_chars = bytes_to_unicode()
    vocab = {byte_chars[b]: b for b in range(256)}
    for token in TINY_LM_SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.TemplateProcessing(
        single="<|bos|> $A", pair="<|bos|> $A <|bos|> $B", special_tokens=[("<|bos|>", vocab["<|bos|>"])]
    )
    backend.add_special_tokens(list(TINY_LM_SPECIAL_TOKENS))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|bos|>",
        eos_token="<|eos|>",
        pad_token="<|pad|>",
        chat_template=TINY_LM_CHAT_TEMPLATE,
        model_max_length=512,
        padding_side="left",
    )
    tokenizer.save_pretrained(out)

    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            tie_word_embeddings=True,
            # 10x the default init: at 0.02 the logits are so flat that every prompt's greedy text is the
            # same run of newlines, which would hide padding bugs; at 0.2 the text depends on the prompt.
            initializer_range=0.2,
            bos_token_id=vocab["<|bos|>"],
            eos_token_id=vocab["<|eos|>"],
            pad_token_id=vocab["<|pad|>"],
        )
    )
    model.save_pretrained(out, safe_serialization=True)


def tiny_lm_path(home: Path | None = None) -> Path:
    """Directory of a tiny causal LM + tokenizer with a chat template, building it on first use.

    Loads with ``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained``; recipes name
    it ``synthset-testing:tiny-lm`` (prompts.llm.model). Its text is random bytes: fine for testing plumbing.
    """
    target = models_dir(home) / TINY_LM
    if not (target / "config.json").is_file():
        build_atomically(target, _build_tiny_lm)
    if not (target / "model.safetensors").is_file():
        raise SynthsetError(f"{target} exists but is not a complete tiny-lm build; delete it and retry")
    return target


TINY_MODELS: dict[str, Callable[[Path | None], Path]] = {
    TINY_SD: tiny_sd_path,
    TINY_OPEN_CLIP: tiny_open_clip_path,
    TINY_LM: tiny_lm_path,
    TINY_UNCLIP: tiny_unclip_path,
}


# -- the quality gate's tiny safety checker ---------------------------------------------------
TINY_SAFETY_CHECKER = "tiny-safety-checker"
TINY_SAFETY_CHECKER_IMAGE_SIZE = 32
# The real CompVis checker compares a CLIP ViT-L/14 image embedding with 17 concept and 3 special-care
# embeddings; each has its own threshold (the `*_weights` parameters, cosines of about 0.18-0.2). The tiny
# one keeps that layout and those counts; its thresholds are one constant, at which it flags about one
# tiny-sd image in ten (so the demo shows redraws). Tests move the decision with `quality.nsfw_adjustment`,
# the checker's own knob, calibrated on the images at hand.
TINY_SAFETY_CHECKER_THRESHOLD = 0.46


def _build_tiny_safety_checker(out: Path) -> None:
    """A tiny diffusers `StableDiffusionSafetyChecker` in the CompVis repo's layout (config.json, weights
    and preprocessor_config.json side by side): a 2-layer CLIP vision tower with projection, random concept
    embeddings (the real ones are learned) and constant thresholds. Built from a `CLIPConfig` like the
    real `CompVis/stable-diffusion-safety-checker` (see /work/notes/model-configs/compvis-safety-checker)."""
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    size = TINY_SAFETY_CHECKER_IMAGE_SIZE
    config = CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1, "num_attention_heads": 4,
                     "hidden_act": "quick_gelu"},
        vision_config={"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4,
                       "image_size": size, "patch_size": 8, "hidden_act": "quick_gelu"},
        projection_dim=32,
    )  # fmt: skip
    torch.manual_seed(0)
    checker = StableDiffusionSafetyChecker(config)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        checker.concept_embeds.copy_(torch.randn(checker.concept_embeds.shape, generator=generator))
        checker.special_care_embeds.copy_(torch.randn(checker.special_care_embeds.shape, generator=generator))
        checker.concept_embeds_weights.fill_(TINY_SAFETY_CHECKER_THRESHOLD)
        checker.special_care_embeds_weights.fill_(TINY_SAFETY_CHECKER_THRESHOLD)
    checker.save_pretrained(out, safe_serialization=True)
    CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size}).save_pretrained(out)


def tiny_safety_checker_path(home: Path | None = None) -> Path:
    """Directory of the tiny safety checker; recipes name it `synthset-testing:tiny-safety-checker`."""
    return build_atomically(models_dir(home) / TINY_SAFETY_CHECKER, _build_tiny_safety_checker)


TINY_MODELS[TINY_SAFETY_CHECKER] = tiny_safety_checker_path
