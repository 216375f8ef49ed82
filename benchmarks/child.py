"""The code that runs in fresh child processes: `python -m benchmarks.child MODE RUN [...]`.

Modes (each prints one `BENCH {json}` line on stdout):
- `bare RUN`: the floor. The plan's prompts, negative prompts and seeds through the same diffusers
  pipeline, batch size, per-sample generators and padding as synthset; images kept in memory.
- `peer RUN OUT`: the usual peer script: the bare loop plus one PNG and one JSON sidecar per image,
  written synchronously in the loop (`OUT/<label>/<sample>.png` + `.json`).
- `synthset RUN`: `generate_run(RUN)`, exactly what `synthset generate RUN` calls.
- `score GATED_RUN RUN`: the lower bound of a separate scoring stage: read every shard of RUN, decode its
  images and score them with GATED_RUN's quality gate (its lock names the models) in batches of the
  recipe's batch size; nothing is written (a real stage would also rewrite every shard).
- `counted RUN LOGDIR`: `synthset generate` with `generate_images` wrapped to append the sample ids of
  every finished pipeline call to `LOGDIR/rank<R>.log` (unbuffered `os.write`, so a SIGKILL loses
  nothing already counted); the crash measurement runs it under `accelerate launch` and kills it.
  `--slow-rank R --slow-factor F` makes rank R sleep (F - 1) x each pipeline call's time after it (a GPU
  F times slower); `--static` restricts every rank to its own share (i % w == r), as before shard
  claims; `--lease S` is the claim lease; `--tag T` names the log `T.log` instead of `rank<R>.log`.
- `plan RECIPE`: `plan_run` of a recipe file, exactly what `synthset plan RECIPE` calls (its peak RSS is
  the plan stage's memory).

`work_s` starts after the imports every mode needs (torch, diffusers, transformers, pyarrow, PIL), so it
counts loading the pipeline, the loop, and anything a mode imports on top (synthset itself, accelerate).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

REPORT_PREFIX = "BENCH "  # common.REPORT_PREFIX; this module imports nothing from the benchmark package


def _report(data: dict[str, Any]) -> None:
    print(REPORT_PREFIX + json.dumps(data), flush=True)


def _plan_rows(run_dir: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    columns = ["sample_id", "label", "class_name", "prompt", "negative_prompt", "seed"]
    return pq.read_table(run_dir / "plan.parquet", columns=columns).to_pylist()


def _generator_settings(run_dir: Path) -> dict[str, Any]:
    import yaml

    recipe = yaml.safe_load((run_dir / "recipe.lock.yaml").read_text())
    recipe = recipe.get("recipe", recipe)
    return recipe["generator"]


def _load_pipeline(settings: dict[str, Any]):
    """What a user's script does: from_pretrained, the recipe's scheduler, fp32 on CPU, no progress bar."""
    import diffusers
    import torch

    from synthset import testing

    torch.set_num_threads(settings.get("cpu_threads", 1))
    model = settings["model"].removeprefix("synthset-testing:")
    assert model == testing.TINY_SD, settings["model"]
    pipe = diffusers.DiffusionPipeline.from_pretrained(str(testing.tiny_sd_path()), dtype=torch.float32)
    assert settings["scheduler"] == "ddim", settings["scheduler"]
    pipe.scheduler = diffusers.DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _batches(rows: list[dict[str, Any]], size: int):
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


def _call(pipe, settings: dict[str, Any], batch: list[dict[str, Any]]):
    """One pipeline call at the recipe's batch size (the short last batch padded), per-sample generators."""
    import torch

    size = settings["batch_size"]
    padded = batch + [batch[-1]] * (size - len(batch))
    with torch.inference_mode():
        out = pipe(
            prompt=[row["prompt"] for row in padded],
            negative_prompt=[row["negative_prompt"] or "" for row in padded],
            num_inference_steps=settings["steps"],
            guidance_scale=settings["guidance"],
            width=settings["width"],
            height=settings["height"],
            generator=[torch.Generator("cpu").manual_seed(row["seed"]) for row in padded],
            output_type="pil",
        )
    return out.images[: len(batch)]


def bare(run_dir: Path) -> dict[str, Any]:
    started = time.perf_counter()
    settings = _generator_settings(run_dir)
    rows = _plan_rows(run_dir)
    pipe = _load_pipeline(settings)
    loaded = time.perf_counter()
    images = []
    for batch in _batches(rows, settings["batch_size"]):
        images.extend(_call(pipe, settings, batch))
    assert len(images) == len(rows)
    ended = time.perf_counter()
    return {"images": len(images), "work_s": ended - started, "load_s": loaded - started, "loop_s": ended - loaded}


def peer(run_dir: Path, out: Path) -> dict[str, Any]:
    started = time.perf_counter()
    settings = _generator_settings(run_dir)
    rows = _plan_rows(run_dir)
    pipe = _load_pipeline(settings)
    loaded = time.perf_counter()
    made, saving = 0, 0.0
    for batch in _batches(rows, settings["batch_size"]):
        images = _call(pipe, settings, batch)
        save_started = time.perf_counter()
        for row, image in zip(batch, images, strict=True):
            folder = out / f"{row['label']:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            stem = row["sample_id"].replace("/", "_")
            image.save(folder / f"{stem}.png")
            sidecar = {**row, **{k: settings[k] for k in ("model", "scheduler", "steps", "guidance", "width")}}
            (folder / f"{stem}.json").write_text(json.dumps(sidecar))
            made += 1
        saving += time.perf_counter() - save_started
    ended = time.perf_counter()
    return {"images": made, "work_s": ended - started, "load_s": loaded - started, "loop_s": ended - loaded,
            "save_s": saving}  # fmt: skip


def _timed_generate_images() -> dict[str, float]:
    """Wrap synthset's one pipeline call per batch to note when the first began and the last ended."""
    import synthset.generation.diffusion as diffusion

    real = diffusion.generate_images
    times: dict[str, float] = {}

    def generate_images(generator, rows):
        times.setdefault("first_call", time.perf_counter())
        try:
            return real(generator, rows)
        finally:
            times["last_return"] = time.perf_counter()

    diffusion.generate_images = generate_images  # before the runner imports it
    return times


def _timed_gate() -> dict[str, float]:
    """Wrap the quality gate's CPU half, scoring and judging, to sum the CPU time of the thread each ran on.

    Thread CPU time is what the gate itself costs, whatever else loads the machine (wall time on a shared
    machine swings by tens of percent); the gate's preprocessing runs on a thread of its own, beside the
    pipeline.
    """
    import synthset.generation.gate as gate
    import synthset.generation.screening as screening

    spent = {"gate_cpu_s": 0.0, "gate_load_cpu_s": 0.0}

    def timed(function):
        def wrapper(*args, **kwargs):
            started = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                spent["gate_cpu_s"] += time.thread_time() - started

        return wrapper

    init = screening.Screener.__init__

    def timed_init(self, *args, **kwargs):
        started = time.thread_time()
        try:
            init(self, *args, **kwargs)
        finally:
            spent["gate_load_cpu_s"] += time.thread_time() - started

    screening.Screener.__init__ = timed_init
    screening.Screener.prepare = timed(screening.Screener.prepare)
    screening.Screener.score_prepared = timed(screening.Screener.score_prepared)
    gate.judge_batch = timed(gate.judge_batch)  # before the runner imports it
    return spent


def synthset(run_dir: Path) -> dict[str, Any]:
    started = time.perf_counter()
    times = _timed_generate_images()
    gate_time = _timed_gate()
    from synthset.generation.runner import generate_run

    summary = generate_run(run_dir)
    ended = time.perf_counter()
    return {
        "images": summary.images_made,
        "work_s": ended - started,
        "load_s": times["first_call"] - started,  # imports, lock, plan, records, pipeline, writer start
        "loop_s": times["last_return"] - times["first_call"],
        "tail_s": ended - times["last_return"],  # the last shard's encode/write/fsync/hash/record, manifest
        "gate_cpu_s": gate_time["gate_cpu_s"],  # preprocessing, scoring, judging (every thread)
        "gate_load_cpu_s": gate_time["gate_load_cpu_s"],  # importing open_clip, loading both models
        "process_cpu_s": time.process_time(),
        "summary": asdict(summary),
    }


def score(gated_run: Path, run_dir: Path) -> dict[str, Any]:
    import io

    import pyarrow.parquet as pq
    import torch
    from PIL import Image

    from synthset.generation.screening import Screener
    from synthset.run.lock import read_lock
    from synthset.run.paths import RunDir
    from synthset.run.records import read_records

    started, cpu_started = time.perf_counter(), time.process_time()
    run, gated = RunDir(run_dir), RunDir(gated_run)
    lock = read_lock(gated)
    torch.set_num_threads(lock.recipe.generator.cpu_threads)
    screener = Screener(lock, gated, torch.device("cpu"), "float32")
    loaded = time.perf_counter()
    size, scored = lock.recipe.generator.batch_size, 0
    for name in sorted(read_records(run)):
        rows = pq.read_table(run.shard_file(name), columns=["class_name", "image"]).to_pylist()
        for i in range(0, len(rows), size):
            batch = rows[i : i + size]
            batch += [batch[-1]] * (size - len(batch))
            images = [Image.open(io.BytesIO(row["image"]["bytes"])).convert("RGB") for row in batch]
            screener.score(images, batch)
            scored += min(size, len(rows) - i)
    ended = time.perf_counter()
    return {"images": scored, "work_s": ended - started, "load_s": loaded - started, "loop_s": ended - loaded,
            "work_cpu_s": time.process_time() - cpu_started}  # fmt: skip


def counted(run_dir: Path, log_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    import synthset.generation.diffusion as diffusion
    import synthset.generation.runner as runner

    rank = int(os.environ.get("RANK", "0"))
    log_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(log_dir / f"{args.tag or f'rank{rank}'}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    real = diffusion.generate_images
    slow = args.slow_factor if args.slow_rank == rank else 1.0

    def generate_images(generator, rows):
        started = time.perf_counter()
        result = real(generator, rows)
        if slow > 1:
            time.sleep((slow - 1) * (time.perf_counter() - started))
        ids = list(dict.fromkeys(row["sample_id"] for row in rows))  # the padding repeats the last row
        os.write(fd, "".join(f"{sample_id}\n" for sample_id in ids).encode())
        return result

    diffusion.generate_images = generate_images  # before the runner imports it
    if args.static:
        runner.preferred_order = lambda n, r, w: [i for i in range(n) if i % w == r]

    started = time.perf_counter()
    summary = runner.generate_run(run_dir, lease_seconds=args.lease)
    return {"images": summary.images_made, "work_s": time.perf_counter() - started, "summary": asdict(summary)}


def plan(recipe_path: Path) -> dict[str, Any]:
    from synthset.generation.plan import plan_run
    from synthset.recipe import load_recipe

    started = time.perf_counter()
    summary = plan_run(load_recipe(recipe_path))
    return {"rows": summary.rows, "work_s": time.perf_counter() - started, "llm_sent": summary.llm_backend_calls}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["bare", "peer", "synthset", "counted", "plan", "score"])
    parser.add_argument("run", type=Path)
    parser.add_argument("out", type=Path, nargs="?")
    parser.add_argument("--slow-rank", type=int, default=-1)
    parser.add_argument("--slow-factor", type=float, default=1.0)
    parser.add_argument("--static", action="store_true")
    parser.add_argument("--lease", type=float, default=300.0)
    parser.add_argument("--tag", default=None)
    args = parser.parse_args()

    # The stack every mode needs, imported before any mode's clock starts.
    import diffusers  # noqa: F401
    import PIL.Image  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401

    if args.mode in ("peer", "counted", "score") and args.out is None:
        parser.error(f"{args.mode} needs an output directory")
    if args.mode == "bare":
        result = bare(args.run)
    elif args.mode == "peer":
        result = peer(args.run, args.out)
    elif args.mode == "synthset":
        result = synthset(args.run)
    elif args.mode == "plan":
        result = plan(args.run)
    elif args.mode == "score":
        result = score(args.run, args.out)
    else:
        result = counted(args.run, args.out, args)
    _report({"mode": args.mode, "rank": int(os.environ.get("RANK", "0")), **result})


if __name__ == "__main__":
    main()
