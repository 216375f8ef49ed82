"""Watching a loaded pipeline from the inside: what the UNet is fed, and how long each part takes.

`instrument(generator, obs)` puts hooks on the UNet (a forward pre-hook and a forward hook, with keyword
arguments) and wraps the VAE's `decode`, so a run through the real runner reports, in the dict `obs`:
the timesteps the scheduler sent, the shapes of the text embeddings, SDXL's pooled embeddings and time
ids, unCLIP's class labels (the image embedding with its noise-level embedding), whether the
unconditional rows are zeros, and the seconds of every UNet call and VAE decode. Nothing here changes
what the pipeline computes.
"""

from __future__ import annotations

import time
from typing import Any


def _shape(value: Any) -> list[int] | None:
    return list(value.shape) if value is not None and hasattr(value, "shape") else None


def _all_zero(value: Any) -> bool:
    return bool((value == 0).all())


def describe_pipeline(pipe: Any) -> dict[str, Any]:
    """Component classes, parameters loaded, UNet dtype, attention processors, scheduler settings."""
    import torch

    modules = {name: c for name, c in pipe.components.items() if isinstance(c, torch.nn.Module)}
    return {
        "pipeline": type(pipe).__name__,
        "components": {name: type(c).__name__ for name, c in pipe.components.items() if c is not None},
        "parameters": {name: sum(p.numel() for p in m.parameters()) for name, m in modules.items()},
        "unet_dtype": str(pipe.unet.dtype).removeprefix("torch."),
        "vae_dtype": str(pipe.vae.dtype).removeprefix("torch."),
        "attention_processors": sorted({type(p).__name__ for p in pipe.unet.attn_processors.values()}),
        "scheduler": {
            "class": type(pipe.scheduler).__name__,
            "prediction_type": pipe.scheduler.config.get("prediction_type"),
            "timestep_spacing": pipe.scheduler.config.get("timestep_spacing"),
        },
        "safety_checker_loaded": getattr(pipe, "safety_checker", None) is not None,
        "vae_force_upcast": bool(pipe.vae.config.get("force_upcast", False)),
    }


def _first_call_details(kwargs: dict[str, Any], sample: Any, noise_level: int | None) -> dict[str, Any]:
    """What the first UNet call of a pipeline run is given (CFG: the first half of the rows is unconditional)."""
    details: dict[str, Any] = {"sample": _shape(sample)}
    states = kwargs.get("encoder_hidden_states")
    details["encoder_hidden_states"] = _shape(states)
    half = states.shape[0] // 2 if states is not None else 0
    if states is not None and half:
        details["uncond_text_zero"] = _all_zero(states[:half])
    added = kwargs.get("added_cond_kwargs") or {}
    if "text_embeds" in added:
        details["text_embeds"] = _shape(added["text_embeds"])
        details["uncond_pooled_zero"] = _all_zero(added["text_embeds"][:half]) if half else None
        details["time_ids"] = [[float(v) for v in row] for row in added["time_ids"]]
    labels = kwargs.get("class_labels")
    if labels is not None:
        details["class_labels"] = _shape(labels)
        if noise_level is not None and half:
            from diffusers.models.embeddings import get_timestep_embedding

            width = labels.shape[1] // 2
            expected = get_timestep_embedding(
                __import__("torch").tensor([noise_level]), width, flip_sin_to_cos=True, downscale_freq_shift=0
            ).to(labels.dtype)
            details["uncond_class_labels_zero"] = _all_zero(labels[:half])
            details["noise_level_embedding_max_error"] = float((labels[half:, width:] - expected).abs().max())
    return details


def instrument(generator: Any, obs: dict[str, Any], noise_level: int | None = None) -> None:
    """Hook the generator's UNet and VAE; fill `obs` as the pipeline runs."""
    pipe = generator.pipe
    obs.update(describe_pipeline(pipe))
    obs["generator_options"] = generator.options.as_row()
    obs["safety_checker"] = generator.safety_checker
    obs["unet_calls"] = []
    obs["vae_decodes"] = []
    started: dict[str, float] = {}

    def before(module, args, kwargs):
        sample = args[0] if args else kwargs.get("sample")
        timestep = args[1] if len(args) > 1 else kwargs.get("timestep")
        call = {"timestep": float(timestep.flatten()[0]) if hasattr(timestep, "flatten") else float(timestep)}
        if not obs["unet_calls"]:
            call.update(_first_call_details(kwargs, sample, noise_level))
        obs["unet_calls"].append(call)
        started["unet"] = time.perf_counter()

    def after(module, args, kwargs, output):
        obs["unet_calls"][-1]["seconds"] = time.perf_counter() - started["unet"]

    pipe.unet.register_forward_pre_hook(before, with_kwargs=True)
    pipe.unet.register_forward_hook(after, with_kwargs=True)
    decode = pipe.vae.decode

    def timed_decode(*args, **kwargs):
        begin = time.perf_counter()
        result = decode(*args, **kwargs)
        obs["vae_decodes"].append({"seconds": time.perf_counter() - begin, "latents": _shape(args[0])})
        return result

    pipe.vae.decode = timed_decode
