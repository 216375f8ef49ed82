"""Row 9: build, push and verify at 10^2, 10^3 and 10^4 files: time linear in the file count, memory flat.

Each run is synthesized as the scale test does (tests/synthruns.py: planned, every shard written by the real
ShardWriter with an 8x8 image, one image per shard), so the figures are about files, not pixels. Then, each a
fresh child process whose wall time and peak RSS (VmHWM, see `run_measured`) are its own:
- build: `synthset build RUN` (checks every record, validates every image, links, writes the README);
- push: `synthset push RUN --repo org/bench-N --tag v1.0` to the loopback Hub (tests/hubserver.py, with the
  Hub's limits), which runs in this process;
- verify: `synthset verify org/bench-N --revision v1.0` (manifest vs paths-info, every footer, a streamed
  sample), the default that must stay flat in disk and memory.
Goals: linear time, read as the cost of each extra file from 10^3 to 10^4 within 1.5x of the cost of each
extra file from 10^2 to 10^3 (start-up, a fixed cost, cancels out of both slopes); and peak RSS at 10^4
within 1.10x of that at 10^2 (flat).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from benchmarks.common import PYTHON, REPO, ChildResult, Context, Row, judged, ratio, start_child, wait_child

SIZES = (100, 1_000, 10_000)
STAGES = ("build", "push", "verify")


def _env(server_url: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(
        HF_ENDPOINT=server_url,
        HF_HUB_DISABLE_XET="1",
        HF_HOME=str(home),
        HF_TOKEN="hf_test_token",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HF_DATASETS_DISABLE_PROGRESS_BARS="1",
        HF_HUB_DISABLE_TELEMETRY="1",
    )
    return env


def run_measured(argv: list[str], ctx: Context, tag: str) -> tuple[ChildResult, float]:
    """Run a child; -> (result, its own peak RSS in MiB).

    `os.wait4`'s ru_maxrss is not enough here: Linux keeps the larger of the forked child's RSS before
    `exec` (a copy of this process, which holds the loopback Hub's stored files) and after it, so it would
    report this process's size. The child's own high-water mark (VmHWM, reset by `exec`) is read from
    /proc while it runs; it only ever grows, so its last reading is the peak.
    """
    proc, out, err = start_child(argv, ctx.work / "logs", tag)
    peak = {"kib": 0}

    def poll() -> None:
        try:
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak["kib"] = max(peak["kib"], int(line.split()[1]))
        except (OSError, ValueError):
            pass

    import time

    result = wait_child(proc, out, err, time.perf_counter(), poll).check()
    return result, peak["kib"] / 1024


def measure(ctx: Context) -> list[Row]:
    sys.path.insert(0, str(REPO / "tests"))
    from hubserver import HubServer
    from synthruns import synth_recipe, write_shards

    from benchmarks.common import quiet
    from synthset.cards import write_card
    from synthset.generation.plan import plan_run
    from synthset.recipe import load_recipe

    sizes = [n for n in SIZES if n <= ctx.args.hub_max_files]
    figures: dict[str, dict[int, dict]] = {stage: {} for stage in STAGES}
    with HubServer() as hub:
        saved = dict(os.environ)
        for n in sizes:
            root = ctx.work / f"hub-{n}"
            root.mkdir()
            recipe = load_recipe(synth_recipe(root, f"bench{n}", n))
            with quiet():
                plan_run(recipe)
                write_shards(recipe.run_dir)
            run = str(recipe.run_dir)
            result, peak = run_measured([*PYTHON, "-m", "synthset", "build", run], ctx, f"hub-build-{n}")
            figures["build"][n] = {"wall_s": result.wall_s, "max_rss_mib": peak}
            with quiet():
                write_card(recipe.run_dir, license="apache-2.0")
            os.environ.update(_env(hub.url, root / "hf"))  # the children inherit it (common.child_env)
            try:
                for stage, args in (
                    ("push", ["push", run, "--repo", f"org/bench-{n}", "--tag", "v1.0", "--allow-unscreened"]),
                    ("verify", ["verify", f"org/bench-{n}", "--revision", "v1.0"]),
                ):
                    result, peak = run_measured([*PYTHON, "-m", "synthset", *args], ctx, f"hub-{stage}-{n}")
                    figures[stage][n] = {"wall_s": result.wall_s, "max_rss_mib": peak}
            finally:
                os.environ.clear()
                os.environ.update(saved)
            line = ", ".join(
                f"{s} {figures[s][n]['wall_s']:.1f} s / {figures[s][n]['max_rss_mib']:.0f} MiB" for s in STAGES
            )
            print(f"  {n} files: {line}", flush=True)
    rows = []
    for stage in STAGES:
        data = figures[stage]
        small, middle, large = sizes[0], sizes[min(1, len(sizes) - 1)], sizes[-1]
        per_file = {n: data[n]["wall_s"] / n * 1000 for n in sizes}  # ms per file, start-up included

        def slope(a: int, b: int, data: dict = data) -> float:  # ms per extra file between two sizes
            return ratio((data[b]["wall_s"] - data[a]["wall_s"]) * 1000, b - a)

        growth = ratio(slope(middle, large), slope(small, middle)) if len(sizes) == 3 else float("nan")
        flat = ratio(data[large]["max_rss_mib"], data[small]["max_rss_mib"])
        walls = " / ".join(f"{data[n]['wall_s']:.1f}" for n in sizes)
        rss = " / ".join(f"{data[n]['max_rss_mib']:.0f}" for n in sizes)
        counts = " / ".join(f"{n:,}" for n in sizes)
        rows.append(
            Row(
                f"10. hub {stage}: {counts} files",
                f"{walls} s (+{slope(middle if len(sizes) == 3 else small, large):.2f} ms per extra file"
                + (f", x{growth:.2f} of the slope below {middle:,}" if len(sizes) == 3 else "")
                + f"); peak RSS {rss} MiB (x{flat:.3f})",
                "slope x <= 1.5; RSS x <= 1.10",
                judged(growth <= 1.5 and flat <= 1.10) if len(sizes) == 3 else "info",
                {"figures": data, "ms_per_file": per_file, "slope_growth": growth, "rss_ratio": flat},
            )
        )
    return rows
