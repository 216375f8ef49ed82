"""Stable unCLIP image variation (`StableUnCLIPImg2ImgPipeline`, SD 2.1 unCLIP): paper B's augcond generator.

The pipeline is conditioned on a CLIP image embedding (noised by `noise_level`) beside the prompt. So this
family serves augcond and only augcond (`plan --check` and `generate` refuse the other pairings); at load
it gets the augcond conditioner (`synthset.generation.conditioning`), and each call passes the rows'
(augmented) embeddings as `image_embeds`, holding the authors' after-noising dropout over the call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from synthset.generation.families.base import (
    GIB,
    SD_VAE_PARAMETERS,
    CallInputs,
    LoadedGenerator,
    ModelFamily,
    ModelMemory,
    prompts_only,
)

if TYPE_CHECKING:
    from synthset.generation.conditioning import Conditioner
    from synthset.run.lock import Lock
    from synthset.run.paths import RunDir

# Parameters: counted from the published configs; per-image bytes: fitted on the full replica (benchmarks/README.md).
SD21_UNCLIP = ModelMemory(
    1_926_293_675, SD_VAE_PARAMETERS, 768, 0.330 * GIB, 0.759 * GIB, False, 0.536 * GIB, 0.755 * GIB
)


def conditioner(pipe: Any, lock: Lock, run: RunDir) -> Conditioner:
    """The augcond conditioner over the pipeline's own image encoder (imported here: torch, datasets)."""
    from synthset.generation.conditioning import make_conditioner

    return make_conditioner(pipe, lock, run)


def call_inputs(generator: LoadedGenerator, rows: list[dict[str, Any]]) -> CallInputs:
    """The rows' image embeddings and the recipe's noise_level; each row's lam is recorded (cond_lambda)."""
    if generator.conditioner is None:
        return prompts_only(generator, rows)
    batch = generator.conditioner.embeddings(rows)
    embeds = batch.embeddings.to(device=generator.device, dtype=generator.pipe.image_encoder.dtype)
    return CallInputs(
        {"image_embeds": embeds, "noise_level": generator.spec.noise_level},
        [{"cond_lambda": lam} for lam in batch.lambdas],
        batch.after_noising(generator.pipe),  # the authors' dropout acts inside the call
    )


FAMILY = ModelFamily(
    pipeline_class="StableUnCLIPImg2ImgPipeline",
    title="unCLIP",
    memory={"stabilityai/stable-diffusion-2-1-unclip": SD21_UNCLIP},
    conditioner=conditioner,
    call_inputs=call_inputs,
)
