"""Row 5: what a crash costs: SIGKILL a two-process `synthset generate` at a random point, restart it.

Both runs are `accelerate launch` (2 processes) of `benchmarks.child counted`, which is `synthset generate`
with every finished pipeline call logged (its sample ids, per rank, unbuffered). The kill point is drawn
from `--seed`: a random count of images produced, then a random fraction of a batch's time; then the
launcher and both ranks are stopped and SIGKILLed together, as a lost machine would be. Counted per rank of
the killed run:

- produced: images whose pipeline call had returned before the kill (recorded or not);
- regenerated: those produced images that the restart generated again (the cost of the crash);
- recorded shards redone: samples of shards recorded before the kill that the restart generated again
  (exactly-once says 0).

Goal: regenerated <= one shard (`storage.shard_size`) per rank, in every trial.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from pathlib import Path

from benchmarks.common import (
    STORAGE,
    Context,
    Row,
    judged,
    kill_tree,
    launched,
    planned_run,
    start_child,
    wait_child,
)


def logged_ids(log_dir: Path) -> dict[int, set[str]]:
    """rank -> sample ids whose pipeline call finished, from the counted child's logs."""
    found = {}
    for path in sorted(log_dir.glob("rank*.log")):
        lines = path.read_text().splitlines()
        found[int(path.stem.removeprefix("rank"))] = {line for line in lines if line}
    return found


def trial(ctx: Context, index: int, rng: random.Random) -> dict:
    from synthset.run.paths import RunDir
    from synthset.run.records import read_records

    images = ctx.args.crash_images
    run_dir = planned_run(ctx.work, f"crash-{index}", images, seed=index)
    before_logs, after_logs = ctx.work / f"crash-{index}-before", ctx.work / f"crash-{index}-after"
    kill_after_images = rng.randint(images // 10, images * 9 // 10)
    extra_delay_s = rng.uniform(0.0, 1.5)  # about a batch's time on one rank here
    state: dict = {"deadline": None, "killed": None}

    def command(log_dir: Path) -> list[str]:
        return launched(["-m", "benchmarks.child", "counted", str(run_dir), str(log_dir)], 2)

    started = time.perf_counter()
    proc, out, err = start_child(command(before_logs), ctx.work / "logs", f"crash-{index}-killed")

    def watch() -> None:
        if state["killed"] is not None:
            return
        now = time.perf_counter()
        if state["deadline"] is None:
            if sum(len(ids) for ids in logged_ids(before_logs).values()) >= kill_after_images:
                state["deadline"] = now + extra_delay_s
        elif now >= state["deadline"]:
            state["killed"] = kill_tree(proc.pid)
            state["killed_at_s"] = now - started

    killed = wait_child(proc, out, err, started, watch)
    if state["killed"] is None:
        raise RuntimeError(f"crash trial {index}: the run ended before the kill point:\n{killed.stderr[-2000:]}")
    produced = logged_ids(before_logs)
    records = read_records(RunDir(run_dir))
    recorded_ids = {sid for record in records.values() for sid in record.sample_ids}
    recorded_rows: dict[int, int] = defaultdict(int)
    for record in records.values():
        recorded_rows[record.rank] += record.rows

    restarted = wait_child(*start_child(command(after_logs), ctx.work / "logs", f"crash-{index}-restart"),
                           time.perf_counter()).check()  # fmt: skip
    regenerated_ids = set().union(*logged_ids(after_logs).values())
    summaries = [r["summary"] for r in restarted.reports]
    final = read_records(RunDir(run_dir))
    assert sum(r.rows for r in final.values()) == images, "the restart did not finish the run"

    per_rank = {}
    for rank in sorted(set(produced) | {0, 1}):
        mine = produced.get(rank, set())
        per_rank[rank] = {
            "produced_before_kill": len(mine),
            "recorded_before_kill": recorded_rows.get(rank, 0),
            "regenerated": len(mine & regenerated_ids),
            "recorded_shards_redone": len(mine & recorded_ids & regenerated_ids),
        }
    result = {
        "images": images,
        "kill_after_images": kill_after_images,
        "extra_delay_s": extra_delay_s,
        "killed_at_s": state["killed_at_s"],
        "processes_killed": len(state["killed"]),
        "restart_wall_s": restarted.wall_s,
        "restart_images_made": sum(s["images_made"] for s in summaries),
        "per_rank": per_rank,
    }
    produced_total = sum(r["produced_before_kill"] for r in per_rank.values())
    print(f"  trial {index}: killed at {state['killed_at_s']:.1f} s with {produced_total}/{images} produced; "
          + "; ".join(f"rank {r}: produced {v['produced_before_kill']}, recorded {v['recorded_before_kill']}, "
                      f"regenerated {v['regenerated']}" for r, v in per_rank.items()), flush=True)  # fmt: skip
    return result


def measure(ctx: Context) -> list[Row]:
    rng = random.Random(ctx.args.seed)
    trials = [trial(ctx, i, rng) for i in range(ctx.args.crash_trials)]
    shard = STORAGE["shard_size"]
    worst = max(v["regenerated"] for t in trials for v in t["per_rank"].values())
    redone = sum(v["recorded_shards_redone"] for t in trials for v in t["per_rank"].values())
    per_trial = "; ".join("/".join(str(v["regenerated"]) for _, v in sorted(t["per_rank"].items())) for t in trials)
    return [
        Row(
            "5. crash: images regenerated per rank after SIGKILL",
            f"max {worst} (per trial, rank 0/1: {per_trial}; shard = {shard}; recorded redone: {redone})",
            f"<= {shard} (1 shard)",
            judged(worst <= shard and redone == 0),
            {"shard_size": shard, "max_regenerated_per_rank": worst, "recorded_redone": redone, "trials": trials},
        )
    ]
