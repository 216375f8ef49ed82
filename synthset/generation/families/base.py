"""What a model family is (`ModelFamily`), what it hands the generator, and the defaults most families share.

A model family is one kind of diffusers pipeline, named by the `_class_name` of its `model_index.json`
(`StableDiffusionPipeline`, `StableDiffusionXLPipeline`, ...): how synthset loads it, what else it passes
to a call beside the prompts, which strategies it serves, and the measured figures of its known models
for the memory formula (`synthset.generation.memory`). Each family is one module of this package; the
registry (`synthset.generation.families.FAMILIES`) maps the class name to it. These types live apart from
the registry so the family modules import them without importing the registry that imports them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from synthset.generation.conditioning import Conditioner
    from synthset.generation.pipeline_options import PipelineOptions
    from synthset.recipe import GeneratorSpec
    from synthset.run.lock import Lock
    from synthset.run.paths import RunDir

GIB = 1024**3
# Parameters of the AutoencoderKL that SD 1.x, 2.x and XL share (one architecture), counted from its config.
SD_VAE_PARAMETERS = 83_653_863


@dataclass(frozen=True)
class ModelMemory:
    """What the memory formula needs to know about a generator (README "Memory planning")."""

    parameters: int  # loaded by synthset: every model component but the safety checker
    vae_parameters: int
    native_size: int  # px
    unet_per_image: float  # bytes per image at native size, 2-byte activations: text encoders + UNet (CFG)
    vae_per_image: float  # the same for the VAE decode
    vae_upcast: bool  # the VAE config's force_upcast: in float16 it decodes in float32 (SDXL)
    unet_fixed: float = 0.0  # bytes of the phase that do not grow with the batch (the fit's intercept)
    vae_fixed: float = 0.0


@dataclass
class LoadedGenerator:
    """A ready pipeline plus the facts about it that every generated row records."""

    pipe: Any
    spec: GeneratorSpec
    device: torch.device
    dtype: str
    attention: str
    scheduler: str
    options: PipelineOptions
    family: ModelFamily
    conditioner: Conditioner | None = None  # set for augcond runs (an image-conditioned family: unCLIP)
    safety_checker: str = "none"  # what became of the model's safety checker: "none" or SAFETY_CHECKER_OFF


@dataclass
class CallInputs:
    """What a family adds to one pipeline call beside the prompts, and what the call decided per row."""

    kwargs: dict[str, Any]  # extra pipeline call arguments (unCLIP's image_embeds and noise_level)
    decided: list[dict[str, Any]]  # per row: columns the call decided (augcond's cond_lambda)
    hook: contextlib.AbstractContextManager = field(default_factory=contextlib.nullcontext)  # held over the call


def without_safety_checker(model_index: dict[str, Any]) -> dict[str, Any]:
    """from_pretrained arguments that leave out a safety checker the repo lists (SD 1.5 ships one; SD 2.x
    lists it as null). synthset screens images with its quality gate, never by blacking them out."""
    if "safety_checker" in model_index:
        return {"safety_checker": None, "requires_safety_checker": False}
    return {}


def prompts_only(generator: LoadedGenerator, rows: list[dict[str, Any]]) -> CallInputs:
    """A text-to-image family's call takes nothing beside the prompts."""
    return CallInputs({}, [{} for _ in rows])


@dataclass(frozen=True)
class ModelFamily:
    """Everything synthset knows about one kind of diffusers pipeline (see docs/model-families.md)."""

    pipeline_class: str  # model_index.json's `_class_name`: the registry key
    title: str  # what messages call it ("Stable Diffusion XL")
    # Hub id -> the memory formula's figures, measured on its replica (benchmarks/replica_memory.py)
    memory: Mapping[str, ModelMemory] = field(default_factory=dict)
    denoiser: str = "unet"  # the component the knobs compile and put in channels_last; its sample_size x 8 = px
    vae_upcasts: bool = False  # in float16 the VAE decodes in float32 when its config says force_upcast
    load_kwargs: Callable[[dict[str, Any]], dict[str, Any]] = without_safety_checker  # from model_index.json
    # image-conditioned families only (augcond): the conditioner that turns real images into embeddings
    conditioner: Callable[[Any, Lock, RunDir], Conditioner] | None = None
    call_inputs: Callable[[LoadedGenerator, list[dict[str, Any]]], CallInputs] = prompts_only

    @property
    def conditions_on_images(self) -> bool:
        """Whether the pipeline is conditioned on image embeddings: it serves augcond, and only augcond."""
        return self.conditioner is not None
