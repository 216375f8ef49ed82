"""The plan stage's throughput: rows per second for naive prompts and for lar_cd_sd with the template
backend (no LLM), `--plan-classes` classes x `--plan-per-class` images, in this process."""

from __future__ import annotations

import time

import yaml

from benchmarks.common import CLASSES, GEN, Context, Row, planned_run, quiet


def plan_seconds(ctx: Context, strategy: str, classes: int | None = None, name: str = "") -> tuple[float, int]:
    """Plan `classes` (default `--plan-classes`) x `--plan-per-class` rows, as run `name` (or plan-STRATEGY)."""
    from synthset.generation.plan import plan_run
    from synthset.recipe import load_recipe

    name = name or f"plan-{strategy}"
    data = {
        "name": name,
        "output_dir": str(ctx.work),
        "classes": {"set": "imagenet-1k", "limit": classes or ctx.args.plan_classes},
        "configs": [{"name": strategy, "strategy": strategy, "images_per_class": ctx.args.plan_per_class}],
        "generator": GEN,
        "storage": {"format": "jpeg", "shard_size": 1000, "row_group_size": 100},
    }
    path = ctx.work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    recipe = load_recipe(path)
    ctx.runs[name] = recipe.run_dir
    with quiet():
        started = time.perf_counter()
        summary = plan_run(recipe)
        return time.perf_counter() - started, summary.rows


def measure(ctx: Context) -> list[Row]:
    planned_run(ctx.work, "plan-warmup", CLASSES)  # first use: class tables, lazy imports
    rows = []
    for strategy, label in (("naive", "naive prompts"), ("lar_cd_sd", "lar_cd_sd prompts, template backend")):
        seconds, count = plan_seconds(ctx, strategy)
        print(f"  plan {strategy}: {count} rows in {seconds:.2f} s", flush=True)
        rows.append(
            Row(
                f"plan: {label}",
                f"{count / seconds:,.0f} rows/s ({count:,} rows in {seconds:.2f} s)",
                "-",
                "info",
                {"rows": count, "seconds": seconds, "rows_per_s": count / seconds},
            )
        )
    return rows
