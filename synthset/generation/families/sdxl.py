"""Stable Diffusion XL text-to-image (`StableDiffusionXLPipeline`).

- **Invisible watermark.** diffusers applies it whenever the `invisible-watermark` package happens to be
  importable; synthset turns it off at load, so an image's bytes do not depend on the environment.
- **VAE upcast.** The SDXL VAE config says `force_upcast`: in float16 the pipeline decodes in float32,
  with a float32 copy of the VAE, which the memory formula counts.
- **Empty negative prompt.** With none, the call gets `negative_prompt=None`, so SDXL uses zeros as its
  unconditional embedding (`force_zeros_for_empty_prompt`, as its authors run it); see `diffusion.py`.
"""

from __future__ import annotations

from typing import Any

from synthset.generation.families.base import GIB, SD_VAE_PARAMETERS, ModelFamily, ModelMemory, without_safety_checker

# Parameters: counted from the published configs; per-image bytes: fitted on the full replica (benchmarks/README.md).
SDXL_BASE = ModelMemory(
    3_468_837_867, SD_VAE_PARAMETERS, 1024, 0.387 * GIB, 1.204 * GIB, True, 0.507 * GIB, 1.280 * GIB
)


def load_kwargs(model_index: dict[str, Any]) -> dict[str, Any]:
    """No watermark (whatever is installed), and no safety checker should a repo list one."""
    return {**without_safety_checker(model_index), "add_watermarker": False}


FAMILY = ModelFamily(
    pipeline_class="StableDiffusionXLPipeline",
    title="Stable Diffusion XL",
    memory={"stabilityai/stable-diffusion-xl-base-1.0": SDXL_BASE},
    vae_upcasts=True,
    load_kwargs=load_kwargs,
)
