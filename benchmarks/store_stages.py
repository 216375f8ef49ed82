"""Row 8e: build, card, review, validate and push of an s3:// run (moto) vs the same stages on a local run.

One run of `--store-shards` (10^3) shards of `IMAGES_PER_SHARD` images, then one of the same images in a
twentieth as many shards (large enough to be read by range requests, as a real dataset's are), is synthesized as
the hub row does (tests/synthruns.py: planned, every shard written by the real ShardWriter), with 64 px PNGs of
seeded noise so that image bytes outweigh the files' metadata as in a real dataset (~200 KB a shard).
It lives twice: as a local run, and uploaded as it is (each shard put with its SHA-256, as generate
puts them) into moto's S3 server on loopback (tests/s3server.py). Each stage then runs on each in a
fresh child (`benchmarks/store_child.py`), the store run from an empty scratch disk as on a fresh host,
in alternating order; push goes to the loopback Hub of the tests. Figures, per stage: the most bytes
the store run's scratch held / the dataset's bytes (its shards), and wall time store / local.

Wall time is the stage's own (after the imports both runs need). Beside it, what the ratio is made of: the
requests the stage sent the store per shard (a property of synthset, the same against AWS), and the CPU
seconds synthset and moto's server spent. moto is one Python process, and so is the stage (the threads of
each share one interpreter lock: one core at most each), and both share this machine's cores, so no stage
finishes sooner than max(moto's CPU, synthset's CPU, (synthset's + moto's CPU) / cores): its ratio to the
local run (`floor here`) is the best wall-time ratio reachable against this server on this machine with a
one-process stage. Against a store that answers in parallel on its own machines (S3), moto's terms go, but
synthset's CPU per request (botocore's signing and parsing, ~2-3 ms here) stays.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import sys
from pathlib import Path

import yaml

from benchmarks.common import PYTHON, REPO, Context, Row, judged, ratio, run_child

STAGES = ("build", "card", "review", "validate", "push")
IMAGES_PER_SHARD = 16
BUCKET = "bench-stages"
CORES = os.cpu_count() or 1


def _synthesized(root: Path, shards: int, per_shard: int) -> Path:
    """A planned and generated run of about `shards` shards of `per_shard` images (64 px noise); -> its directory."""
    sys.path.insert(0, str(REPO / "tests"))
    from synthruns import synth_recipe, write_shards

    from synthset.generation.plan import plan_run
    from synthset.recipe import load_recipe

    path = synth_recipe(root, "stages", shards * per_shard)
    data = yaml.safe_load(path.read_text())
    data["generator"].update(width=64, height=64)
    # 4 row groups in the 16-image shards; 10 in larger ones, as the recipe's defaults make (1,000 and 100)
    data["storage"].update(shard_size=per_shard, row_group_size=max(4, per_shard // 10))
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    recipe = load_recipe(path)
    with contextlib.redirect_stderr(io.StringIO()):
        plan_run(recipe)
        write_shards(recipe.run_dir, noise=True)
    return Path(recipe.run_dir)


def _upload(local: Path, url: str) -> None:
    """Put every file of the run into the store at once (concurrent puts), each with its SHA-256."""
    from synthset.run.store import RunStore

    store = RunStore(url)
    files = sorted(p for p in local.rglob("*") if p.is_file())
    remote = [f"{store.bucket}/{store.key(p.relative_to(local).as_posix())}" for p in files]
    store.fs.put([str(p) for p in files], remote, ChecksumAlgorithm="SHA256")


def _moto_process(endpoint: str):
    """The `moto_server` process serving `endpoint` (a child of this one)."""
    import psutil

    port = endpoint.rsplit(":", 1)[1]
    for child in psutil.Process().children(recursive=True):
        if any("moto_server" in part for part in child.cmdline()) and port in child.cmdline():
            return child
    raise RuntimeError(f"no moto_server process serves {endpoint}")


def _cpu_seconds(process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def _stage(ctx: Context, root: Path, stage: str, target: str, tag: str, env: dict[str, str], moto) -> dict:
    cpu_before = _cpu_seconds(moto)
    argv = [*PYTHON, "-m", "benchmarks.store_child", stage, target, f"org/stages-{tag}"]
    saved = dict(os.environ)
    os.environ.update(env, SYNTHSET_SCRATCH=str(root / f"scratch-{stage}-{tag}"))
    try:
        result = run_child(argv, ctx.work / "logs", f"{root.name}-{stage}-{tag}").check()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return {"wall_s": result.wall_s, "moto_cpu_s": _cpu_seconds(moto) - cpu_before, **result.report}


def measure(ctx: Context) -> list[Row]:
    """The issue's layout (`--store-shards` shards of 16 images, each read whole in one request: judged), then
    the same images in a twentieth as many shards of 320 (~4 MB: above `objects.WHOLE_READ`, so read by range
    requests, as a real dataset's shards are: shown, not judged, since push's scratch is 8 of only 50 files)."""
    shards = ctx.args.store_shards
    rows = _measure_layout(ctx, shards, IMAGES_PER_SHARD)
    larger = _measure_layout(ctx, max(1, shards // 20), IMAGES_PER_SHARD * 20)
    return rows + [dataclasses.replace(row, goal="-", status="info") for row in larger]


def _measure_layout(ctx: Context, shards: int, per_shard: int) -> list[Row]:
    sys.path.insert(0, str(REPO / "tests"))
    from hubserver import HubServer
    from s3server import make_bucket, moto_s3_server, s3_environment

    from benchmarks.hub import _env as hub_env

    root = ctx.work / f"store-stages-{shards}x{per_shard}"
    root.mkdir()
    local = _synthesized(root, shards, per_shard)
    dataset_bytes = sum(p.stat().st_size for p in (local / "shards").rglob("*.parquet"))
    url = f"s3://{BUCKET}/stages"
    figures: dict[str, dict[str, dict]] = {}
    print(f"  {shards:,} shards of {per_shard} images:", flush=True)
    with moto_s3_server() as endpoint, s3_environment(endpoint), HubServer() as hub:
        make_bucket(BUCKET)
        _upload(local, url)
        env = hub_env(hub.url, root / "hf")
        moto = _moto_process(endpoint)
        for i, stage in enumerate(STAGES):
            order = [("local", str(local)), ("s3", url)]
            figures[stage] = {}
            for tag, target in order if i % 2 == 0 else order[::-1]:
                figures[stage][tag] = _stage(ctx, root, stage, target, tag, env, moto)
            s3, here = figures[stage]["s3"], figures[stage]["local"]
            print(
                f"  {stage}: s3 {s3['seconds']:.1f} s (CPU: synthset {s3['cpu_s']:.1f} s, "
                f"moto {s3['moto_cpu_s']:.1f} s), local {here['seconds']:.1f} s, "
                f"scratch peak {s3['peak_scratch'] / 1e6:.2f} MB, requests {s3['requests']}",
                flush=True,
            )
    return [_row(stage, figures[stage], shards, per_shard, dataset_bytes) for stage in STAGES]


def _row(stage: str, figures: dict[str, dict], shards: int, per_shard: int, dataset_bytes: int) -> Row:
    s3, here = figures["s3"], figures["local"]
    scratch = ratio(s3["peak_scratch"], dataset_bytes)
    wall = ratio(s3["seconds"], here["seconds"])
    floor = ratio(max(s3["moto_cpu_s"], s3["cpu_s"], (s3["cpu_s"] + s3["moto_cpu_s"]) / CORES), here["seconds"])
    per_shard_requests = sum(s3["requests"].values()) / shards
    return Row(
        f"8e. store run, {shards:,} shards of {per_shard} images (moto): {stage}",
        f"scratch peak / dataset {scratch:.4f} ({s3['peak_scratch'] / 1e6:.2f} MB / "
        f"{dataset_bytes / 1e6:.1f} MB); wall s3 / local {wall:.2f} ({s3['seconds']:.1f} s / "
        f"{here['seconds']:.1f} s); floor here {floor:.2f} (CPU: synthset {s3['cpu_s']:.1f} s + moto "
        f"{s3['moto_cpu_s']:.1f} s, {CORES} cores); {per_shard_requests:.1f} requests per shard",
        "scratch <= 0.05; wall <= 1.5",
        judged(scratch <= 0.05 and wall <= 1.5),
        {"s3": s3, "local": here, "dataset_bytes": dataset_bytes},
    )
