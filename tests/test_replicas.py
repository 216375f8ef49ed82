"""The replicas of the real generators: built from the published configs, loaded like a Hub checkout."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import open_clip
import pytest
import torch
from diffusers import AutoencoderKL, DiffusionPipeline
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
from transformers import CLIPImageProcessor, CLIPTokenizer

from synthset.errors import SynthsetError
from synthset.testing import replicas
from synthset.testing.clip_bpe import CLIP_VOCAB_SIZE, clip_vocab
from synthset.testing.replicas import PIPELINE_REPLICAS, REPLICA_OF_HUB_ID, REPLICAS, parameter_counts, replica_path

# Parameter counts of the published architectures (meta device, from the configs): the UNet figures are
# the model cards' "860M" (SD 1.5), "865M" (SD 2.x) and SDXL's 2.6B UNet with its 3.5B total.
FULL_PARAMETERS = {
    "sd15": {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480, "safety_checker": 303_981_588},
    "sd21-base": {"unet": 865_910_724, "vae": 83_653_863, "text_encoder": 340_387_840},
    "sd21": {"unet": 865_910_724, "vae": 83_653_863, "text_encoder": 340_387_840},
    "sd21-unclip": {
        "unet": 870_173_124,
        "vae": 83_653_863,
        "text_encoder": 340_387_840,
        "image_encoder": 632_076_800,
        "image_normalizer": 2_048,
    },  # fmt: skip
    "sdxl-base": {
        "unet": 2_567_463_684,
        "vae": 83_653_863,
        "text_encoder": 123_060_480,
        "text_encoder_2": 694_659_840,
    },  # fmt: skip
    "sdxl-vae-fp16-fix": {"vae": 83_653_863},
    "compvis-safety-checker": {"safety_checker": 303_981_588},
}
PROMPTS = ["a photo of a cat", "A photo of a tench, 3 fish.", "an oil painting of a goldfinch", "café 東京"]


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}  # fmt: skip


@pytest.fixture(scope="module")
def small(synthset_home: Path) -> dict[str, Path]:
    """Every replica, scaled down, in the session's SYNTHSET_HOME (a second or two each)."""
    return {name: replica_path(name, "small") for name in REPLICAS}


@pytest.mark.parametrize("name", list(REPLICAS))
def test_full_configs_count_the_published_parameters(name: str) -> None:
    assert parameter_counts(name, "full") == FULL_PARAMETERS[name]


def test_every_replica_stands_for_a_mapped_hub_id() -> None:
    assert {r.hub_id: r.name for r in REPLICAS.values()}.items() <= REPLICA_OF_HUB_ID.items()
    assert REPLICA_OF_HUB_ID["runwayml/stable-diffusion-v1-5"] == "sd15"  # the recipes' older id too


@pytest.mark.parametrize("name", PIPELINE_REPLICAS)
def test_small_pipeline_loads_like_a_hub_checkout(small: dict[str, Path], name: str) -> None:
    path = small[name]
    index = json.loads((REPLICAS[name].config_dir / "model_index.json").read_text())
    assert (path / "model_index.json").read_bytes() == (REPLICAS[name].config_dir / "model_index.json").read_bytes()
    pipe = DiffusionPipeline.from_pretrained(str(path), dtype=torch.float32)
    assert type(pipe).__name__ == index["_class_name"]
    shipped = {k for k, v in index.items() if isinstance(v, list) and v[1] is not None}
    assert {k for k, v in pipe.components.items() if v is not None} == shipped
    for component in shipped:
        # CLIPFeatureExtractor (SD 2.x's model_index) is gone from transformers 5: diffusers remaps it.
        expected = "CLIPImageProcessor" if index[component][1] == "CLIPFeatureExtractor" else index[component][1]
        assert type(pipe.components[component]).__name__ == expected, component
    weights = sorted(str(p.relative_to(path)) for p in path.rglob("*.safetensors"))
    assert weights and not [p for p in path.rglob("*") if p.suffix in {".bin", ".ckpt", ".pt"}]


@pytest.mark.parametrize("name", list(REPLICAS))
def test_small_replica_keeps_every_published_file_but_the_shrunk_widths(small: dict[str, Path], name: str) -> None:
    """Schedulers, tokenizer configs, processors: byte for byte; model configs: only width/depth keys differ."""
    shrinkable = {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "projection_dim",
                  "block_out_channels", "layers_per_block", "attention_head_dim", "cross_attention_dim",
                  "transformer_layers_per_block", "addition_time_embed_dim", "embedding_dim", "text_config",
                  "projection_class_embeddings_input_dim", "vision_config", "text_config_dict",
                  "vision_config_dict"}  # fmt: skip
    for rel, published in replicas.published_files(REPLICAS[name]).items():
        built = small[name] / rel
        if rel.endswith("config.json") and rel != "scheduler/scheduler_config.json" and "noising" not in rel:
            ours, theirs = json.loads(built.read_text()), json.loads(published.read_text())
            assert ours.keys() == theirs.keys(), rel
            assert {k for k in ours if ours[k] != theirs[k]} <= shrinkable, rel
        else:
            assert built.read_bytes() == published.read_bytes(), rel


def test_full_vae_replica_writes_the_published_config_byte_for_byte(tmp_path: Path) -> None:
    path = replica_path("sdxl-vae-fp16-fix", "full", tmp_path)
    assert (path / "config.json").read_bytes() == (
        REPLICAS["sdxl-vae-fp16-fix"].config_dir / "config.json"
    ).read_bytes()
    vae = AutoencoderKL.from_pretrained(str(path))
    assert vae.config.force_upcast is False and vae.config.scaling_factor == 0.13025
    assert sum(p.numel() for p in vae.parameters()) == FULL_PARAMETERS["sdxl-vae-fp16-fix"]["vae"]
    assert {p.dtype for p in AutoencoderKL.from_pretrained(str(path), dtype=torch.float16).parameters()} == {
        torch.float16
    }
    assert "license: mit" in (path / "README.md").read_text()


def test_rebuild_is_byte_identical(small: dict[str, Path], tmp_path: Path) -> None:
    again = replica_path("sdxl-base", "small", tmp_path)
    assert _hashes(again) == _hashes(small["sdxl-base"])


def test_clip_tokenizer_is_the_real_bpe() -> None:
    vocab = clip_vocab()
    assert len(vocab) == CLIP_VOCAB_SIZE == 49408
    assert (vocab["<|startoftext|>"], vocab["<|endoftext|>"]) == (49406, 49407)


TOKENIZERS = [("sd15", "tokenizer", 49407), ("sd21", "tokenizer", 0), ("sdxl-base", "tokenizer", 49407),
              ("sdxl-base", "tokenizer_2", 0)]  # fmt: skip


@pytest.mark.parametrize("name,component,pad_id", TOKENIZERS)
def test_replica_tokenizers_match_open_clip(small: dict[str, Path], name: str, component: str, pad_id: int) -> None:
    tokenizer = CLIPTokenizer.from_pretrained(small[name] / component)
    assert len(tokenizer) == 49408 and tokenizer.model_max_length == 77
    assert tokenizer.pad_token_id == pad_id  # SD 2.x and SDXL's second tokenizer pad with "!" (OpenCLIP's 0)
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    for prompt in PROMPTS:
        reference = open_clip.tokenize([prompt])[0]
        assert tokenizer(prompt).input_ids == reference[reference.nonzero()].flatten().tolist(), prompt
    padded = tokenizer("a cat", padding="max_length", max_length=77).input_ids
    assert padded[:4] == [49406, 320, 2368, 49407] and set(padded[4:]) == {pad_id}
    # A quirk the real SD 2.x / SDXL tokenizer_2 files share: "!" is their pad token, so a "!" in a prompt
    # becomes the special token 0 rather than OpenCLIP's "!</w>" (256).
    assert tokenizer("fish!").input_ids[-2] == (0 if pad_id == 0 else 256)


def test_unclip_embeddings_double_with_the_noise_level() -> None:
    """Full configs on the meta device: 1024-d image embeddings, 2048-d class embedding input."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    configs = replicas.read_configs(REPLICAS["sd21-unclip"])
    with torch.device("meta"):
        encoder = CLIPVisionModelWithProjection(CLIPVisionConfig.from_dict(configs["image_encoder/config.json"]))
        unet = UNet2DConditionModel.from_config(configs["unet/config.json"])
    assert encoder.visual_projection.out_features == 1024
    assert configs["image_normalizer/config.json"]["embedding_dim"] == 1024
    assert unet.class_embedding.linear_1.in_features == 2048


def test_small_unclip_takes_image_embeddings_of_its_width(small: dict[str, Path]) -> None:
    pipe = DiffusionPipeline.from_pretrained(str(small["sd21-unclip"]), dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    width = pipe.image_encoder.config.projection_dim
    seen = {}

    def record(module, args, kwargs) -> None:
        seen.setdefault("labels", tuple(kwargs["class_labels"].shape))

    pipe.unet.register_forward_pre_hook(record, with_kwargs=True)
    pipe(prompt=["a cat"], image_embeds=torch.zeros(1, width), noise_level=0, num_inference_steps=1,
         width=64, height=64, generator=[torch.Generator().manual_seed(0)], output_type="np")  # fmt: skip
    assert seen["labels"] == (2, 2 * width)
    with pytest.raises(RuntimeError):
        pipe(prompt=["a cat"], image_embeds=torch.zeros(1, width + 1), noise_level=0, num_inference_steps=1,
             width=64, height=64, output_type="np")  # fmt: skip


def test_safety_checker_replica_runs_and_flags_only_what_matches_a_concept(small: dict[str, Path]) -> None:
    """The stand-in thresholds (0.5): random images pass; an image whose embedding is a concept is flagged."""
    checker = StableDiffusionSafetyChecker.from_pretrained(str(small["sd15"] / "safety_checker"))
    processor = CLIPImageProcessor.from_pretrained(str(small["sd15"] / "feature_extractor"))
    images = torch.rand(3, 64, 64, 3, generator=torch.Generator().manual_seed(0)).numpy()
    clip_input = processor(images=list(images), return_tensors="pt", do_rescale=False).pixel_values
    assert clip_input.shape == (3, 3, 224, 224)
    _, flagged = checker(clip_input=clip_input, images=images.copy())
    assert flagged == [False, False, False]
    with torch.no_grad():
        embedding = checker.visual_projection(checker.vision_model(clip_input[1:2])[1])
        checker.concept_embeds[0] = embedding[0]
    _, flagged = checker(clip_input=clip_input, images=images.copy())
    assert flagged[1] is True


def test_unknown_replica_and_scale_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(SynthsetError, match=r"^unknown replica 'sd3' \(known: sd15, sd21-base, "):
        replica_path("sd3", "small", tmp_path)
    with pytest.raises(SynthsetError, match=r"^replica scale must be one of full, small, got 'tiny'$"):
        replica_path("sd15", "tiny", tmp_path)


def test_tiny_models_command_builds_the_replicas_asked_for(tmp_path: Path, capsys) -> None:
    from synthset.cli import main

    assert (
        main(["tiny-models", "--home", str(tmp_path), "--replicas", "small", "--only", "sd21,sdxl-vae-fp16-fix"]) == 0
    )
    out = capsys.readouterr().out.splitlines()
    models = tmp_path / "models"
    assert out == [
        f"sd21: {models / 'replica-sd21-small'}",
        f"sdxl-vae-fp16-fix: {models / 'replica-sdxl-vae-fp16-fix-small'}",
    ]
    assert sorted(p.name for p in models.iterdir()) == ["replica-sd21-small", "replica-sdxl-vae-fp16-fix-small"]
    assert main(["tiny-models", "--home", str(tmp_path), "--replicas", "small", "--only", "sd3"]) == 2
    assert capsys.readouterr().err == (
        "synthset: error: --only: unknown replica 'sd3' (known: sd15, sd21-base, sd21, sd21-unclip, sdxl-base, "
        "sdxl-vae-fp16-fix, compvis-safety-checker)\n"
    )
