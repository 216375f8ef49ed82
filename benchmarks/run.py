"""`make bench`: synthset's overhead measured against the raw diffusers loop, in one run, as ratios.

Absolute seconds on a shared 2-core CPU say little; ratios taken in the same run do. Each case runs on
the tiny offline model so the numbers isolate what synthset adds (planning, per-sample generators,
padding, encoding, Parquet writing, hashing, records) to the pipeline calls themselves.

    python -m benchmarks.run [--images 256] [--plan-classes 1000] [--plan-per-class 100]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import yaml

RESULTS_DIR = Path(__file__).parent / "results"


def _recipe(out: Path, name: str, classes: int, per_class: int, strategy: str = "naive", **generator) -> Path:
    data = {
        "name": name,
        "output_dir": str(out),
        "classes": {"set": "imagenet-1k", "limit": classes},
        "configs": [{"name": strategy, "strategy": strategy, "images_per_class": per_class}],
        "generator": {
            "model": "synthset-testing:tiny-sd",
            "scheduler": "ddim",
            "steps": 4,
            "width": 64,
            "height": 64,
            "batch_size": 8,
            **generator,
        },
        "storage": {"format": "jpeg", "shard_size": 64, "row_group_size": 32},
    }
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def raw_diffusers_loop(model_dir: Path, images: int, batch_size: int) -> float:
    """The floor: the same pipeline calls with one shared generator, images discarded."""
    import diffusers
    import torch

    torch.set_num_threads(1)
    pipe = diffusers.DiffusionPipeline.from_pretrained(str(model_dir), safety_checker=None)
    pipe.scheduler = diffusers.DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    for _ in range(0, images, batch_size):
        pipe(
            ["a photo of a tench"] * batch_size,
            num_inference_steps=4,
            width=64,
            height=64,
            generator=generator,
            output_type="pil",
        )
    return time.perf_counter() - started


def synthset_generate(recipe_path: Path) -> float:
    from synthset.generation.plan import plan_run
    from synthset.generation.runner import generate_run
    from synthset.recipe import load_recipe

    recipe = load_recipe(recipe_path)
    plan_run(recipe)
    started = time.perf_counter()
    summary = generate_run(recipe.run_dir)
    elapsed = time.perf_counter() - started
    assert summary.all_shards_done
    return elapsed


def plan_stage(recipe_path: Path) -> tuple[float, int]:
    from synthset.generation.plan import plan_run
    from synthset.recipe import load_recipe

    recipe = load_recipe(recipe_path)
    started = time.perf_counter()
    summary = plan_run(recipe)
    return time.perf_counter() - started, summary.rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=256, help="images per generation case")
    parser.add_argument("--plan-classes", type=int, default=1000)
    parser.add_argument("--plan-per-class", type=int, default=100)
    args = parser.parse_args()

    from synthset import testing

    model_dir = testing.tiny_sd_path()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        per_class = args.images // 8
        raw = raw_diffusers_loop(model_dir, args.images, 8)
        ours = synthset_generate(_recipe(out, "gen", 8, per_class, cpu_threads=1))
        rows.append(("generate: synthset / raw diffusers loop (bs 8, 64 px, 4 steps)", args.images, raw, ours))
        plan_seconds, plan_rows = plan_stage(_recipe(out, "plan", args.plan_classes, args.plan_per_class))
        recipe = _recipe(out, "plan-cd-sd", args.plan_classes, args.plan_per_class, strategy="lar_cd_sd")
        cd_sd_seconds, cd_sd_rows = plan_stage(recipe)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"{'case':<66} {'items':>8} {'base s':>8} {'synthset s':>11} {'ratio':>7}")
    for name, items, base, value in rows:
        print(f"{name:<66} {items:>8} {base:>8.2f} {value:>11.2f} {value / base:>7.2f}")
    print(f"{'plan: naive prompts, rows per second':<66} {plan_rows:>8} {'':>8} {plan_seconds:>11.2f} "
          f"{plan_rows / plan_seconds:>7.0f}/s")  # fmt: skip
    print(f"{'plan: lar_cd_sd prompts, template backend, rows per second':<66} {cd_sd_rows:>8} {'':>8} "
          f"{cd_sd_seconds:>11.2f} {cd_sd_rows / cd_sd_seconds:>7.0f}/s")  # fmt: skip
    print(f"peak RSS of this benchmark process: {peak_mib:.0f} MiB")
    RESULTS_DIR.mkdir(exist_ok=True)
    result = {
        "generate": {"images": args.images, "raw_s": rows[0][2], "synthset_s": rows[0][3]},
        "plan": {"rows": plan_rows, "seconds": plan_seconds},
        "plan_lar_cd_sd_template": {"rows": cd_sd_rows, "seconds": cd_sd_seconds},
        "peak_rss_mib": peak_mib,
    }
    (RESULTS_DIR / "latest.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
