"""Row 8d: the object-store overhead — `synthset generate` into an s3:// run ÷ into a local run, same plan.

The store is moto's S3 server on loopback (tests/s3server.py), reached through s3fs as AWS would be. Each
round plans the same recipe twice, a local run and an s3:// one (`plan --run-dir`), and times one
`synthset generate` process on each, in alternating order. What the s3:// run adds: fetching the plan into
scratch, claims by conditional puts with heartbeats, and putting every finished shard and its record. A
loopback store is faster than a real one; what the row shows is that nothing of the store's work sits on
the generation path (shards are put by the writer thread while the next shard is generated).
"""

from __future__ import annotations

import os
import sys

from benchmarks.common import (
    PYTHON,
    REPO,
    Context,
    Row,
    judged,
    planned_run,
    quiet,
    rank_summaries,
    run_child,
    write_recipe,
)

BUCKET = "bench"


def _plan_on_store(ctx: Context, name: str, images: int) -> str:
    """Plan the bench recipe into s3://bench/<name>, as `synthset plan RECIPE --run-dir URL` does."""
    from synthset.generation.plan import plan_run
    from synthset.recipe import load_recipe
    from synthset.run.mirror import push
    from synthset.run.paths import RunDir

    run = RunDir.at(f"s3://{BUCKET}/{name}")
    with quiet():
        plan_run(load_recipe(write_recipe(ctx.work, name, images)), run)
    push(run)
    return str(run)


def measure(ctx: Context) -> list[Row]:
    sys.path.insert(0, str(REPO / "tests"))
    from s3server import make_bucket, moto_s3_server, s3_environment

    images = ctx.args.straggler_images
    rounds = 2
    walls: dict[str, list[float]] = {"local": [], "s3": []}
    loops: dict[str, list[float]] = {"local": [], "s3": []}
    os.environ["SYNTHSET_SCRATCH"] = str(ctx.work / "store-scratch")
    with moto_s3_server() as endpoint, s3_environment(endpoint):
        make_bucket(BUCKET)
        for round_ in range(rounds):
            order = ["local", "s3"] if round_ % 2 == 0 else ["s3", "local"]
            for where in order:
                name = f"store-{where}-{round_}"
                if where == "local":
                    target = str(planned_run(ctx.work, name, images))
                else:
                    target = _plan_on_store(ctx, name, images)
                argv = [*PYTHON, "-m", "synthset", "generate", target]  # a URL is no Path: '//' would collapse
                result = run_child(argv, ctx.work / "logs", name).check()
                walls[where].append(result.wall_s)
                loops[where].append(sum(s["seconds"] for s in rank_summaries(result.stdout).values()))
                print(f"  {name}: {result.wall_s:.1f} s wall, generate loop {loops[where][-1]:.1f} s", flush=True)
    wall_ratio = sum(walls["s3"]) / sum(walls["local"])
    loop_ratio = sum(loops["s3"]) / sum(loops["local"])
    rounds_text = ", ".join(f"{a / b:.2f}" for a, b in zip(walls["s3"], walls["local"], strict=True))
    return [
        Row(
            "8d. object store: generate to s3:// (moto) / to a local dir",
            f"{wall_ratio:.3f} ({sum(walls['s3']):.1f} s / {sum(walls['local']):.1f} s, {images} img x {rounds} "
            f"rounds, per round {rounds_text}; generate loop only {loop_ratio:.3f})",
            "<= 1.10",
            judged(wall_ratio <= 1.10),
            {"walls": walls, "loops": loops},
        )
    ]
