"""Rows P1-P3: the plan stage against several LLM servers, and the plan stage's memory.

P1. Plan throughput vs number of LLM endpoints: `plan_run` of a lar_cd recipe against 1, 2 and 4 fake
   vLLM servers (tests/openai_server.py, each its own process), each working on `--llm-seqs` requests at
   once (vLLM's --max-num-seqs; the rest queue) for `--llm-delay` s each, with `concurrency` =
   `--llm-seqs` per server: rows/s of the descriptions phase (the plan rows, timed around
   `iter_plan_shards`), as ratios to one server (ideal: 2 and 4). The work grows with the servers
   (`--llm-classes` classes per server, `--llm-per-class` rows each), so every case runs about as long.
   Beside it, the 4-server plan with the classes written one at a time (`classes_at_once` = 1): what the
   overlap buys; and the LAR meanings phase (one LLM request per class), timed apart.
P2. Peak RSS of `synthset plan` (a fresh process, `os.wait4`) on a lar_cd_sd plan of 8N rows / of N rows
   (`--plan-mem-rows`), template backend: memory held per planned row, extrapolated to 6x ImageNet.
P3. The same with the LLM: lar_cd against one fake server (no delay), on 8M / M rows (`--plan-mem-llm-rows`).
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import GEN, PYTHON, REPO, Context, Row, child_env, quiet, ratio, run_child

SIX_X_IMAGENET = 1000 * 1300 * 6  # rows of the largest recipe (~7.7M)
RSS_NOISE_MIB = 45  # the largest run-to-run spread of peak RSS seen for the same command on this machine
MEM_CLASSES = 1000
MEM_LLM_CLASSES = 100


@contextlib.contextmanager
def fake_servers(count: int, delay: float, seqs: int | None) -> Iterator[list[str]]:
    """`count` fake OpenAI-compatible servers, each its own process (so they do not share the client's
    GIL); yields their base URLs. A server stops when its stdin closes."""
    argv = [*PYTHON, "-m", "tests.openai_server", "--delay", str(delay), "--answer", "describe"]
    if seqs:
        argv += ["--max-num-seqs", str(seqs)]
    procs = [
        subprocess.Popen(argv, cwd=REPO, env=child_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(count)
    ]
    try:
        yield [proc.stdout.readline().strip() for proc in procs]  # type: ignore[union-attr]
    finally:
        for proc in procs:
            proc.stdin.close()  # type: ignore[union-attr]
            proc.wait(timeout=30)


def write_recipe(ctx: Context, name: str, strategy: str, classes: int, per_class: int, llm: dict | None) -> Path:
    data: dict[str, Any] = {
        "name": name,
        "output_dir": str(ctx.work),
        "classes": {"set": "imagenet-1k", "limit": classes},
        "configs": [{"name": strategy, "strategy": strategy, "images_per_class": per_class}],
        "generator": GEN,
        "storage": {"format": "jpeg", "shard_size": 1000, "row_group_size": 100},
    }
    if llm is not None:
        # max_chars: the fake server's descriptions echo the whole query line, which may be long.
        data["prompts"] = {"llm": {"backend": "openai", "model": "test-model", **llm}, "max_chars": 2000}
    path = ctx.work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@contextlib.contextmanager
def phase_clock(one_class_at_a_time: bool = False) -> Iterator[dict[str, float]]:
    """Seconds of the LAR meanings phase and of the plan rows phase of the `plan_run`s inside."""
    from synthset.generation import meanings, plan

    seconds: dict[str, float] = {}
    real_rows, real_meanings, real_depth = plan.iter_plan_shards, meanings.resolve_meanings, plan.classes_at_once

    def timed_rows(*args: Any, **kwargs: Any) -> Iterator[Any]:
        started = time.perf_counter()
        yield from real_rows(*args, **kwargs)
        seconds["rows"] = time.perf_counter() - started

    def timed_meanings(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = real_meanings(*args, **kwargs)
        seconds["meanings"] = time.perf_counter() - started
        return result

    plan.iter_plan_shards, meanings.resolve_meanings = timed_rows, timed_meanings
    if one_class_at_a_time:
        plan.classes_at_once = lambda llm, counts: 1
    try:
        yield seconds
    finally:
        plan.iter_plan_shards, meanings.resolve_meanings, plan.classes_at_once = real_rows, real_meanings, real_depth


def timed_plan(ctx: Context, name: str, urls: list[str], one_class_at_a_time: bool = False) -> dict[str, Any]:
    """Plan `--llm-classes` classes per server against `urls`; the two phases' seconds."""
    from synthset.generation.plan import plan_run
    from synthset.recipe import load_recipe

    args = ctx.args
    llm = {"base_url": urls, "concurrency": args.llm_seqs}
    classes = args.llm_classes * len(urls)
    recipe = load_recipe(write_recipe(ctx, name, "lar_cd", classes, args.llm_per_class, llm))
    with phase_clock(one_class_at_a_time) as seconds, quiet():
        summary = plan_run(recipe)
    rows_per_s = summary.rows / seconds["rows"]
    print(f"  {name}: {summary.rows} rows in {seconds['rows']:.1f} s ({rows_per_s:.1f} rows/s), "
          f"LAR meanings {seconds['meanings']:.1f} s; {summary.llm_report}", flush=True)  # fmt: skip
    return {
        "rows": summary.rows,
        "rows_s": seconds["rows"],
        "rows_per_s": rows_per_s,
        "meanings_s": seconds["meanings"],
        "meanings_s_per_class": seconds["meanings"] / classes,
        "llm_sent": summary.llm_backend_calls,
        "servers": summary.llm_report,
    }


def throughput_rows(ctx: Context) -> list[Row]:
    args = ctx.args
    figures: dict[str, dict[str, Any]] = {}
    with fake_servers(4, args.llm_delay, args.llm_seqs) as urls:
        from synthset.generation.plan import plan_run
        from synthset.recipe import load_recipe

        with quiet():  # first use: imports, class tables, the lock's model hash
            plan_run(load_recipe(write_recipe(ctx, "llm-warmup", "lar_cd", 2, 2, {"base_url": urls[:1]})))
        for count in (1, 2, 4):
            figures[str(count)] = timed_plan(ctx, f"llm-{count}", urls[:count])
            ctx.check_long_enough(f"plan against {count} LLM server(s)", figures[str(count)]["rows_s"])
        figures["4-serial"] = timed_plan(ctx, "llm-4-serial", urls, one_class_at_a_time=True)
    one = figures["1"]["rows_per_s"]
    two, four = ratio(figures["2"]["rows_per_s"], one), ratio(figures["4"]["rows_per_s"], one)
    per_server = args.llm_seqs / args.llm_delay
    setting = f"fake vLLM: {args.llm_seqs} seqs x {args.llm_delay:g} s = {per_server:g} req/s per server"
    overlap = ratio(figures["4"]["rows_per_s"], figures["4-serial"]["rows_per_s"])
    meanings = [figures[k]["meanings_s_per_class"] for k in ("1", "4")]
    return [
        Row(
            f"P1. plan throughput vs LLM endpoints ({setting})",
            f"x{two:.2f} at 2, x{four:.2f} at 4 (ideal 2, 4): "
            + " / ".join(f"{figures[k]['rows_per_s']:.1f}" for k in ("1", "2", "4"))
            + " rows/s at 1 / 2 / 4",
            "-",
            "info",
            {"ratio_2": two, "ratio_4": four, "ideal_rows_per_s_1": per_server, "runs": figures},
        ),
        Row(
            "P1b. plan at 4 endpoints: several classes at once / one class at a time",
            f"{overlap:.2f} ({figures['4']['rows_per_s']:.1f} / {figures['4-serial']['rows_per_s']:.1f} rows/s)",
            "-",
            "info",
            {"ratio": overlap},
        ),
        Row(
            "P1c. LAR meanings (one LLM request per class, 64 classes per call): seconds per class at 1 / 4 endpoints",
            f"{meanings[0]:.3f} / {meanings[1]:.3f} s (x{ratio(meanings[0], meanings[1]):.2f} at 4)",
            "-",
            "info",
            {"seconds_per_class_1": meanings[0], "seconds_per_class_4": meanings[1]},
        ),
    ]


def peak_rss_row(ctx: Context, label: str, tag: str, strategy: str, classes: int, rows: int, llm: bool) -> Row:
    """Peak RSS of `synthset plan` at `rows` and 8x `rows`, each a fresh process."""
    figures = {}
    with contextlib.ExitStack() as stack:
        urls = stack.enter_context(fake_servers(1, 0.0, None)) if llm else []
        for key, size in (("small", rows), ("large", 8 * rows)):
            per_class = max(1, size // classes)
            llm_spec = {"base_url": urls, "concurrency": 16} if llm else None
            path = write_recipe(ctx, f"{tag}-{key}", strategy, classes, per_class, llm_spec)
            result = run_child(
                [*PYTHON, "-m", "benchmarks.child", "plan", str(path)], ctx.work / "logs", f"{tag}-{key}"
            )
            report = result.check().report
            figures[key] = {"rows": report["rows"], "max_rss_mib": result.max_rss_mib, "work_s": report["work_s"]}
            print(f"  {tag}: {report['rows']} rows: peak RSS {result.max_rss_mib:.1f} MiB "
                  f"({report['work_s']:.1f} s planning)", flush=True)  # fmt: skip
    small, large = figures["small"], figures["large"]
    flat = ratio(large["max_rss_mib"], small["max_rss_mib"])
    per_row_kib = (large["max_rss_mib"] - small["max_rss_mib"]) * 1024 / (large["rows"] - small["rows"])
    slope = f"{per_row_kib:+.3f} KiB per row"
    if abs(large["max_rss_mib"] - small["max_rss_mib"]) < RSS_NOISE_MIB:
        slope += f", within RSS noise (±{RSS_NOISE_MIB} MiB)"
    else:
        slope += f": {per_row_kib * SIX_X_IMAGENET / 2**20:+.1f} GiB at 6x ImageNet"
    return Row(
        f"{label}: peak RSS, {large['rows']:,}-row plan / {small['rows']:,}-row plan",
        f"{flat:.3f} ({large['max_rss_mib']:.0f} / {small['max_rss_mib']:.0f} MiB, {slope})",
        "-",
        "info",
        {"ratio": flat, "kib_per_row": per_row_kib, **figures},
    )


def measure(ctx: Context) -> list[Row]:
    args = ctx.args
    rows = throughput_rows(ctx)
    rows.append(peak_rss_row(ctx, "P2. plan memory, template backend", "planmem", "lar_cd_sd",
                             MEM_CLASSES, args.plan_mem_rows, llm=False))  # fmt: skip
    rows.append(peak_rss_row(ctx, "P3. plan memory, LLM (fake server)", "planmem-llm", "lar_cd",
                             MEM_LLM_CLASSES, args.plan_mem_llm_rows, llm=True))  # fmt: skip
    return rows
