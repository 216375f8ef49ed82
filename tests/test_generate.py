"""Exactly-once, deterministic, resumable generation on the tiny model."""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import (
    REPO,
    accelerate_launch_command,
    generate_killed_after,
    images_by_sample,
    pixels,
    shard_hashes,
    synthset_cli,
    synthset_command,
)

from synthset.errors import SynthsetError
from synthset.generation.plan import plan_run
from synthset.generation.processes import check_world_size
from synthset.generation.runner import generate_run, preferred_order
from synthset.recipe import load_recipe
from synthset.run.paths import MANIFEST_FILE, RunDir
from synthset.run.records import read_records

# 3 classes x 5 images = 15 samples; shards of 6 -> 3 shards (6, 6, 3); batches of 4 -> padded batches.
EXPECTED_IDS = {f"naive/{label:04d}/{index:06d}" for label in range(3) for index in range(5)}


def plan_and_generate(write_recipe, changes=None, filename="recipe.yaml"):
    recipe = load_recipe(write_recipe(changes, filename))
    plan_run(recipe)
    summary = generate_run(recipe.run_dir)
    return recipe.run_dir, summary


@pytest.fixture
def reference_run(write_recipe):
    run_dir, summary = plan_and_generate(write_recipe, {"name": "reference"}, "reference.yaml")
    assert (summary.shards_made, summary.images_made, summary.all_shards_done) == (3, 15, True)
    return run_dir


def test_every_planned_sample_exactly_once_with_metadata(reference_run: Path):
    images = images_by_sample(reference_run)
    assert set(images) == EXPECTED_IDS
    table = pq.read_table(RunDir(reference_run).shard_file("naive/train-b0-00000"))
    assert table.num_rows == 6
    row = table.slice(0, 1).to_pylist()[0]
    assert row["prompt"] == "a photo of a tench"
    assert (row["steps"], row["width"], row["batch_size"], row["attention"], row["dtype"]) == (
        2,
        32,
        4,
        "sdpa",
        "float32",
    )
    assert row["model_revision"].startswith("sha256:")
    assert row["scheduler"] == "DDIMScheduler"
    assert pixels(row["image"]["bytes"]).shape == (32, 32, 3)
    manifest = (reference_run / "shards" / MANIFEST_FILE).read_text().splitlines()
    assert [json.loads(line)["shard"] for line in manifest] == [
        "naive/train-b0-00000",
        "naive/train-b0-00001",
        "naive/train-b0-00002",
    ]


def test_rerun_of_a_finished_run_makes_nothing(reference_run: Path):
    before = shard_hashes(reference_run)
    summary = generate_run(reference_run)
    assert (summary.shards_made, summary.images_made) == (0, 0)
    assert shard_hashes(reference_run) == before


def test_plan_rows_are_held_one_shard_at_a_time(write_recipe, monkeypatch):
    """A rank must not load all its shards' plan rows up front: at 6x ImageNet that is gigabytes per rank."""
    import weakref

    from synthset.generation import diffusion, runner

    alive: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # PlannedShard is not hashable
    most_alive = []
    read_shard, generate = runner.read_planned_shard, diffusion.generate_images

    def tracked_read(*args, **kwargs):
        shard = read_shard(*args, **kwargs)
        alive[id(shard)] = shard
        return shard

    def counting_generate(*args, **kwargs):
        most_alive.append(len(alive))
        return generate(*args, **kwargs)

    monkeypatch.setattr(runner, "read_planned_shard", tracked_read)
    monkeypatch.setattr(diffusion, "generate_images", counting_generate)
    _, summary = plan_and_generate(write_recipe, {"name": "lazy"}, "lazy.yaml")
    assert summary.shards_made == 3
    assert len(most_alive) == 5  # batches of 4 over shards of 6, 6, 3: 2 + 2 + 1
    assert max(most_alive) == 1


def test_cpu_weights_live_in_aligned_memory(write_recipe):
    """Memory-mapped safetensors weights sit at unaligned addresses, and CPU kernels choose their path by
    address: the same sample then gets other bytes on 1 process than under a process group."""
    import torch

    from synthset.generation.diffusion import load_generator
    from synthset.run.lock import read_lock

    recipe = load_recipe(write_recipe({"name": "aligned"}, "aligned.yaml"))
    plan_run(recipe)
    run = RunDir(recipe.run_dir)
    pipe = load_generator(read_lock(run), torch.device("cpu"), run, show_progress=False).pipe
    modules = [c for c in pipe.components.values() if isinstance(c, torch.nn.Module)]
    tensors = [t for m in modules for t in [*m.parameters(), *m.buffers()]]
    assert len(modules) == 3 and len(tensors) > 100
    assert [t.data_ptr() % 64 for t in tensors if t.data_ptr() % 64] == []


def test_each_rank_tries_its_own_share_first_then_every_other_shard():
    for world_size in (1, 2, 3, 7):
        orders = [preferred_order(10, rank, world_size) for rank in range(world_size)]
        assert all(sorted(order) == list(range(10)) for order in orders)
        own = [order[: len(range(rank, 10, world_size))] for rank, order in enumerate(orders)]
        assert sorted(i for share in own for i in share) == list(range(10))  # the shares partition the shards
        assert all(i % world_size == rank for rank, share in enumerate(own) for i in share)


def test_two_processes_give_byte_identical_shards(reference_run: Path, write_recipe):
    run_dir = load_recipe(write_recipe({"name": "two"}, "two.yaml")).run_dir
    assert synthset_cli("plan", str(run_dir.parent.parent / "two.yaml")).returncode == 0
    launched = subprocess.run(
        accelerate_launch_command(2, "generate", str(run_dir)), capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert launched.returncode == 0, launched.stderr[-2000:]
    assert "rank 0/2" in launched.stdout and "rank 1/2" in launched.stdout
    records = read_records(RunDir(run_dir))
    assert {r.rank for r in records.values()} == {0, 1}
    assert {r.world_size for r in records.values()} == {2}
    assert images_by_sample(run_dir) == images_by_sample(reference_run)
    assert shard_hashes(run_dir) == shard_hashes(reference_run)


def test_batch_size_changes_pixels_by_at_most_one_level(write_recipe):
    """Float reduction order depends on the batch shape: bs 1 vs 4 agree within 1/255, not byte for byte."""
    run_1, _ = plan_and_generate(write_recipe, {"name": "bs1", "generator": {"batch_size": 1}}, "bs1.yaml")
    run_4, _ = plan_and_generate(write_recipe, {"name": "bs4", "generator": {"batch_size": 4}}, "bs4.yaml")
    images_1, images_4 = images_by_sample(run_1), images_by_sample(run_4)
    assert set(images_1) == set(images_4) == EXPECTED_IDS
    worst = max(int(np.abs(pixels(images_1[s]) - pixels(images_4[s])).max()) for s in EXPECTED_IDS)
    assert worst <= 1


def test_sigkill_then_resume_equals_uninterrupted_run(reference_run: Path, write_recipe):
    # Slower steps so the kill lands while shards remain; 12 shards of 2 images.
    changes = {"name": "killed", "storage": {"shard_size": 2}, "generator": {"steps": 20}}
    reference = load_recipe(write_recipe({**changes, "name": "uninterrupted"}, "full.yaml"))
    plan_run(reference)
    generate_run(reference.run_dir)

    recipe = load_recipe(write_recipe(changes, "killed.yaml"))
    plan_run(recipe)
    finished = generate_killed_after(recipe.run_dir, shards=2, timeout_s=120)
    assert 2 <= finished < 8, f"the kill should land part-way, found {finished} finished shards"

    summary = generate_run(recipe.run_dir)
    assert summary.shards_made == 8 - finished
    assert not list((recipe.run_dir / "shards").rglob(".tmp-*"))
    assert images_by_sample(recipe.run_dir) == images_by_sample(reference.run_dir)
    assert shard_hashes(recipe.run_dir) == shard_hashes(reference.run_dir)


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_corrupted_shard_is_detected_and_regenerated(reference_run: Path, damage: str):
    before = shard_hashes(reference_run)
    path = RunDir(reference_run).shard_file("naive/train-b0-00001")
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    elif damage == "truncate":
        path.write_bytes(bytes(data[:-100]))
    else:
        path.unlink()
    summary = generate_run(reference_run)
    assert (summary.shards_redone, summary.shards_made, summary.images_made) == (1, 1, 6)
    assert shard_hashes(reference_run) == before


def test_recorded_shards_are_checked_while_fresh_ones_are_made(reference_run: Path, monkeypatch):
    """A restart must not keep the generator idle while it re-hashes every finished shard."""
    import threading

    from synthset.generation import diffusion, runner

    before = shard_hashes(reference_run)
    broken = RunDir(reference_run).shard_file("naive/train-b0-00000")
    broken.write_bytes(broken.read_bytes()[:-100])
    RunDir(reference_run).shard_file("naive/train-b0-00002").unlink()
    (reference_run / "shards" / "naive" / "train-b0-00002.json").unlink()

    generating = threading.Event()
    seen_by_check = []
    check, generate = runner.shard_problem, diffusion.generate_images

    def slow_check(*args, **kwargs):
        seen_by_check.append(generating.wait(timeout=60))  # True: the generator was already at work
        return check(*args, **kwargs)

    def noting_generate(*args, **kwargs):
        generating.set()
        return generate(*args, **kwargs)

    monkeypatch.setattr(runner, "shard_problem", slow_check)
    monkeypatch.setattr(diffusion, "generate_images", noting_generate)
    summary = generate_run(reference_run)
    assert seen_by_check == [True, True]  # the two recorded shards, checked once generation had begun
    assert (summary.shards_made, summary.shards_redone, summary.images_made) == (2, 1, 9)
    assert shard_hashes(reference_run) == before


def test_changed_plan_never_reuses_a_shard(reference_run: Path, write_recipe):
    """Re-planning with other generation settings over finished shards is refused, not mixed."""
    recipe = load_recipe(write_recipe({"name": "reference", "generator": {"steps": 3}}, "reference.yaml"))
    with pytest.raises(SynthsetError, match="has shards made with other generation settings"):
        plan_run(recipe)


def test_launcher_and_accelerate_must_agree():
    """A launcher that claims 2 processes to an accelerate state that sees 1 would duplicate every image."""
    with pytest.raises(SynthsetError, match="^the launcher started 2 processes but accelerate sees 1: "):
        check_world_size(2, 1)
    check_world_size(2, 2)


def test_half_configured_launch_is_one_line_and_writes_nothing(write_recipe):
    recipe = load_recipe(write_recipe({"name": "half"}, "half.yaml"))
    plan_run(recipe)
    env = {**os.environ, "WORLD_SIZE": "2"}
    env.pop("MASTER_ADDR", None)
    result = subprocess.run(
        [*synthset_command(), "generate", str(recipe.run_dir)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "synthset: error: accelerate could not set up the processes: Tried to launch on distributed with "
        "multinode, but `MASTER_ADDR` env was not set, please try exporting rank 0's hostname as `MASTER_ADDR`"
    ]
    assert not (recipe.run_dir / "shards").exists()


def test_storage_resize_format_and_row_groups(write_recipe):
    run_dir, _ = plan_and_generate(
        write_recipe,
        {"name": "stored", "storage": {"format": "webp", "quality": 80, "resize": 16, "row_group_size": 4}},
        "stored.yaml",
    )
    shard = pq.ParquetFile(RunDir(run_dir).shard_file("naive/train-b0-00000"))
    assert [shard.metadata.row_group(i).num_rows for i in range(shard.metadata.num_row_groups)] == [4, 2]
    from PIL import Image

    image = Image.open(io.BytesIO(images_by_sample(run_dir)["naive/0000/000000"]))
    assert (image.format, image.size) == ("WEBP", (16, 16))
    row = shard.read_row_group(0, columns=["width", "height"]).to_pylist()[0]
    assert (row["width"], row["height"]) == (32, 32)  # the generated size; the stored size is the recipe's resize
