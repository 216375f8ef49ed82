"""`make bench`: synthset measured against the raw diffusers loop and peer-style scripts, in one run.

Absolute seconds on a shared 2-core CPU say little; ratios and counts taken side by side in the same run
do. Every generation case uses the tiny offline model (bs 8, 64 px, 4 DDIM steps, CFG), so the figures
isolate what synthset adds around the pipeline calls. Prints one table (Markdown) and writes
benchmarks/results/<date>.json and benchmarks/results/latest.json. See benchmarks/README.md.

    python -m benchmarks.run [--quick] [--only overhead,crash] [--images 384] ...
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from importlib import import_module
from importlib.metadata import version
from pathlib import Path

from benchmarks.common import CLASSES, STORAGE, Context, Row

RESULTS_DIR = Path(__file__).parent / "results"
# Modules of benchmarks/, run in this order (memory's 4b reuses plan's plans, read reuses multiprocess's run).
MEASUREMENTS = [
    "plan",
    "llm_plan",
    "overhead",
    "multiprocess",
    "memory",
    "crash",
    "read",
    "scaleout",
    "slurm",
    "objectstore",
    "store_stages",
    "hub",
    "gate",
    "gpu",
]
QUICK = {
    "images": 64,
    "rounds": 1,
    "mp_images": 64,
    "mem_images": 16,
    "crash_images": 128,
    "crash_trials": 1,
    "straggler_images": 128,
    "read_seconds": 2.0,
    "read_rows": 500,
    "gate_images": 48,
    "slurm_images": 48,
    "slurm_rounds": 1,
    "plan_classes": 100,
    "plan_per_class": 10,
    "llm_classes": 4,
    "llm_per_class": 16,
    "plan_mem_rows": 2000,
    "plan_mem_llm_rows": 400,
    "min_section_s": 0.0,
    "hub_max_files": 1_000,
    "store_shards": 100,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run: every N shrunk (about 3 minutes)")
    parser.add_argument("--only", default=",".join(MEASUREMENTS), help="comma-separated subset of: %(default)s")
    parser.add_argument("--images", type=int, default=384, help="rows 1-2: images per case, over all rounds")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rows 1-2: rounds, each case once per round in a new order"
    )
    parser.add_argument("--mp-images", type=int, default=256, help="row 3: images per case (also row 6's data)")
    parser.add_argument("--mem-images", type=int, default=32, help="row 4: N (the runs make N and 8N)")
    parser.add_argument("--crash-images", type=int, default=192, help="row 5: images per trial")
    parser.add_argument("--crash-trials", type=int, default=2, help="row 5: kills at independent random points")
    parser.add_argument("--straggler-images", type=int, default=256, help="rows 8a-8d: images per run (shards of 32)")
    parser.add_argument("--store-shards", type=int, default=1_000, help="row 8e: one-image shards of the store run")
    parser.add_argument("--read-seconds", type=float, default=40.0, help="row 6: seconds of epochs, both sides")
    parser.add_argument("--read-rows", type=int, default=4000, help="row 6c: N (the Parquet sets have N and 8N rows)")
    parser.add_argument("--gate-images", type=int, default=384, help="row 9: images per case, over all rounds")
    parser.add_argument("--slurm-images", type=int, default=192, help="row 8e: images per case (3 workers)")
    parser.add_argument("--slurm-rounds", type=int, default=3, help="row 8e: rounds, the cases alternating")
    parser.add_argument("--plan-classes", type=int, default=1000)
    parser.add_argument("--plan-per-class", type=int, default=100)
    parser.add_argument(
        "--hub-max-files", type=int, default=10_000, help="row 8: the largest of 100, 1000, 10000 files to publish"
    )
    parser.add_argument("--llm-classes", type=int, default=20, help="row P1: classes of the lar_cd plan, per server")
    parser.add_argument("--llm-per-class", type=int, default=40, help="row P1: images (descriptions) per class")
    parser.add_argument("--llm-delay", type=float, default=0.2, help="row P1: seconds a fake server takes per answer")
    parser.add_argument("--llm-seqs", type=int, default=8, help="row P1: requests a fake server works on at once")
    parser.add_argument("--plan-mem-rows", type=int, default=25_000, help="row P2: N (the plans have N and 8N rows)")
    parser.add_argument("--plan-mem-llm-rows", type=int, default=2000, help="row P3: N (N and 8N rows, with the LLM)")
    parser.add_argument("--min-section-s", type=float, default=20.0, help="warn when a timed section is shorter")
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill points and the read shuffling")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (runs, logs) and say where")
    args = parser.parse_args(argv)
    if args.quick:
        defaults = {action.dest: action.default for action in parser._actions}
        for key, value in QUICK.items():
            if getattr(args, key) == defaults[key]:  # a flag given with --quick still wins
                setattr(args, key, value)
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(args.only) - set(MEASUREMENTS))
    if unknown:
        parser.error(f"--only: unknown measurement(s) {', '.join(unknown)} (known: {', '.join(MEASUREMENTS)})")
    for flag in ("images", "gate_images"):
        if getattr(args, flag) % (CLASSES * args.rounds):
            parser.error(
                f"--{flag.replace('_', '-')} must be a multiple of {CLASSES} x --rounds ({CLASSES} classes per round)"
            )
    for flag in ("mp_images", "mem_images", "crash_images", "straggler_images", "slurm_images"):
        if getattr(args, flag) <= 0 or getattr(args, flag) % CLASSES:
            parser.error(f"--{flag.replace('_', '-')} must be a positive multiple of {CLASSES} (the classes)")
    if args.crash_images < 2 * STORAGE["shard_size"]:
        parser.error(f"--crash-images must give each of the 2 ranks a shard: at least {2 * STORAGE['shard_size']}")
    return args


def machine() -> dict:
    packages = {}
    for name in ("torch", "diffusers", "transformers", "datasets", "accelerate", "pyarrow", "synthset"):
        try:
            packages[name] = version(name)
        except Exception:  # noqa: BLE001 - a missing package is worth a note, not a crash
            packages[name] = None
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "packages": packages,
    }


def markdown_table(rows: list[Row]) -> str:
    header = ("measurement", "value", "goal", "result")
    cells = [header] + [(r.measurement, r.value, r.goal, r.status) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(4)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started, started_at = time.perf_counter(), dt.datetime.now().astimezone()
    from synthset import testing

    testing.tiny_sd_path()  # built once here, not raced by the children
    rows: list[Row] = []
    sections: dict[str, dict] = {}
    errors = 0
    work = Path(tempfile.mkdtemp(prefix="synthset-bench-"))
    ctx = Context(work=work, args=args)
    try:
        for name in MEASUREMENTS:
            if name not in args.only:
                continue
            print(f"[{name}] load {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
            section_started, load_before = time.perf_counter(), os.getloadavg()
            try:
                rows.extend(import_module(f"benchmarks.{name}").measure(ctx))
            except Exception as error:  # noqa: BLE001 - one broken measurement must not hide the others
                errors += 1
                traceback.print_exc()
                rows.append(Row(name, f"error: {type(error).__name__}: {str(error).splitlines()[0][:200]}",
                                "-", "error", {"traceback": traceback.format_exc()}))  # fmt: skip
            sections[name] = {
                "seconds": time.perf_counter() - section_started,
                "loadavg_before": load_before,
                "loadavg_after": os.getloadavg(),
            }
    finally:
        if args.keep:
            print(f"scratch kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    total = time.perf_counter() - started
    table = markdown_table(rows)
    given = sys.argv[1:] if argv is None else argv
    command = " ".join(["python -m benchmarks.run", *given])
    print()
    print(table)
    load = os.getloadavg()
    print(f"\n{started_at:%Y-%m-%d %H:%M %Z}, {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f} at the end, {total:.0f} s in all; `{command}`")  # fmt: skip
    for note in ctx.notes:
        print(f"note: {note}")

    result = {
        "date": started_at.isoformat(timespec="seconds"),
        "command": command,
        "args": {k: v for k, v in vars(args).items()},
        "machine": machine(),
        "loadavg_start": sections[next(iter(sections))]["loadavg_before"] if sections else None,
        "loadavg_end": load,
        "total_s": total,
        "sections": sections,
        "rows": [
            {"measurement": r.measurement, "value": r.value, "goal": r.goal, "result": r.status, "data": r.data}
            for r in rows
        ],  # fmt: skip
        "table_markdown": table,
        "notes": ctx.notes,
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    text = json.dumps(result, indent=2, default=str)
    dated = RESULTS_DIR / f"{started_at:%Y-%m-%dT%H%M%S}.json"
    dated.write_text(text)
    (RESULTS_DIR / "latest.json").write_text(text)
    print(f"results: {dated} (and {RESULTS_DIR / 'latest.json'})")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
