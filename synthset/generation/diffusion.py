"""Loading a diffusers pipeline the way the recipe says, and calling it on a batch of plan rows.

The pipeline comes from `DiffusionPipeline.from_pretrained` (a hub id pinned to the locked commit, or a
local directory): the tiny test models take the very same path. Each row brings its own seed, turned
into its own CPU `torch.Generator`, so a row's latents do not depend on its neighbours, its rank or the
device (CPU generators draw the same numbers everywhere; diffusers moves the latents to the device).
"""

from __future__ import annotations

import importlib.util
import logging
from typing import TYPE_CHECKING, Any

from synthset.errors import ModelError, first_line
from synthset.generation.families import augcond_mismatch, family_for
from synthset.generation.families.base import LoadedGenerator
from synthset.generation.host_memory import preload_largest_component, release_freed_memory
from synthset.generation.pipeline_options import (
    SAFETY_CHECKER_OFF,
    apply_knobs,
    pipeline_options,
    ships_safety_checker,
    swap_scheduler,
)

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image

    from synthset.run.lock import Lock
    from synthset.run.paths import RunDir

__all__ = ["LoadedGenerator", "generate_images", "generator_columns", "load_generator"]

logger = logging.getLogger(__name__)


def choose_attention(requested: str, device: torch.device) -> str:
    """xformers when asked for (or `auto`) and usable: importable and on CUDA; otherwise PyTorch SDPA."""
    usable = device.type == "cuda" and importlib.util.find_spec("xformers") is not None
    if requested == "xformers" and not usable:
        raise ModelError(
            "generator.attention: xformers needs a CUDA device and the xformers package (pip install xformers); "
            "use attention: auto or sdpa"
        )
    if requested == "sdpa":
        return "sdpa"
    return "xformers" if usable else "sdpa"


def choose_dtype(requested: str, device: torch.device) -> str:
    """`auto` is float16 on CUDA (half the memory, tensor cores) and float32 on CPU (fp16 is slow there)."""
    if requested == "auto":
        return "float16" if device.type == "cuda" else "float32"
    return requested


def load_generator(lock: Lock, device: torch.device, run: RunDir, show_progress: bool = True) -> LoadedGenerator:
    """Load the locked model; the libraries' loading bars show only on the main process, and only with
    debug logging (`synthset --verbose`)."""
    import diffusers
    import torch
    import transformers

    if not (show_progress and logger.isEnabledFor(logging.DEBUG)):
        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()

    spec = lock.recipe.generator
    if device.type == "cpu":
        # Same thread count on 1 or N processes, or the same sample gives other bytes (measured here).
        torch.set_num_threads(spec.cpu_threads)
    dtype = choose_dtype(spec.dtype, device)
    attention = choose_attention(spec.attention, device)
    kwargs: dict[str, Any] = {"dtype": getattr(torch, dtype)}
    if lock.model.hub_revision is not None:
        kwargs["revision"] = lock.model.hub_revision
    try:
        model_index = diffusers.DiffusionPipeline.load_config(lock.model.load_path, revision=kwargs.get("revision"))
        family = family_for(model_index.get("_class_name"))
        kwargs.update(family.load_kwargs(model_index))
        # The largest component first: its cast-on-load transient then sits on nothing else (host_memory).
        kwargs.update(preload_largest_component(lock.model.load_path, model_index, kwargs["dtype"], set(kwargs)))
        pipe = diffusers.DiffusionPipeline.from_pretrained(lock.model.load_path, **kwargs)
    except (OSError, ValueError) as error:  # missing or broken files, no network: one line, not a traceback
        raise ModelError(f"generator.model: cannot load {lock.model.load_path!r}: {first_line(error)}") from None
    pipe.scheduler = swap_scheduler(pipe.scheduler, spec.scheduler, spec.timestep_spacing)
    if attention == "xformers":
        pipe.enable_xformers_memory_efficient_attention()
    pipe.to(device)
    if device.type == "cpu":
        copy_weights_to_aligned_memory(pipe)
    apply_knobs(pipe, spec, family.denoiser)
    pipe.set_progress_bar_config(disable=True)
    options = pipeline_options(pipe, spec)
    logger.info(
        "generator: %s (%s) on %s, %s, attention=%s, scheduler=%s (%s, %s spacing)",
        spec.model, type(pipe).__name__, device, dtype, attention, type(pipe.scheduler).__name__,
        options.prediction_type, options.timestep_spacing,
    )  # fmt: skip
    safety_checker = "none"
    if ships_safety_checker(model_index):
        safety_checker = SAFETY_CHECKER_OFF
        logger.info("safety checker: %s", SAFETY_CHECKER_OFF)
    conditioner = None
    if any(c.strategy == "augcond" for c in lock.recipe.configs):
        make_conditioner = family.conditioner
        if make_conditioner is None:
            raise augcond_mismatch(type(pipe).__name__, spec.model)
        conditioner = make_conditioner(pipe, lock, run)
    scheduler = type(pipe.scheduler).__name__
    return LoadedGenerator(
        pipe, spec, device, dtype, attention, scheduler, options, family, conditioner, safety_checker
    )


def copy_weights_to_aligned_memory(pipe: Any) -> None:
    """Give every weight of the pipeline's modules its own freshly allocated (aligned) CPU memory.

    Without a process group, from_pretrained leaves weights memory-mapped from the safetensors file at
    unaligned addresses; under `accelerate launch` the same weights are copied into aligned memory. CPU
    kernels pick their code path by address: a one-row matmul (the unCLIP image encoder's projection of
    a single conditioning image) gave other bits on 1 process than on 2 (measured here). Copying makes
    the bytes of a sample independent of how the run was launched. The heap the old copies leave is
    handed back to the OS (3 GiB for SDXL's UNet in float32: `synthset.generation.host_memory`).
    """
    import torch

    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            copy_module_to_aligned_memory(component)


def copy_module_to_aligned_memory(model: Any) -> None:
    """`copy_weights_to_aligned_memory` for one torch module (the quality gate's CLIP and checker too)."""
    for module in model.modules():
        for parameter in module.parameters(recurse=False):
            parameter.data = parameter.data.clone()  # the same Parameter: tied weights stay tied
        for name, tensor in list(module.named_buffers(recurse=False)):
            setattr(module, name, tensor.clone())
    release_freed_memory()


def generate_images(generator: LoadedGenerator, rows: list[dict[str, Any]]) -> tuple[list[Image], list[dict]]:
    """One pipeline call for a full batch of plan rows, each with its own seeded generator.

    Returns the images and, per row, the columns generation decided (augcond's `cond_lambda`). What the
    call passes beside the prompts (unCLIP's image embeddings) comes from the model's family.
    """
    import torch

    spec = generator.spec
    seeds = [torch.Generator("cpu").manual_seed(row["seed"]) for row in rows]
    inputs = generator.family.call_inputs(generator, rows)
    negative = [row["negative_prompt"] or "" for row in rows]
    with torch.inference_mode(), inputs.hook:
        output = generator.pipe(
            prompt=[row["prompt"] for row in rows],
            # None, not [""] * n, when there is none: SDXL then uses zeros as its unconditional embedding
            # (force_zeros_for_empty_prompt, as its authors run it); SD 1.x/2.x encode "" either way.
            negative_prompt=negative if any(negative) else None,
            num_inference_steps=spec.steps,
            guidance_scale=spec.guidance,
            width=spec.width,
            height=spec.height,
            generator=seeds,
            output_type="pil",
            **inputs.kwargs,
        )
    return output.images, inputs.decided


def generator_columns(generator: LoadedGenerator, lock: Lock) -> dict[str, Any]:
    """The columns that say how every image of this run was made (constant per run)."""
    spec = generator.spec
    return {
        "model": spec.model,
        "model_revision": lock.model.revision,
        "scheduler": generator.scheduler,
        "steps": spec.steps,
        "guidance": spec.guidance,
        "width": spec.width,
        "height": spec.height,
        "attention": generator.attention,
        "dtype": generator.dtype,
        "batch_size": spec.batch_size,
        "generator_options": generator.options.as_row(),
    }
