"""The GPU check: every replica at float16, its attention and memory knobs, batch 1-16; one JSON out.

For each generator (SD 1.5, SD 2.1-base, SD 2.1 768-v, SD 2.1-unCLIP, SDXL base) the replica's pipeline is
assembled in GPU memory from the published configs (`replicas.assemble_pipeline`: random weights, nothing
downloaded or saved, seconds instead of the minutes a 7 GB checkout takes to write) and timed as synthset
runs it: classifier-free guidance, per-sample generators, negative prompt None, the safety checker out.

Each row is one pipeline setting at one batch size, at the model's native resolution. It records every
knob that can change bytes or memory (`attention`, `compile`, `channels_last`, `vae_slicing`,
`vae_tiling`, `vae`) and:
- `unet_call_s` (one denoising step: the UNet on 2 x batch rows), `vae_decode_s`, `other_s` (text
  encoders, scheduler, post-processing), from two timed 2-step calls after a warm-up call;
- `images_per_s` for a whole generation at `--steps` steps: batch / (other + steps x unet + vae);
- `peak_bytes`: the CUDA allocator's peak over one call (`max_memory_allocated`; `reserved` beside it),
  and `formula_bytes`: what `synthset plan --gpu-memory` predicts for the same setting;
- `fraction_of_matmul_peak`: achieved FLOP/s (FLOPs per image from `FlopCounterMode` at batch 1, times
  images/s) over a measured float16 matmul's FLOP/s on the same device.
Variants: SDPA at every batch size; at `--variant-batch` also channels_last, xformers (when importable),
torch.compile (replicas named by `--compile`; compile time reported as warm-up), and for SDXL its VAE
three ways (float16 with force_upcast: decoded in float32, as diffusers does by default; bfloat16; the
fp16-fix VAE's config). At the largest batch, VAE slicing and tiling (tiling engages only above the VAE's
sample_size, so at native size it should change nothing). A time budget (`--budget-s`) skips what is
left, saying so in the JSON; torch.compile rows come after every replica's other rows, and start only with
`COMPILE_RESERVE_S` of the budget left.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

GIB = 1024**3


@dataclass
class Device:
    """Where it runs, how to synchronise, and how its peak memory is read."""

    name: str

    @property
    def cuda(self) -> bool:
        return self.name.startswith("cuda")

    def sync(self) -> None:
        import torch

        if self.cuda:
            torch.cuda.synchronize()

    def reset_peak(self) -> None:
        import torch

        from benchmarks import rss

        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        else:
            rss.reset_peak_rss()

    def peak(self) -> dict[str, Any]:
        import torch

        from benchmarks import rss

        if self.cuda:
            return {"peak_bytes": torch.cuda.max_memory_allocated(), "peak_reserved_bytes":
                    torch.cuda.max_memory_reserved(), "peak_source": "cuda max_memory_allocated"}  # fmt: skip
        return {"peak_bytes": rss.peak_rss(), "peak_source": "cpu process peak RSS"}


def matmul_flops_per_s(device: Device, dtype, n: int, min_seconds: float) -> float:
    """A square matmul's achieved FLOP/s: the practical peak the pipeline is compared with."""
    import torch

    a = torch.randn(n, n, device=device.name, dtype=dtype)
    b = torch.randn(n, n, device=device.name, dtype=dtype)
    for _ in range(3):
        a @ b
    device.sync()
    iterations, started = 0, time.perf_counter()
    while True:
        for _ in range(10):
            a @ b
        iterations += 10
        device.sync()
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds:
            return 2 * n**3 * iterations / elapsed


@dataclass
class Timings:
    unet: list[float]
    vae: list[float]
    total: float


def timed_hooks(pipe: Any, device: Device) -> tuple[Callable[[], Timings], Callable[[], None]]:
    """Time every UNet call and VAE decode (synchronised): (read and clear the times, remove the hooks)."""
    unet: list[float] = []
    vae: list[float] = []
    started: dict[str, float] = {}

    def before(module, args, kwargs):
        device.sync()
        started["unet"] = time.perf_counter()

    def after(module, args, kwargs, output):
        device.sync()
        unet.append(time.perf_counter() - started["unet"])

    handles = [pipe.unet.register_forward_pre_hook(before, with_kwargs=True),
               pipe.unet.register_forward_hook(after, with_kwargs=True)]  # fmt: skip
    decode = pipe.vae.decode

    def timed_decode(*args, **kwargs):
        device.sync()
        begin = time.perf_counter()
        out = decode(*args, **kwargs)
        device.sync()
        vae.append(time.perf_counter() - begin)
        return out

    pipe.vae.decode = timed_decode

    def read() -> Timings:
        found = Timings(list(unet), list(vae), 0.0)
        unet.clear()
        vae.clear()
        return found

    def remove() -> None:
        for handle in handles:
            handle.remove()
        pipe.vae.decode = decode

    return read, remove


def call(pipe: Any, batch: int, size: int, steps: int, device: Device) -> float:
    """One pipeline call as synthset makes it; returns its wall seconds."""
    import torch

    extra: dict[str, Any] = {}
    if getattr(pipe, "image_encoder", None) is not None:
        width = pipe.image_encoder.config.projection_dim
        embeds = torch.randn(batch, width, generator=torch.Generator().manual_seed(0))
        extra = {"image_embeds": embeds.to(device.name, pipe.image_encoder.dtype), "noise_level": 0}
    device.sync()
    begin = time.perf_counter()
    with torch.inference_mode():
        pipe(prompt=["a photo of a tench"] * batch, negative_prompt=None, num_inference_steps=steps, guidance_scale=7.5,
             width=size, height=size, generator=[torch.Generator().manual_seed(i) for i in range(batch)],
             output_type="pil", **extra)  # fmt: skip
    device.sync()
    return time.perf_counter() - begin


def flops_per_image(pipe: Any, size: int, steps: int, device: Device) -> dict[str, float]:
    """FLOPs of one image at batch 1 (CFG included): text encoders + `steps` UNet calls + VAE decode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counts: dict[str, float] = {"unet_call": 0.0}
    with FlopCounterMode(display=False) as counter:
        whole = None
        with torch.inference_mode():
            begin = counter.get_total_flops()
            decode = pipe.vae.decode

            def counted_decode(*args, **kwargs):
                counts["before_vae"] = counter.get_total_flops()
                return decode(*args, **kwargs)

            pipe.vae.decode = counted_decode
            try:
                call(pipe, 1, size, 1, device)
            finally:
                pipe.vae.decode = decode
            whole = counter.get_total_flops() - begin
    counts["vae_and_after"] = whole - counts["before_vae"]
    # One step's call = everything before the VAE minus the text encoders; the text part is small, so the
    # step count is applied to all of it (an overestimate of under 1% for 25 steps).
    counts["per_image"] = counts["before_vae"] * steps + counts["vae_and_after"]
    return counts


def formula_bytes(name: str, scale: str, batch: int, size: int, dtype: str, knobs: dict[str, Any]) -> int | None:
    """`synthset plan --gpu-memory`'s estimate for this row (its figures are the full models')."""
    from synthset.generation.memory import KNOWN_MODELS, estimate
    from synthset.recipe import GeneratorSpec
    from synthset.testing.replicas import REPLICAS

    figures = KNOWN_MODELS.get(REPLICAS[name].hub_id)
    if figures is None or scale != "full":
        return None
    spec = GeneratorSpec(model=REPLICAS[name].hub_id, batch_size=batch, width=size, height=size,
                         vae_slicing=knobs["vae_slicing"], vae_tiling=knobs["vae_tiling"])  # fmt: skip
    return estimate(figures, spec, dtype).total


class Budget:
    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()


def _configure(pipe: Any, knobs: dict[str, Any]) -> Any:
    """Apply a row's knobs the way synthset's pipeline_options does (attention, channels_last, VAE, compile)."""
    import torch
    from diffusers.models.attention_processor import AttnProcessor2_0

    if knobs["attention"] == "xformers":
        pipe.enable_xformers_memory_efficient_attention()
    else:
        pipe.unet.set_attn_processor(AttnProcessor2_0())
    memory_format = torch.channels_last if knobs["channels_last"] else torch.contiguous_format
    pipe.unet.to(memory_format=memory_format)
    pipe.vae.to(memory_format=memory_format)
    (pipe.vae.enable_slicing if knobs["vae_slicing"] else pipe.vae.disable_slicing)()
    (pipe.vae.enable_tiling if knobs["vae_tiling"] else pipe.vae.disable_tiling)()
    if knobs["compile"]:
        pipe.unet = torch.compile(pipe.unet)
    return pipe


def measure_row(pipe: Any, name: str, scale: str, knobs: dict[str, Any], batch: int, size: int, steps: int,
                device: Device, dtype: str, flops: float | None, matmul: float | None) -> dict[str, Any]:  # fmt: skip
    read, remove = timed_hooks(pipe, device)
    try:
        warmup = call(pipe, batch, size, 2, device)
        read()
        walls, timings = [], []
        for _ in range(2):
            device.reset_peak()
            walls.append(call(pipe, batch, size, 2, device))
            timings.append(read())
        peak = device.peak()
    finally:
        remove()
    unet = [t for timing in timings for t in timing.unet]
    vae = [t for timing in timings for t in timing.vae]
    unet_s, vae_s = sum(unet) / len(unet), sum(vae) / len(vae)
    other_s = max(0.0, sum(walls) / len(walls) - 2 * unet_s - vae_s)
    images_per_s = batch / (other_s + steps * unet_s + vae_s)
    row = {"replica": name, "batch": batch, "width": size, "height": size, "dtype": dtype, **knobs,
           "warmup_s": round(warmup, 3), "unet_call_s": unet_s, "vae_decode_s": vae_s, "other_s": other_s,
           "steps": steps, "images_per_s": images_per_s, **peak,
           "formula_bytes": formula_bytes(name, scale, batch, size, dtype, knobs)}  # fmt: skip
    if flops is not None and matmul:
        row["flops_per_image"] = flops
        row["fraction_of_matmul_peak"] = images_per_s * flops / matmul
    return row


def _knobs(**changes: Any) -> dict[str, Any]:
    return {"attention": "sdpa", "compile": False, "channels_last": False, "vae_slicing": False, "vae_tiling": False,
            "vae": "model", **changes}  # fmt: skip


Groups = dict[str, list[tuple[dict[str, Any], int]]]
# torch.compile takes minutes on a big UNet (its first call compiles): a compile group starts only with this
# much of the budget left, so the budget's last row ends near its deadline. A guess, not a measurement.
COMPILE_RESERVE_S = 150.0


def plan_groups(name: str, batches: list[int], variant_batch: int, compile_models: set[str]) -> Groups:
    """A replica's rows (knobs, batch), grouped by the pipeline they need, in the order they are measured."""
    top = max(batches)
    groups: Groups = {"model": [(_knobs(), b) for b in batches]}
    groups["model"] += [(_knobs(channels_last=True), variant_batch), (_knobs(attention="xformers"), variant_batch),
                        (_knobs(vae_slicing=True), top), (_knobs(vae_tiling=True), top)]  # fmt: skip
    if name == "sdxl-base":
        groups["bfloat16 vae"] = [(_knobs(vae="bfloat16"), variant_batch)]
        groups["fp16-fix vae"] = [(_knobs(vae="sdxl-vae-fp16-fix"), variant_batch)]
    if name in compile_models:
        groups["compile"] = [(_knobs(compile=True), variant_batch)]
    return groups


def _skip_group(group: str, budget: Budget) -> str | None:
    if budget.left() <= 0:
        return "time budget spent"
    if group == "compile" and budget.left() < COMPILE_RESERVE_S:
        return f"time budget: {budget.left():.0f} s left, compiling needs ~{COMPILE_RESERVE_S:.0f} s"
    return None


def measure_replica(name: str, scale: str, device: Device, dtype_name: str, groups: Groups, steps: int,
                    size: int | None, matmul: float | None, budget: Budget,
                    on_row: Callable[[dict[str, Any]], None] = lambda row: None) -> list[dict[str, Any]]:  # fmt: skip
    """Measure `groups` (from `plan_groups`) of replica `name`; `on_row` sees each row as it is made."""
    import torch

    from synthset.testing.replicas import REPLICAS, assemble_pipeline

    dtype = getattr(torch, dtype_name)
    size = size or REPLICAS[name].native_size
    rows: list[dict[str, Any]] = []

    def build(vae_replica: str | None = None):
        pipe = assemble_pipeline(name, scale, device.name, dtype, vae_replica=vae_replica)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    # Each group's pipeline is built after the last one is freed, so a row's peak memory holds one copy of
    # the weights.
    counted: dict[str, float] | None = None
    for group, planned in groups.items():
        reason = _skip_group(group, budget)
        if reason is not None:
            for knobs, batch in planned:
                rows.append({"replica": name, "batch": batch, **knobs, "skipped": reason})
                on_row(rows[-1])
            continue
        started = time.perf_counter()
        pipe = build("sdxl-vae-fp16-fix" if group == "fp16-fix vae" else None)
        if group == "bfloat16 vae":
            _bfloat16_vae(pipe)
        build_s = time.perf_counter() - started
        if counted is None:
            counted = flops_per_image(pipe, size, steps, device)
        for knobs, batch in planned:
            rows.append(_one_row(pipe, name, scale, knobs, batch, size, steps, device, dtype_name, counted, matmul,
                                 budget, build_s))  # fmt: skip
            print(_summary(rows[-1]), flush=True)
            on_row(rows[-1])
        del pipe
        if device.cuda:
            torch.cuda.empty_cache()
    return rows


def _one_row(pipe: Any, name: str, scale: str, knobs: dict[str, Any], batch: int, size: int, steps: int,
             device: Device, dtype_name: str, counted: dict[str, float], matmul: float | None, budget: Budget,
             build_s: float) -> dict[str, Any]:  # fmt: skip
    import torch

    base = {"replica": name, "batch": batch, **knobs}
    if knobs["attention"] == "xformers" and (importlib.util.find_spec("xformers") is None or not device.cuda):
        return {**base, "skipped": "xformers needs CUDA and the xformers package"}
    if budget.left() <= 0:
        return {**base, "skipped": "time budget spent"}
    try:
        row = measure_row(_configure(pipe, knobs), name, scale, knobs, batch, size, steps, device, dtype_name,
                          counted["per_image"], matmul)  # fmt: skip
    except torch.OutOfMemoryError as error:
        row = {**base, "skipped": f"out of memory: {_first_line(error)}"}
    except Exception as error:  # noqa: BLE001 - one knob failing (xformers' kernels, a compile error) must not end the call
        row = {**base, "skipped": f"failed: {type(error).__name__}: {_first_line(error)}"}
    finally:
        if device.cuda:
            torch.cuda.empty_cache()
    return {**row, "build_s": round(build_s, 2), "flops_breakdown": counted}


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else ""


def _bfloat16_vae(pipe: Any) -> None:
    """Decode in bfloat16 (no float16 overflow, no float32 upcast): the VAE in bf16, latents cast on the way in."""
    import torch

    pipe.vae.to(torch.bfloat16)
    decode = pipe.vae.decode
    pipe.vae.decode = lambda z, *a, **k: decode(z.to(torch.bfloat16), *a, **k)


def _summary(row: dict[str, Any]) -> str:
    if "skipped" in row:
        knobs = {k: v for k, v in row.items() if k not in ("replica", "batch", "skipped") and v not in (False, "model")}
        return f"  {row['replica']} b{row['batch']} {knobs}: skipped ({row['skipped']})"
    knobs = ",".join(k for k in ("compile", "channels_last", "vae_slicing", "vae_tiling") if row.get(k))
    formula = f", formula {row['formula_bytes'] / GIB:.1f} GiB" if row.get("formula_bytes") else ""
    fraction = f", {row['fraction_of_matmul_peak']:.0%} of matmul peak" if "fraction_of_matmul_peak" in row else ""
    peak = row["peak_bytes"] / GIB
    return (f"  {row['replica']} b{row['batch']} {row['attention']} vae={row['vae']} {knobs}: "
            f"{row['images_per_s']:.2f} img/s, unet {row['unet_call_s'] * 1000:.0f} ms/step, vae "
            f"{row['vae_decode_s'] * 1000:.0f} ms, peak {peak:.2f} GiB{formula}{fraction}")  # fmt: skip
