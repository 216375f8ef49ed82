"""Rows 1 and 2: `synthset generate` against the bare diffusers loop and against the usual peer script.

The three cases make the same images (same plan rows, pipeline, batch size, per-sample generators and
padding) in fresh processes. The machine is shared, so the N images are split over `--rounds` rounds,
each a fresh plan of N/rounds images, and the cases run in a different order in each round (`ORDERS`):
load that drifts over a minute, and whatever the first of three back-to-back processes pays, falls on
all three alike. Ratios are of the summed `work_s` (wall time after the imports all three need: pipeline
loading plus the loop plus whatever each imports on top), with the loop-only, whole-process wall and
CPU ratios beside them in the JSON.
"""

from __future__ import annotations

import shutil
import statistics

from benchmarks.common import PYTHON, Context, Row, planned_run, ratio, run_child

CASES = ("bare", "synthset", "peer")
# Every order of the three, arranged so that each run of 3 rounds puts every case once in every position
# and each full cycle of 6 has every case follow every other equally often (a Williams design).
ORDERS = [
    ["bare", "synthset", "peer"],
    ["synthset", "peer", "bare"],
    ["peer", "bare", "synthset"],
    ["peer", "synthset", "bare"],
    ["bare", "peer", "synthset"],
    ["synthset", "bare", "peer"],
]


def measure(ctx: Context) -> list[Row]:
    images, rounds = ctx.args.images, ctx.args.rounds
    chunk = images // rounds
    keys = ("work_s", "load_s", "loop_s", "tail_s", "save_s", "wall_s", "cpu_s")
    totals = {case: dict.fromkeys(keys, 0.0) | {"images": 0} for case in CASES}
    per_round = []
    warmup = planned_run(ctx.work, "overhead-warmup", 8)  # untimed: page cache, compiled bytecode, first use
    run_child([*PYTHON, "-m", "benchmarks.child", "synthset", str(warmup)], ctx.work / "logs", "overhead-warmup")
    for r in range(rounds):
        run_dir = planned_run(ctx.work, f"overhead-{r}", chunk, seed=r)
        order = ORDERS[r % len(ORDERS)]
        this_round = {}
        for case in order:
            args = ["-m", "benchmarks.child", case, str(run_dir)]
            if case == "peer":
                args.append(str(ctx.work / f"peer-{r}"))
            result = run_child([*PYTHON, *args], ctx.work / "logs", f"overhead-{r}-{case}").check()
            report = result.report
            assert report["images"] == chunk, report
            for key, value in {**report, "wall_s": result.wall_s, "cpu_s": result.cpu_s}.items():
                if key in keys:
                    totals[case][key] += value
            totals[case]["images"] += chunk
            this_round[case] = round(report["work_s"], 3)
            print(f"  round {r} {case:<8} {chunk} images: {report['work_s']:6.2f} s "
                  f"(process wall {result.wall_s:.2f} s, cpu {result.cpu_s:.2f} s)", flush=True)  # fmt: skip
        per_round.append(this_round)
        shutil.rmtree(ctx.work / f"peer-{r}", ignore_errors=True)
    for case in CASES:
        ctx.check_long_enough(f"overhead: {case}", totals[case]["work_s"])

    bare, ours, peer = (totals[c] for c in CASES)
    # An A/A check: the peer script minus its saving runs exactly the bare loop, so how far that ratio is
    # from 1 is this run's noise floor. A goal missed by less than that is reported as noise, not a FAIL.
    same_work = ratio(peer["work_s"] - peer["save_s"], bare["work_s"])
    noise = abs(same_work - 1)
    overhead = ratio(ours["work_s"], bare["work_s"])
    vs_peer = ratio(peer["work_s"], ours["work_s"])
    round_overheads = [ratio(r["synthset"], r["bare"]) for r in per_round]
    round_vs_peer = [ratio(r["peer"], r["synthset"]) for r in per_round]
    common = {"images": images, "rounds": rounds, "per_round_work_s": per_round, "totals": totals}
    # Past the first pipeline call: synthset's loop plus its tail (the last shard's write) vs the bare loop.
    steady = ratio(ours["loop_s"] + ours["tail_s"], bare["loop_s"])
    spread = "" if rounds == 1 else f", rounds {min(round_overheads):.2f}-{max(round_overheads):.2f}"
    rows = [
        Row(
            "1. overhead: synthset generate / bare diffusers loop",
            f"{overhead:.3f} ({ours['work_s']:.1f} s / {bare['work_s']:.1f} s, {images} img{spread}; "
            f"loop only {steady:.3f})",
            "<= 1.05",
            judged_with_noise(overhead - 1.05, noise),
            {
                **common,
                "ratio": overhead,
                "ratio_loop_only": steady,
                "ratio_process_wall": ratio(ours["wall_s"], bare["wall_s"]),
                "ratio_cpu": ratio(ours["cpu_s"], bare["cpu_s"]),
                "per_round_ratio": round_overheads,
                "median_round_ratio": statistics.median(round_overheads),
            },
        ),
    ]
    spread = "" if rounds == 1 else f", rounds {min(round_vs_peer):.2f}-{max(round_vs_peer):.2f}"
    saving_share = ratio(peer["save_s"], peer["work_s"])
    rows.append(
        Row(
            "2. peer script (PNG + JSON per image) / synthset",
            f"{vs_peer:.3f} ({peer['work_s']:.1f} s / {ours['work_s']:.1f} s{spread}; the peer's saving is "
            f"{saving_share:.1%} of its time)",
            ">= 1.0",
            judged_with_noise(1.0 - vs_peer, noise),
            {
                "ratio": vs_peer,
                "peer_save_share": saving_share,
                "peer_save_ms_per_image": 1000 * ratio(peer["save_s"], peer["images"]),
                "ratio_process_wall": ratio(peer["wall_s"], ours["wall_s"]),
                "ratio_cpu": ratio(peer["cpu_s"], ours["cpu_s"]),
                "per_round_ratio": round_vs_peer,
                "median_round_ratio": statistics.median(round_vs_peer),
            },
        )
    )
    rows.append(
        Row(
            "1-2 noise floor: peer loop without its saving / bare loop",
            f"{same_work:.3f} (identical work: ±{noise:.1%} is this run's noise)",
            "-",
            "info",
            {"ratio": same_work, "noise": noise},
        )
    )
    return rows


def judged_with_noise(miss: float, noise: float) -> str:
    """pass when the goal is met (miss <= 0); a miss smaller than the run's A/A noise is not a verdict."""
    if miss <= 0:
        return "pass"
    return f"within noise (±{noise:.1%})" if miss < noise else "FAIL"
