"""What synthset sets on a loaded pipeline beyond its weights: scheduler, safety checker, speed knobs.

Each choice here can change an image's bytes, so each is decided from the recipe and the model alone
(never from what happens to be installed) and the result is written into every row
(`generator_options`), next to the scheduler's class name.

- **Scheduler swap.** `SomeScheduler.from_config(pipe.scheduler.config)` keeps only the keys the repo's
  scheduler_config.json spells out; a key the file omits falls back to the *new* class's default. SD 1.5
  and SD 2.1 do not spell out `timestep_spacing`: their PNDM/DDIM use "leading", but DPM-Solver++, Euler
  and UniPC would come out "linspace" (other timesteps, other images). So the model's effective
  `prediction_type` and `timestep_spacing` are passed on explicitly (the recipe's `timestep_spacing`
  overrides the latter), and a swap that would change `prediction_type` (v-prediction models: SD 2.1
  768, unCLIP) is refused.
- **Safety checker.** SD 1.5's repo ships `safety_checker` + `feature_extractor`; diffusers would black
  out any image it flags. synthset loads the pipeline without it (and says so in the generate log):
  a classification set is filtered as a dataset, not by blacking out images one by one.
- **Load arguments** (no safety checker, no SDXL watermark) and anything else that depends on the kind of
  pipeline belong to its model family (`synthset.generation.families`).
- **Knobs** (recipe `generator.*`): `channels_last` (UNet and VAE memory format), `compile`
  (`torch.compile` of the UNet), `vae_slicing` (decode one image at a time: less peak memory at large
  batch), `vae_tiling` (decode in overlapping tiles: only above the VAE's `sample_size`). Each may
  change float reduction order, hence bytes, so each is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from synthset.errors import SynthsetError
from synthset.recipe import SCHEDULERS

if TYPE_CHECKING:
    from synthset.recipe import GeneratorSpec

SAFETY_CHECKER_OFF = (
    "the model ships a safety checker; the pipeline does not run it, so no image is blacked out; "
    "screen images with the recipe's quality gate instead (README 'Quality gate')"
)


@dataclass(frozen=True)
class PipelineOptions:
    """The effective settings recorded in every row's `generator_options`."""

    prediction_type: str
    timestep_spacing: str
    channels_last: bool
    compile: bool
    vae_slicing: bool
    vae_tiling: bool

    def as_row(self) -> dict[str, Any]:
        return {
            "prediction_type": self.prediction_type,
            "timestep_spacing": self.timestep_spacing,
            "channels_last": self.channels_last,
            "compile": self.compile,
            "vae_slicing": self.vae_slicing,
            "vae_tiling": self.vae_tiling,
        }


def ships_safety_checker(model_index: dict[str, Any]) -> bool:
    """Whether model_index.json names a safety checker component (SD 2.x and SDXL list it as null)."""
    entry = model_index.get("safety_checker")
    return isinstance(entry, list) and len(entry) == 2 and entry[1] is not None


def swap_scheduler(current: Any, name: str, timestep_spacing: str) -> Any:
    """The scheduler the recipe asks for, with the model's prediction type and (by default) its spacing.

    `name` is a key of SCHEDULERS or "default" (keep the class); `timestep_spacing` is "model" (keep the
    model scheduler's effective spacing) or a diffusers spacing.
    """
    import diffusers

    if name == "default" and timestep_spacing == "model":
        return current
    scheduler_class = type(current) if name == "default" else getattr(diffusers, SCHEDULERS[name])
    kept = {key: current.config[key] for key in ("prediction_type", "timestep_spacing") if key in current.config}
    if timestep_spacing != "model":
        kept["timestep_spacing"] = timestep_spacing
    swapped = scheduler_class.from_config(current.config, **kept)
    for key, value in kept.items():
        if swapped.config.get(key) != value:
            raise SynthsetError(
                f"generator.scheduler: {scheduler_class.__name__} does not keep the model's {key}={value!r} "
                f"(it has {swapped.config.get(key)!r}); choose another scheduler"
            )
    return swapped


def apply_knobs(pipe: Any, spec: GeneratorSpec, denoiser: str = "unet") -> None:
    """channels_last, torch.compile and VAE slicing/tiling as the recipe asks (all off by default).

    `denoiser` names the pipeline component that denoises (its family's: `unet`, or e.g. `transformer`).
    """
    import torch

    if spec.channels_last:
        getattr(pipe, denoiser).to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    if spec.vae_slicing:
        pipe.vae.enable_slicing()
    if spec.vae_tiling:
        pipe.vae.enable_tiling()
    if spec.compile:
        setattr(pipe, denoiser, torch.compile(getattr(pipe, denoiser)))


def pipeline_options(pipe: Any, spec: GeneratorSpec) -> PipelineOptions:
    config = pipe.scheduler.config
    return PipelineOptions(
        prediction_type=str(config.get("prediction_type", "epsilon")),
        timestep_spacing=str(config.get("timestep_spacing", "")),
        channels_last=spec.channels_last,
        compile=spec.compile,
        vae_slicing=spec.vae_slicing,
        vae_tiling=spec.vae_tiling,
    )
