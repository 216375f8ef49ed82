"""`python -m benchmarks.gpu`: the GPU check of every replica (and row 7 of `make bench`).

`python -m benchmarks.gpu` (on a machine with CUDA) runs `benchmarks/gpu_replicas.py`: every replica of a
generator the recipes name, float16, SDPA vs xformers vs torch.compile, channels_last, VAE slicing and
tiling, SDXL's VAE three ways, batch sizes 1-16, images/s, peak GPU memory beside the memory formula's
figure, and the fraction of a measured float16 matmul's FLOP/s; one JSON (`--out`, or `$OUT/gpu-check.json`
when `$OUT` is set, else benchmarks/results/gpu-check-<time>.json), rewritten after every row so that a run
cut off leaves what it measured. It starts no new row after `--budget-seconds` (default 420 s, so the whole
check ends within 8 minutes on an H100-class GPU) and lists what it skipped; `--plan` prints the rows it
would measure. On the GPU machine it runs through `benchmarks/gpu_run.sh` (benchmarks/README.md).
`--selftest` runs every code path of it on CPU with the scaled-down replicas at 64 px (xformers is
reported as skipped there); `--selftest --no-compile` skips torch.compile, the slow part on a CPU.

Row 7 of `make bench` (`measure(ctx)` below): Stable Diffusion 2.1-base's UNet alone, measured only where
CUDA is available. A UNet2DConditionModel with SD 2.1-base's config and random weights, fp16, batch of
`GPU_BATCH` images at 512x512 (64x64 latents) with classifier-free guidance (two UNet rows per image), 25
steps: images/s with PyTorch SDPA, with xformers (when importable), and with torch.compile (SDPA; compile
time excluded and reported). FLOPs per image are counted with `torch.utils.flop_counter.FlopCounterMode`
over one step at the CFG batch, times the steps; the fraction of peak is achieved FLOP/s ÷ a bf16
matmul's FLOP/s measured on the same device. The VAE decode and text encoder are not included. On a
CPU-only run the row says "not measured".
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.common import Context, Row

if TYPE_CHECKING:
    from benchmarks.gpu_replicas import Groups

# stabilityai/stable-diffusion-2-1-base unet/config.json
SD21_BASE_UNET: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "act_fn": "silu",
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "cross_attention_dim": 1024,
    "attention_head_dim": [5, 10, 20, 20],
    "use_linear_projection": True,
    "dual_cross_attention": False,
    "only_cross_attention": False,
    "upcast_attention": False,
    "num_class_embeds": None,
}
TINY_UNET: dict[str, Any] = {  # for --selftest on CPU only
    **SD21_BASE_UNET,
    "sample_size": 8,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [32, 64],
    "attention_head_dim": [2, 4],
    "cross_attention_dim": 32,
}
GPU_BATCH = 8  # images per UNet call (16 rows with CFG)
STEPS = 25
TEXT_TOKENS = 77


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_flops_per_s(device, dtype, n: int, min_seconds: float) -> float:
    """A square matmul's achieved FLOP/s: the practical peak the UNet is compared with."""
    import torch

    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    iterations, started = 0, time.perf_counter()
    while True:
        for _ in range(10):
            a @ b
        iterations += 10
        _sync(device)
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds:
            return 2 * n**3 * iterations / elapsed


def denoise_images_per_s(unet, inputs: dict, images: int, steps: int, min_seconds: float) -> dict[str, float]:
    """Images/s of full denoising loops (`steps` UNet calls of the CFG batch), repeated for `min_seconds`.

    One whole loop runs first as a warm-up, so a compiled UNet's compilations (and any recompilation on a
    new timestep) happen before the clock starts; its time is reported as `warmup_s`.
    """
    import torch

    device = inputs["sample"].device
    timesteps = [torch.tensor(999 - step * (1000 // steps), device=device) for step in range(steps)]

    def one_loop() -> None:
        for timestep in timesteps:
            unet(**{**inputs, "timestep": timestep})

    with torch.inference_mode():
        started = time.perf_counter()
        one_loop()
        _sync(device)
        warmup = time.perf_counter() - started
        loops, started = 0, time.perf_counter()
        while True:
            one_loop()
            loops += 1
            _sync(device)
            elapsed = time.perf_counter() - started
            if elapsed >= min_seconds:
                return {"images_per_s": images * loops / elapsed, "loops": loops, "seconds": elapsed,
                        "warmup_s": warmup}  # fmt: skip


def flops_per_image(unet, inputs: dict, images: int, steps: int) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        unet(**inputs)
    return counter.get_total_flops() * steps / images


def measure_unet(
    device_name: str = "cuda",
    dtype_name: str = "float16",
    config: dict | None = None,
    images: int = GPU_BATCH,
    steps: int = STEPS,
    min_seconds: float = 20.0,
    matmul_n: int = 8192,
    try_compile: bool = True,
) -> dict[str, Any]:
    """Every GPU figure of row 7, as a dict (also what `--selftest` prints)."""
    import diffusers
    import torch
    from diffusers.models.attention_processor import AttnProcessor2_0

    device, dtype = torch.device(device_name), getattr(torch, dtype_name)
    config = config or SD21_BASE_UNET
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(**config).to(device=device, dtype=dtype).eval()
    size = config["sample_size"]
    rows = 2 * images  # classifier-free guidance: unconditional + conditional rows per image
    inputs = {
        "sample": torch.randn(rows, config["in_channels"], size, size, device=device, dtype=dtype),
        "timestep": torch.tensor(999, device=device),
        "encoder_hidden_states": torch.randn(
            rows, TEXT_TOKENS, config["cross_attention_dim"], device=device, dtype=dtype
        ),  # fmt: skip
        "return_dict": False,
    }
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": dtype_name,
        "images_per_call": images,
        "latent": f"{config['in_channels']}x{size}x{size}",
        "steps": steps,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "parameters": sum(p.numel() for p in unet.parameters()),
    }
    result["flops_per_image"] = flops_per_image(unet, inputs, images, steps)
    result["bf16_matmul_flops_per_s"] = matmul_flops_per_s(device, torch.bfloat16, matmul_n, min(min_seconds, 5.0))
    backends: dict[str, Any] = {}
    unet.set_attn_processor(AttnProcessor2_0())
    backends["sdpa"] = denoise_images_per_s(unet, inputs, images, steps, min_seconds)
    if importlib.util.find_spec("xformers") is None:
        backends["xformers"] = {"skipped": "xformers is not installed"}
    elif device.type != "cuda":
        backends["xformers"] = {"skipped": "xformers needs CUDA"}
    else:
        unet.enable_xformers_memory_efficient_attention()
        backends["xformers"] = denoise_images_per_s(unet, inputs, images, steps, min_seconds)
        unet.set_attn_processor(AttnProcessor2_0())
    if try_compile:
        compiled = torch.compile(unet, fullgraph=False)
        backends["torch.compile (sdpa)"] = denoise_images_per_s(compiled, inputs, images, steps, min_seconds)
    else:
        backends["torch.compile (sdpa)"] = {"skipped": "not asked for"}
    for figures in backends.values():
        if "images_per_s" in figures:
            achieved = figures["images_per_s"] * result["flops_per_image"]
            figures["fraction_of_bf16_matmul"] = achieved / result["bf16_matmul_flops_per_s"]
    result["backends"] = backends
    return result


def measure(ctx: Context) -> list[Row]:
    import torch

    name = "7. GPU: SD 2.1-base UNet fp16 512 px, 25 steps"
    if not torch.cuda.is_available():
        return [Row(name, "not measured (no GPU in this run)", "-", "not measured", {"measured": False,
                    "reason": "no GPU in this run (torch.cuda.is_available() is False)"})]  # fmt: skip
    figures = measure_unet(min_seconds=ctx.args.min_section_s)
    parts = []
    for backend, values in figures["backends"].items():
        if "images_per_s" in values:
            parts.append(f"{backend} {values['images_per_s']:.2f} img/s ({values['fraction_of_bf16_matmul']:.0%})")
        else:
            parts.append(f"{backend}: {values['skipped']}")
    value = (f"{figures['device']}: " + ", ".join(parts)
             + f"; {figures['flops_per_image'] / 1e12:.2f} TFLOP/img, bf16 matmul "
             f"{figures['bf16_matmul_flops_per_s'] / 1e12:.0f} TFLOP/s")  # fmt: skip
    return [Row(name, value, "-", "info", {"measured": True, **figures})]


def replica_plans(args: argparse.Namespace) -> list[tuple[str, Groups]]:
    """(replica, groups) in measuring order: every replica's own rows first, then the torch.compile ones.

    Compiling takes minutes; with a time budget, the rows every replica has (batch sweep, knobs) come first.
    """
    from benchmarks.gpu_replicas import plan_groups

    compile_models = set() if args.no_compile else set(args.compile.split(","))
    batches = [int(b) for b in args.batches.split(",")]
    plans = [(name, plan_groups(name, batches, args.variant_batch, compile_models)) for name in args.only.split(",")]
    first = [(name, {g: rows for g, rows in groups.items() if g != "compile"}) for name, groups in plans]
    return first + [(name, {"compile": groups["compile"]}) for name, groups in plans if "compile" in groups]


def print_plan(args: argparse.Namespace) -> None:
    """`--plan`: the rows the check would measure, in order, and its budget; imports no torch."""
    from benchmarks.gpu_replicas import COMPILE_RESERVE_S

    plans = replica_plans(args)
    count = sum(len(rows) for _, groups in plans for rows in groups.values())
    print(f"plan: {count} rows, dtype {args.dtype or 'float16'}, {args.steps} steps; no row starts after "
          f"{args.budget_s:.0f} s, compile rows only with {COMPILE_RESERVE_S:.0f} s left")  # fmt: skip
    for name, groups in plans:
        for group, rows in groups.items():
            cells = [", ".join([f"b{batch}", *_changed(knobs)]) for knobs, batch in rows]
            print(f"  {name} [{group}]: " + "; ".join(cells))


def _changed(knobs: dict[str, Any]) -> list[str]:
    """A row's knobs that differ from plain SDPA (what --plan prints)."""
    from benchmarks.gpu_replicas import _knobs

    return [k if v is True else f"{k}={v}" for k, v in knobs.items() if v != _knobs()[k]]


def replica_check(args: argparse.Namespace, save: Callable[[dict[str, Any]], None] = lambda result: None) -> dict:
    """Every replica's rows (see benchmarks/gpu_replicas.py), with the device's matmul peaks.

    `save` gets the whole result so far after every row, so a run cut off at the call's limit leaves its rows.
    """
    import torch

    from benchmarks.gpu_replicas import Budget, Device, matmul_flops_per_s, measure_replica

    started = time.perf_counter()
    device = Device("cpu" if args.selftest else "cuda")
    if not args.selftest and not torch.cuda.is_available():
        raise SystemExit("benchmarks.gpu: no CUDA device here; `--selftest` runs the same code on CPU")
    budget = Budget(args.budget_s)
    dtype = args.dtype or "float16"
    n = 256 if args.selftest else 8192
    matmul = {name: matmul_flops_per_s(device, getattr(torch, name), n, 0.5 if args.selftest else 3.0)
              for name in ("float16", "bfloat16")}  # fmt: skip
    rows: list[dict[str, Any]] = []
    result = {
        "device": torch.cuda.get_device_name() if device.cuda else "cpu (selftest: scaled-down replicas, 64 px)",
        "torch": torch.__version__, "packages": package_versions(), "dtype": dtype, "matmul_flops_per_s": matmul,
        "budget_s": args.budget_s, "rows": rows,
    }  # fmt: skip

    def on_row(row: dict[str, Any]) -> None:
        rows.append(row)
        save({**result, "elapsed_s": round(time.perf_counter() - started, 1), "finished": False})

    for name, groups in replica_plans(args):
        measure_replica(name, "small" if args.selftest else "full", device, dtype, groups, args.steps,
                        64 if args.selftest else None, matmul["float16" if dtype == "float16" else "bfloat16"],
                        budget, on_row)  # fmt: skip
    return {**result, "elapsed_s": round(time.perf_counter() - started, 1), "finished": True,
            "skipped_rows": sum("skipped" in row for row in rows)}  # fmt: skip


def package_versions() -> dict[str, str | None]:
    """Versions of what the numbers depend on (the GPU image's and the bundle's), None where not installed."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for name in ("torch", "diffusers", "transformers", "huggingface-hub", "xformers", "triton", "pydantic"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def write_json(out: Path, result: dict[str, Any]) -> None:
    """Temp file + rename: a reader (or a kill mid-write) never sees half a file."""
    from synthset.fsutil import write_text_atomic

    write_text_atomic(out, json.dumps(result, indent=2, default=str))


def default_out() -> Path:
    if os.environ.get("OUT"):
        return Path(os.environ["OUT"]) / "gpu-check.json"
    return Path(__file__).parent / "results" / f"gpu-check-{time.strftime('%Y%m%dT%H%M%S')}.json"


def main(argv: list[str] | None = None) -> None:
    from synthset.testing.replicas import PIPELINE_REPLICAS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--selftest", action="store_true", help="scaled-down replicas on CPU: checks every code path")
    parser.add_argument("--plan", action="store_true", help="print the rows it would measure and stop (no torch)")
    parser.add_argument("--only", default=",".join(PIPELINE_REPLICAS), help="comma-separated replicas")
    parser.add_argument("--batches", default=None, help="batch sizes (default 1,2,4,8,16; selftest 1,2)")
    parser.add_argument("--variant-batch", type=int, default=None, help="batch of the knob variants (default 8; 2)")
    parser.add_argument("--steps", type=int, default=25, help="steps of the generation images/s is given for")
    parser.add_argument("--compile", default="sd15,sdxl-base", help="replicas to torch.compile (minutes each)")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--dtype", default=None, choices=("float16", "bfloat16", "float32"),
                        help="default float16")  # fmt: skip
    parser.add_argument("--budget-seconds", "--budget-s", dest="budget_s", type=float, default=420.0,
                        help="start no new row after this many seconds; the JSON lists what it skipped")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default $OUT/gpu-check.json or results/)")
    parser.add_argument("--unet-only", action="store_true", help="row 7's SD 2.1-base UNet figures instead")
    parser.add_argument("--seconds", type=float, default=20.0, help="--unet-only: minimum seconds per backend")
    args = parser.parse_args(argv)
    if args.unet_only:
        if args.selftest:
            figures = measure_unet("cpu", "float32", TINY_UNET, images=1, steps=2, min_seconds=min(args.seconds, 1.0),
                                   matmul_n=256, try_compile=not args.no_compile)  # fmt: skip
        else:
            figures = measure_unet(min_seconds=args.seconds)
        print(json.dumps(figures, indent=2))
        return
    args.batches = args.batches or ("1,2" if args.selftest else "1,2,4,8,16")
    args.variant_batch = args.variant_batch or (2 if args.selftest else 8)
    if args.plan:
        print_plan(args)
        return
    out = args.out or default_out()
    result = replica_check(args, lambda partial: write_json(out, partial))
    write_json(out, result)
    print(f"{len(result['rows'])} rows ({result['skipped_rows']} skipped) in {result['elapsed_s']} s: {out}")


if __name__ == "__main__":
    main()
