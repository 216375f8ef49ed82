"""Architecture-true replicas of the generators synthset's recipes name: published configs, random weights.

Every test and the demo run tiny pipelines, so nothing there proves that a real generator's repo goes
through synthset: SD 1.5 ships a safety checker and feature extractor, SD 2.1 (768) predicts v, unCLIP
has an image encoder, normalizer and noising scheduler, SDXL has two text encoders, pooled embeddings
and time ids. None of that needs the weights, only the architectures. A replica is a directory laid out
as a checkout of the Hub repo: the repo's own `model_index.json`, scheduler, tokenizer and processor
files copied byte for byte from `configs/<replica>/` (see configs/PROVENANCE.md for where each came from
and how exact it is), CLIP's real BPE vocabulary (`clip_bpe`), and for every model component weights
drawn with a fixed seed from a model built from the repo's `config.json`, written with
`save_pretrained` (safetensors, float16 like the repos' fp16 variants) and then given the published
config file back. `DiffusionPipeline.from_pretrained(<dir>)` loads it as it would the Hub checkout.

Two scales: `full` (the published sizes: SDXL is 3.5B parameters, ~7 GB on disk) for `make smoke-full`,
the memory figures and the GPU check; `small` (`scaled.py`: the same classes and wiring, width 32) for
the test suite. Both are built on demand into `$SYNTHSET_HOME/models/replica-<name>[-small]`, never
committed. In offline test mode (`SYNTHSET_TEST_REPLICAS=full|small`, with `SYNTHSET_TEST_RESOLVER` naming
`resolve_replica` here: `offline_test_env`) the Hub ids of `REPLICA_OF_HUB_ID` resolve to these directories.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from synthset.errors import ModelError, SynthsetError
from synthset.models import HUB_ID_PATTERN, REPLICA_ENV, RESOLVER_ENV, tiny_model_dir
from synthset.testing import scaled
from synthset.testing.clip_bpe import write_clip_bpe_files
from synthset.testing.store import build_atomically, models_dir

CONFIGS_DIR = Path(__file__).parent / "configs"
SEED = 0
# Replica safety checker's per-concept thresholds (a stand-in: the real ones are learned values). Random
# image embeddings sit near cosine 0 of the random concept vectors, so no image is blacked out, while an
# image whose embedding is set as a concept (cosine 1) is flagged.
SAFETY_THRESHOLD = 0.5

Kind = Literal["pipeline", "vae", "safety_checker"]
REPLICA_SCALES = ("full", "small")
RESOLVER = f"{__name__}:resolve_replica"  # what SYNTHSET_TEST_RESOLVER names in offline test mode
# Hub id -> the replica that stands in for it in offline test mode (`resolve_replica`).
REPLICA_OF_HUB_ID = {
    "stable-diffusion-v1-5/stable-diffusion-v1-5": "sd15",
    "runwayml/stable-diffusion-v1-5": "sd15",
    "stabilityai/stable-diffusion-2-1-base": "sd21-base",
    "stabilityai/stable-diffusion-2-1": "sd21",
    "stabilityai/stable-diffusion-2-1-unclip": "sd21-unclip",
    "stabilityai/stable-diffusion-xl-base-1.0": "sdxl-base",
    "madebyollin/sdxl-vae-fp16-fix": "sdxl-vae-fp16-fix",
    "CompVis/stable-diffusion-safety-checker": "compvis-safety-checker",
}


@dataclass(frozen=True)
class Replica:
    name: str
    hub_id: str  # the repo it replicates
    kind: Kind
    native_size: int  # px: the resolution the model was trained for (sample_size x the VAE's 8)
    license: str | None  # the original model card's license id, so `synthset card` reads it as from the Hub

    @property
    def config_dir(self) -> Path:
        return CONFIGS_DIR / self.name


REPLICAS: dict[str, Replica] = {
    r.name: r
    for r in (
        Replica("sd15", "stable-diffusion-v1-5/stable-diffusion-v1-5", "pipeline", 512, "creativeml-openrail-m"),
        Replica("sd21-base", "stabilityai/stable-diffusion-2-1-base", "pipeline", 512, "openrail++"),
        Replica("sd21", "stabilityai/stable-diffusion-2-1", "pipeline", 768, "openrail++"),
        Replica("sd21-unclip", "stabilityai/stable-diffusion-2-1-unclip", "pipeline", 768, "openrail++"),
        Replica("sdxl-base", "stabilityai/stable-diffusion-xl-base-1.0", "pipeline", 1024, "openrail++"),
        Replica("sdxl-vae-fp16-fix", "madebyollin/sdxl-vae-fp16-fix", "vae", 1024, "mit"),
        Replica("compvis-safety-checker", "CompVis/stable-diffusion-safety-checker", "safety_checker", 224, None),
    )
}
PIPELINE_REPLICAS = tuple(name for name, r in REPLICAS.items() if r.kind == "pipeline")

# Component class (as model_index.json names it) -> how its directory is made.
DIFFUSERS_MODELS = ("UNet2DConditionModel", "AutoencoderKL", "StableUnCLIPImageNormalizer")
TRANSFORMERS_MODELS = ("CLIPTextModel", "CLIPTextModelWithProjection", "CLIPVisionModelWithProjection")
COPIED = ("PNDMScheduler", "DDIMScheduler", "DDPMScheduler", "EulerDiscreteScheduler", "CLIPImageProcessor",
          "CLIPFeatureExtractor")  # fmt: skip


def published_files(replica: Replica) -> dict[str, Path]:
    """Relative path -> file of every published config of the replica (PROVENANCE.md aside)."""
    root = replica.config_dir
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*.json"))}


def read_configs(replica: Replica) -> dict[str, dict[str, Any]]:
    return {rel: json.loads(path.read_text("utf-8")) for rel, path in published_files(replica).items()}


def replica_configs(replica: Replica, scale: str) -> dict[str, dict[str, Any]]:
    """The config files a replica is built from: as published (`full`) or scaled down (`small`)."""
    configs = read_configs(replica)
    if scale == "full":
        return configs
    if replica.kind == "vae":
        return {"config.json": scaled.small_vae(configs["config.json"])}
    if replica.kind == "safety_checker":
        return {**configs, "config.json": scaled.small_safety_checker(configs["config.json"])}
    return scaled.scaled_down(configs)


def pipeline_components(index: dict[str, Any]) -> dict[str, str]:
    """model_index.json's components that the repo ships (name -> class), without the null ones."""
    return {
        name: value[1]
        for name, value in index.items()
        if isinstance(value, list) and len(value) == 2 and value[1] is not None
    }


@contextmanager
def _default_dtype(dtype) -> Iterator[None]:
    """Build parameters directly in `dtype`: SDXL's UNet in float32 alone would take 10 GB of RAM."""
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _write_config(path: Path, config: dict[str, Any], published: Path | None) -> None:
    """The published file byte for byte when unchanged; else the changed values in the same layout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if published is not None and json.loads(published.read_text("utf-8")) == config:
        shutil.copyfile(published, path)
    else:
        path.write_text(json.dumps(config, indent=2) + "\n", "utf-8")


def _safety_checker(config: dict[str, Any]):
    """StableDiffusionSafetyChecker with seeded random concept vectors and the stand-in thresholds."""
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig

    model = StableDiffusionSafetyChecker(CLIPConfig.from_dict(config))
    with torch.no_grad():
        for name in ("concept_embeds", "special_care_embeds"):
            getattr(model, name).copy_(torch.randn_like(getattr(model, name)))
        model.concept_embeds_weights.fill_(SAFETY_THRESHOLD)
        model.special_care_embeds_weights.fill_(SAFETY_THRESHOLD)
    return model


def _model(class_name: str, config: dict[str, Any]):
    """A randomly initialised model of `class_name` built from `config` (the caller seeds torch)."""
    if class_name in DIFFUSERS_MODELS:
        import diffusers
        from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer

        cls = (
            StableUnCLIPImageNormalizer
            if class_name == "StableUnCLIPImageNormalizer"
            else getattr(diffusers, class_name)
        )
        return cls.from_config(config)
    if class_name in TRANSFORMERS_MODELS:
        import transformers

        config_class = transformers.CLIPVisionConfig if "Vision" in class_name else transformers.CLIPTextConfig
        return getattr(transformers, class_name)(config_class.from_dict(config))
    if class_name == "StableDiffusionSafetyChecker":
        return _safety_checker(config)
    raise SynthsetError(f"replica: no builder for component class {class_name!r}")


def _save_model(class_name: str, config: dict[str, Any], out: Path, published: Path | None, config_name: str) -> None:
    """Seed, build in float16, `save_pretrained` (safetensors), then put the published config back."""
    import gc

    import torch

    torch.manual_seed(SEED)
    with _default_dtype(torch.float16):
        model = _model(class_name, config)
    if any(p.dtype != torch.float16 for p in model.parameters()):
        # transformers builds in the config's `torch_dtype` when it names one (unCLIP's image encoder: float32).
        model.to(torch.float16)
    model.save_pretrained(out, safe_serialization=True)
    del model
    gc.collect()
    _write_config(out / config_name, config, published)


def _write_readme(replica: Replica, scale: str, out: Path) -> None:
    """A model card with the original's license, so the card stage reads it exactly as from the Hub."""
    front = f"---\nlicense: {replica.license}\n---\n" if replica.license else ""
    out.joinpath("README.md").write_text(
        f"{front}# Replica of {replica.hub_id} ({scale})\n\nBuilt by synthset.testing.replicas: the published "
        f"configs with random weights (seed {SEED}). It generates noise; it exists to test the code path.\n",
        "utf-8",
    )


def build_replica(name: str, scale: str, out: Path) -> None:
    """Write the replica `name` at `scale` into the (empty) directory `out`."""
    replica = REPLICAS[name]
    configs = replica_configs(replica, scale)
    files = published_files(replica)
    out.mkdir(parents=True, exist_ok=True)
    if replica.kind == "vae":
        _save_model("AutoencoderKL", configs["config.json"], out, files["config.json"], "config.json")
    elif replica.kind == "safety_checker":
        _save_model("StableDiffusionSafetyChecker", configs["config.json"], out, files["config.json"], "config.json")
    else:
        index = configs["model_index.json"]
        shutil.copyfile(files["model_index.json"], out / "model_index.json")
        for component, class_name in pipeline_components(index).items():
            _write_component(component, class_name, configs, files, out / component)
    for rel, path in files.items():  # processors, schedulers, tokenizer configs: as published
        if not (out / rel).exists():
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, out / rel)
    _write_readme(replica, scale, out)


def _write_component(
    component: str, class_name: str, configs: dict[str, dict[str, Any]], files: dict[str, Path], out: Path
) -> None:
    if class_name == "CLIPTokenizer":
        write_clip_bpe_files(out)  # the tokenizer_config/special_tokens_map files are copied as published
        return
    if class_name in COPIED:
        return  # their one config file is copied as published
    config_name = "config.json"
    rel = f"{component}/{config_name}"
    if rel not in configs:
        raise SynthsetError(f"replica: {rel} is missing from the published configs")
    _save_model(class_name, configs[rel], out, files.get(rel), config_name)


def replica_dir_name(replica: str, scale: str) -> str:
    """`replica-sd15` (full size) or `replica-sd15-small` (the scaled-down test version)."""
    return f"replica-{replica}" + ("-small" if scale == "small" else "")


def offline_test_env(scale: str) -> dict[str, str]:
    """The environment of offline test mode at `scale`: the product's switch and this module's resolver."""
    return {REPLICA_ENV: scale, RESOLVER_ENV: RESOLVER}


def resolve_replica(model: str, scale: str, field_name: str) -> Path | None:
    """The product's test-mode hook (`synthset.models.replica_dir`): a Hub id's replica directory at `scale`.

    Local paths and non-Hub-id strings are left to the product (None). A Hub id without a replica, or
    whose replica is not built, is one `ModelError` line naming the recipe field.
    """
    if scale not in REPLICA_SCALES:
        raise ModelError(f"{REPLICA_ENV}={scale!r}: must be one of {', '.join(REPLICA_SCALES)} (or unset)")
    if not HUB_ID_PATTERN.match(model) or Path(model).expanduser().exists():
        return None
    replica = REPLICA_OF_HUB_ID.get(model)
    if replica is None:
        known = ", ".join(sorted(REPLICA_OF_HUB_ID))
        raise ModelError(f"{field_name}: {REPLICA_ENV} is set but {model!r} has no offline replica (known: {known})")
    path = tiny_model_dir(replica_dir_name(replica, scale))
    if not path.is_dir():
        raise ModelError(
            f"{field_name}: the {scale} replica of {model!r} is not built in {path.parent} "
            f"(run `synthset tiny-models --replicas {scale}`, or set SYNTHSET_HOME to where it is)"
        )
    return path


def replica_path(name: str, scale: str = "small", home: Path | None = None) -> Path:
    """The directory of replica `name` at `scale` (`full` or `small`), building it on first use."""
    if name not in REPLICAS:
        raise SynthsetError(f"unknown replica {name!r} (known: {', '.join(REPLICAS)})")
    if scale not in REPLICA_SCALES:
        raise SynthsetError(f"replica scale must be one of {', '.join(REPLICA_SCALES)}, got {scale!r}")
    target = models_dir(home) / replica_dir_name(name, scale)
    return build_atomically(target, lambda out: build_replica(name, scale, out))


def replica_names() -> dict[str, tuple[str, str]]:
    """Directory name (`replica-sd15`, `replica-sd15-small`, ...) -> (replica, scale)."""
    return {replica_dir_name(name, scale): (name, scale) for name in REPLICAS for scale in REPLICA_SCALES}


def parameter_counts(name: str, scale: str = "full") -> dict[str, int]:
    """Parameters per model component, counted on the meta device (no memory, no weights)."""
    import torch

    replica = REPLICAS[name]
    configs = replica_configs(replica, scale)
    if replica.kind == "vae":
        components = {"vae": ("AutoencoderKL", "config.json")}
    elif replica.kind == "safety_checker":
        components = {"safety_checker": ("StableDiffusionSafetyChecker", "config.json")}
    else:
        components = {
            component: (class_name, f"{component}/config.json")
            for component, class_name in pipeline_components(configs["model_index.json"]).items()
            if f"{component}/config.json" in configs
        }
    counts = {}
    for component, (class_name, rel) in components.items():
        with torch.device("meta"):
            model = _model(class_name, configs[rel])
        counts[component] = sum(p.numel() for p in model.parameters())
    return counts


def _tokenizer(replica: Replica, component: str, scratch: Path):
    """The replica's CLIPTokenizer, from the published tokenizer configs and the CLIP BPE files."""
    from transformers import CLIPTokenizer

    out = scratch / replica.name / component
    if not (out / "vocab.json").is_file():
        write_clip_bpe_files(out)
        for path in (replica.config_dir / component).glob("*.json"):
            shutil.copyfile(path, out / path.name)
    return CLIPTokenizer.from_pretrained(out)


def assemble_pipeline(name: str, scale: str, device: str, dtype, vae_replica: str | None = None):
    """Replica `name` as a pipeline object built in memory on `device` (random weights, nothing saved).

    For measuring speed where building and saving gigabytes first would cost minutes (the GPU check):
    the same configs, classes and wiring as `build_replica`; the safety checker is left out, as synthset
    leaves it out; `vae_replica` swaps the VAE (e.g. "sdxl-vae-fp16-fix").
    """
    import inspect
    import tempfile

    import diffusers
    import torch
    from transformers import CLIPImageProcessor

    replica = REPLICAS[name]
    configs = replica_configs(replica, scale)
    index = configs["model_index.json"]
    scratch = Path(tempfile.gettempdir()) / "synthset-replica-tokenizers"
    components: dict[str, Any] = {}
    for component, class_name in pipeline_components(index).items():
        if component == "safety_checker":
            components[component] = None
        elif class_name == "CLIPTokenizer":
            components[component] = _tokenizer(replica, component, scratch)
        elif class_name in ("CLIPImageProcessor", "CLIPFeatureExtractor"):
            components[component] = CLIPImageProcessor.from_pretrained(replica.config_dir / component)
        elif class_name.endswith("Scheduler"):
            config = configs[f"{component}/scheduler_config.json"]
            components[component] = getattr(diffusers, class_name).from_config(config)
        else:
            config = configs[f"{component}/config.json"]
            if component == "vae" and vae_replica is not None:
                config = replica_configs(REPLICAS[vae_replica], scale)["config.json"]
            torch.manual_seed(SEED)
            with torch.device(device), _default_dtype(dtype):
                model = _model(class_name, config)
            if any(p.dtype != dtype for p in model.parameters()):  # a config's torch_dtype won
                model.to(dtype=dtype)
            components[component] = model.eval()
    pipeline_class = getattr(diffusers, index["_class_name"])
    accepted = inspect.signature(pipeline_class.__init__).parameters
    # Config values (force_zeros_for_empty_prompt); components the repo lists as [null, null] are None.
    extra = {key: None if isinstance(value, list) else value for key, value in index.items()
             if not key.startswith("_") and key not in components}  # fmt: skip
    if "requires_safety_checker" in accepted:
        extra["requires_safety_checker"] = False
    if "add_watermarker" in accepted:
        extra["add_watermarker"] = False
    return pipeline_class(**components, **{k: v for k, v in extra.items() if k in accepted})
