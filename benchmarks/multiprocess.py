"""Row 3: two processes under `accelerate launch` against one process with the same total threads.

One process with `generator.cpu_threads: 2` and two processes with `cpu_threads: 1` each make the same
number of images (separate runs, since the thread count is part of what an image's bytes depend on).
Images/s is over the whole command's wall time (start-up included, as a user sees it); the generate-loop
figure from the ranks' own summaries is beside it. Rank imbalance is max ÷ mean of each rank's summed
shard seconds, from the shard records.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from benchmarks.common import Context, Row, planned_run, rank_summaries, ratio, run_child, synthset_generate


def rank_seconds(run_dir: Path) -> dict[int, float]:
    from synthset.run.paths import RunDir
    from synthset.run.records import read_records

    seconds: dict[int, float] = defaultdict(float)
    for record in read_records(RunDir(run_dir)).values():
        seconds[record.rank] += record.seconds
    return dict(seconds)


def measure(ctx: Context) -> list[Row]:
    images = ctx.args.mp_images
    cases = {}
    for processes, threads in ((1, 2), (2, 1)):
        name = f"mp-{processes}x{threads}"
        run_dir = planned_run(ctx.work, name, images, cpu_threads=threads)
        result = run_child(synthset_generate(run_dir, processes), ctx.work / "logs", name).check()
        ranks = rank_summaries(result.stdout)
        made = sum(r["images"] for r in ranks.values())
        assert made == images and len(ranks) == processes, (result.stdout, result.stderr[-2000:])
        loop_s = max(r["seconds"] for r in ranks.values())
        per_rank = rank_seconds(run_dir)
        cases[name] = {
            "processes": processes,
            "threads_per_process": threads,
            "images": images,
            "wall_s": result.wall_s,
            "cpu_s": result.cpu_s,
            "images_per_s": images / result.wall_s,
            "generate_s": loop_s,
            "generate_images_per_s": images / loop_s,
            "rank_shard_seconds": per_rank,
            "rank_summary_seconds": {r: v["seconds"] for r, v in ranks.items()},
            "run_dir": str(run_dir),
        }
        ctx.check_long_enough(f"multi-process {name}", result.wall_s)
        print(f"  {processes} process(es) x {threads} thread(s): {images} images in {result.wall_s:.2f} s wall "
              f"({images / result.wall_s:.2f} img/s; generate {loop_s:.2f} s)", flush=True)  # fmt: skip
    one, two = cases["mp-1x2"], cases["mp-2x1"]
    speedup = ratio(two["images_per_s"], one["images_per_s"])
    loop_speedup = ratio(two["generate_images_per_s"], one["generate_images_per_s"])
    shard_s = list(two["rank_shard_seconds"].values())
    imbalance = max(shard_s) / (sum(shard_s) / len(shard_s))
    ctx.runs["mp-1x2"] = Path(one["run_dir"])
    return [
        Row(
            "3a. 2 processes x 1 thread / 1 process x 2 threads, img/s",
            f"{speedup:.2f} ({two['images_per_s']:.2f} / {one['images_per_s']:.2f} img/s wall; "
            f"generate loop {loop_speedup:.2f})",
            "-",
            "info",
            {"ratio": speedup, "ratio_generate_loop": loop_speedup, "cases": cases},
        ),
        Row(
            "3b. rank imbalance (max / mean rank shard time)",
            f"{imbalance:.3f} ("
            + ", ".join(f"rank {r}: {s:.1f} s" for r, s in sorted(two["rank_shard_seconds"].items()))
            + ")",
            "-",
            "info",
            {"imbalance": imbalance, "rank_shard_seconds": two["rank_shard_seconds"]},
        ),
    ]
