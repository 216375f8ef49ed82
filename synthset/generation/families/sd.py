"""Stable Diffusion 1.x and 2.x text-to-image (`StableDiffusionPipeline`).

SD 1.5 ships a safety checker and feature extractor, which synthset leaves out at load (the base default);
SD 2.1 (768) predicts v, which a scheduler swap keeps (`pipeline_options.swap_scheduler`).
"""

from __future__ import annotations

from synthset.generation.families.base import GIB, SD_VAE_PARAMETERS, ModelFamily, ModelMemory

# Parameters: counted from the published configs (tests/test_replicas.py); per-image bytes: fitted to
# benchmarks/replica_memory.py on the full replicas, bfloat16, CPU (benchmarks/README.md).
SD15 = ModelMemory(1_066_235_307, SD_VAE_PARAMETERS, 512, 0.178 * GIB, 0.334 * GIB, False, 0.387 * GIB, 0.502 * GIB)
SD21_BASE = ModelMemory(
    1_289_952_427, SD_VAE_PARAMETERS, 512, 0.182 * GIB, 0.356 * GIB, False, 0.324 * GIB, 0.382 * GIB
)
SD21 = ModelMemory(1_289_952_427, SD_VAE_PARAMETERS, 768, 0.329 * GIB, 0.772 * GIB, False, 0.549 * GIB, 0.724 * GIB)

FAMILY = ModelFamily(
    pipeline_class="StableDiffusionPipeline",
    title="Stable Diffusion",
    memory={
        "stable-diffusion-v1-5/stable-diffusion-v1-5": SD15,
        "runwayml/stable-diffusion-v1-5": SD15,
        "stabilityai/stable-diffusion-2-1-base": SD21_BASE,
        "stabilityai/stable-diffusion-2-1": SD21,
    },
)
