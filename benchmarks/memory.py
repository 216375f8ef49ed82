"""Row 4: memory flatness.

4. Peak RSS of `synthset generate` on 8N images ÷ on N images. Each run is a fresh
   `python -m synthset generate` process; its peak RSS comes from `os.wait4`, the child's own rusage.
   The growth per extra image is reported beside the ratio: with a model's fixed footprint in both, a
   leak of a few KiB per image would hide in the ratio of a short run, not there.
4b. Peak RSS of `synthset generate` when its first batch is done, on the plan stage's lar_cd_sd plan
   (`--plan-classes` x `--plan-per-class` rows, long prompts) ÷ on a plan of 1/8 the classes: what a
   run holds per *planned* row before it makes anything (the process is killed after that first batch).
"""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.common import (
    PYTHON,
    Context,
    Row,
    judged,
    kill_tree,
    planned_run,
    ratio,
    run_child,
    start_child,
    synthset_generate,
    wait_child,
)

SIX_X_IMAGENET = 1000 * 1300 * 6  # rows of the largest recipe (~7.7M)
RSS_NOISE_MIB = 45  # the largest run-to-run spread of peak RSS seen for the same command on this machine


def peak_rss_at_first_batch(ctx: Context, run_dir: Path, tag: str) -> dict:
    """Start `synthset generate` (counted), kill it once one pipeline call is done, return its peak RSS."""
    log_dir = ctx.work / f"{tag}-log"
    started = time.perf_counter()
    proc, out, err = start_child([*PYTHON, "-m", "benchmarks.child", "counted", str(run_dir), str(log_dir)],
                                 ctx.work / "logs", tag)  # fmt: skip
    state = {"first_batch_s": None}

    def watch() -> None:
        log = log_dir / "rank0.log"
        if state["first_batch_s"] is None and log.is_file() and log.stat().st_size:
            state["first_batch_s"] = time.perf_counter() - started
            kill_tree(proc.pid)

    result = wait_child(proc, out, err, started, watch)
    if state["first_batch_s"] is None:
        raise RuntimeError(f"{tag}: generate ended before its first batch:\n{result.stderr[-2000:]}")
    return {"max_rss_mib": result.max_rss_mib, "first_batch_s": state["first_batch_s"]}


def plan_size_row(ctx: Context) -> Row:
    from benchmarks.plan import plan_seconds
    from synthset.run.paths import PLAN_FILE

    if "plan-lar_cd_sd" not in ctx.runs:
        plan_seconds(ctx, "lar_cd_sd")
    small_classes = max(1, ctx.args.plan_classes // 8)
    plan_seconds(ctx, "lar_cd_sd", classes=small_classes, name="plan-lar_cd_sd-small")
    import pyarrow.parquet as pq

    figures = {}
    for key, tag in (("small", "plan-lar_cd_sd-small"), ("large", "plan-lar_cd_sd")):
        run_dir = ctx.runs[tag]
        rows = pq.ParquetFile(run_dir / PLAN_FILE).metadata.num_rows
        figures[key] = {"plan_rows": rows, **peak_rss_at_first_batch(ctx, run_dir, f"startmem-{key}")}
        print(f"  plan of {rows} rows: peak RSS {figures[key]['max_rss_mib']:.1f} MiB at the first batch "
              f"({figures[key]['first_batch_s']:.1f} s)", flush=True)  # fmt: skip
    small, large = figures["small"], figures["large"]
    per_row_kib = (large["max_rss_mib"] - small["max_rss_mib"]) * 1024 / (large["plan_rows"] - small["plan_rows"])
    at_6x_gib = per_row_kib * SIX_X_IMAGENET / 2**20
    flat = ratio(large["max_rss_mib"], small["max_rss_mib"])
    # Peak RSS moves by up to ~RSS_NOISE_MIB run to run: a smaller difference says "flat", not a slope.
    slope = f"{per_row_kib:+.2f} KiB per planned row"
    if abs(large["max_rss_mib"] - small["max_rss_mib"]) < RSS_NOISE_MIB:
        slope += f", within RSS noise (±{RSS_NOISE_MIB} MiB)"
    elif large["plan_rows"] - small["plan_rows"] >= 50_000:
        slope += f": {at_6x_gib:+.1f} GiB at 6x ImageNet on one process"
    else:
        slope += ", too few rows to extrapolate"
    return Row(
        f"4b. memory at start: {large['plan_rows']:,}-row plan / {small['plan_rows']:,}-row plan",
        f"{flat:.3f} ({large['max_rss_mib']:.0f} / {small['max_rss_mib']:.0f} MiB, {slope})",
        "-",
        "info",
        {"ratio": flat, "kib_per_plan_row": per_row_kib, "gib_at_6x_imagenet_one_process": at_6x_gib, **figures},
    )


def measure(ctx: Context) -> list[Row]:
    small = ctx.args.mem_images
    peaks = {}
    for images in (small, 8 * small):
        run_dir = planned_run(ctx.work, f"mem-{images}", images)
        result = run_child(synthset_generate(run_dir), ctx.work / "logs", f"mem-{images}").check()
        peaks[images] = {"max_rss_mib": result.max_rss_mib, "wall_s": result.wall_s}
        print(f"  {images} images: peak RSS {result.max_rss_mib:.1f} MiB ({result.wall_s:.1f} s)", flush=True)
    flat = ratio(peaks[8 * small]["max_rss_mib"], peaks[small]["max_rss_mib"])
    growth_kib = (peaks[8 * small]["max_rss_mib"] - peaks[small]["max_rss_mib"]) * 1024 / (7 * small)
    return [
        Row(
            f"4. memory: peak RSS of {8 * small} images / {small} images",
            f"{flat:.3f} ({peaks[8 * small]['max_rss_mib']:.0f} / {peaks[small]['max_rss_mib']:.0f} MiB, "
            f"{growth_kib:+.1f} KiB per extra image)",
            "<= 1.10",
            judged(flat <= 1.10),
            {"ratio": flat, "growth_kib_per_image": growth_kib, "runs": peaks},
        ),
        plan_size_row(ctx),
    ]
