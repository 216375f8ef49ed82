"""Peak memory of each full-size replica at batch sizes 1, 4 and 8: the measurements behind the formula.

`python -m benchmarks.replica_memory [--only sd15,...] [--dtype bfloat16] [--batches 1,4,8]` runs one
fresh child process per replica. The child loads the replica as `synthset generate` does (from_pretrained
with synthset's load arguments, weights copied into aligned memory), then for each batch size, smallest
first, makes one pipeline call at the native resolution (1 step, classifier-free guidance, so the UNet
sees 2 x batch rows) and reads this process's peak RSS separately for the text-encoder + UNet phase and
for the VAE decode (the peak is reset between them: /proc/self/clear_refs, `benchmarks/rss.py`).

Reported per replica: parameters loaded, RSS after imports and after loading, and per batch the peak
above the loaded RSS of each phase. `synthset.generation.memory` fits its per-image activation figures
(bytes per image at native size, per phase) to these numbers; the fit's residuals are printed beside
them. The default dtype is bfloat16: the 2-byte activations a GPU run in float16 has, and on this CPU
(AMX) 3x faster than float32. Results: `benchmarks/results/replica-memory-<time>.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import PYTHON, REPO, REPORT_PREFIX, run_child

GIB = 1024**3


def measure(name: str, dtype_name: str, batches: list[int], threads: int) -> dict[str, Any]:
    """Child mode: load replica `name` and measure each batch size's phase peaks (bytes above loaded RSS)."""
    import diffusers
    import torch

    from benchmarks import rss
    from synthset.generation.diffusion import copy_weights_to_aligned_memory
    from synthset.generation.families import load_kwargs
    from synthset.testing.replicas import REPLICAS, replica_path

    torch.set_num_threads(threads)
    diffusers.utils.logging.disable_progress_bar()
    rss.trim_heap()
    after_imports = rss.current_rss()
    path = replica_path(name, "full")
    index = diffusers.DiffusionPipeline.load_config(str(path))
    started = time.perf_counter()
    pipe = diffusers.DiffusionPipeline.from_pretrained(
        str(path), dtype=getattr(torch, dtype_name), **load_kwargs(index)
    )
    copy_weights_to_aligned_memory(pipe)
    pipe.set_progress_bar_config(disable=True)
    load_s = time.perf_counter() - started
    rss.trim_heap()
    loaded = rss.current_rss()
    size = REPLICAS[name].native_size
    phases: dict[str, int] = {}
    decode = pipe.vae.decode

    def measured_decode(*args, **kwargs):
        phases["unet"] = rss.peak_rss()
        rss.reset_peak_rss()
        return decode(*args, **kwargs)

    pipe.vae.decode = measured_decode
    modules = [c for c in pipe.components.values() if isinstance(c, torch.nn.Module)]
    result: dict[str, Any] = {
        "replica": name, "dtype": dtype_name, "native_size": size, "threads": threads, "load_s": round(load_s, 1),
        "parameters_loaded": sum(p.numel() for m in modules for p in m.parameters()),
        "rss_after_imports": after_imports, "rss_loaded": loaded, "batches": {},
    }  # fmt: skip
    for batch in batches:
        extra: dict[str, Any] = {}
        if getattr(pipe, "image_encoder", None) is not None:
            width = pipe.image_encoder.config.projection_dim
            extra = {"image_embeds": torch.randn(batch, width, dtype=pipe.image_encoder.dtype), "noise_level": 0}
        rss.reset_peak_rss()
        base = rss.current_rss()
        begin = time.perf_counter()
        with torch.inference_mode():
            pipe(prompt=["a photo of a tench"] * batch, negative_prompt=None, num_inference_steps=1, guidance_scale=7.5,
                 width=size, height=size, generator=[torch.Generator().manual_seed(i) for i in range(batch)],
                 output_type="pil", **extra)  # fmt: skip
        vae_peak = rss.peak_rss()
        result["batches"][str(batch)] = {
            "seconds": round(time.perf_counter() - begin, 1),
            "rss_before": base,
            "unet_phase_peak_above_loaded": phases["unet"] - loaded,
            "vae_phase_peak_above_loaded": vae_peak - loaded,
        }
        print(f"  {name} {dtype_name} batch {batch}: " + json.dumps(result["batches"][str(batch)]), file=sys.stderr,
              flush=True)  # fmt: skip
        rss.trim_heap()
    return result


def main(argv: list[str] | None = None) -> int:
    from synthset.testing.replicas import PIPELINE_REPLICAS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(PIPELINE_REPLICAS))
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    parser.add_argument("--batches", default="1,4,8")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    if args.child:
        print(REPORT_PREFIX + json.dumps(measure(args.only, args.dtype, batches, args.threads)), flush=True)
        return 0
    results, work = [], Path(os.environ.get("TMPDIR", "/tmp")) / f"replica-memory-{os.getpid()}"
    for name in args.only.split(","):
        print(f"{name} ({args.dtype}, batches {args.batches}):", flush=True)
        child = run_child([*PYTHON, "-m", "benchmarks.replica_memory", "--child", "--only", name, "--dtype", args.dtype,
                           "--batches", args.batches, "--threads", str(args.threads)], work, name,
                          timeout_s=4 * 3600)  # fmt: skip
        if child.returncode != 0:
            print(f"  failed ({child.returncode}): {child.stderr[-2000:]}", flush=True)
            continue
        report = {**child.report, "child_max_rss": int(child.max_rss_mib * 1024 * 1024)}
        results.append(report)
        print_report(report)
    out = REPO / "benchmarks" / "results" / f"replica-memory-{args.dtype}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"results: {out}")
    return 0


def fit_per_image(points: dict[int, float]) -> tuple[float, float, list[float]]:
    """Least-squares line through (batch, bytes): (bytes per image, intercept, residual per point)."""
    xs, ys = list(points), list(points.values())
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread if spread else 0.0
    intercept = mean_y - slope * mean_x
    return slope, intercept, [y - (slope * x + intercept) for x, y in zip(xs, ys, strict=True)]


def print_report(report: dict[str, Any]) -> None:
    loaded = (report["rss_loaded"] - report["rss_after_imports"]) / GIB
    print(f"  parameters {report['parameters_loaded'] / 1e9:.3f}B, loaded RSS +{loaded:.2f} GiB "
          f"(weights {report['parameters_loaded'] * (4 if report['dtype'] == 'float32' else 2) / GIB:.2f} GiB), "
          f"load {report['load_s']} s")  # fmt: skip
    for phase in ("unet", "vae"):
        points = {int(b): v[f"{phase}_phase_peak_above_loaded"] for b, v in report["batches"].items()}
        slope, intercept, residuals = fit_per_image(points)
        cells = ", ".join(f"b{b} {v / GIB:.2f}" for b, v in points.items())
        print(f"  {phase} phase peak above loaded (GiB): {cells}; fit {slope / GIB:.3f} GiB/image + "
              f"{intercept / GIB:.2f}, residuals {', '.join(f'{r / GIB:+.2f}' for r in residuals)}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
