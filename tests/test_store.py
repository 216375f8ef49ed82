"""Run directories on s3:// through moto's S3 server: claims by conditional puts, the whole pipeline, faults.

moto's server speaks the S3 wire protocol (conditional puts included); synthset reaches it through s3fs with
the endpoint in `AWS_ENDPOINT_URL`, as it reaches AWS. Nothing of synthset's own is mocked.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from s3server import free_port, make_bucket, moto_s3_server, s3_environment

from synthset.run.claims import ClaimBook, ClaimLost, Worker, current_claim, live_claims
from synthset.run.paths import RunDir

SHARD = "naive/train-b0-00003"
BUCKET = "synthset-runs"


@pytest.fixture(scope="module")
def s3_endpoint():
    with moto_s3_server() as endpoint, s3_environment(endpoint):
        make_bucket(BUCKET)
        yield endpoint


@pytest.fixture
def s3_url(s3_endpoint, request) -> str:
    return f"s3://{BUCKET}/{request.node.name}"


@pytest.fixture
def s3_run(s3_url, tmp_path, monkeypatch) -> RunDir:
    monkeypatch.setenv("SYNTHSET_SCRATCH", str(tmp_path / "scratch"))
    return RunDir.at(s3_url)


def race(run: RunDir, contenders: int, shard: str, lease: float) -> list[ClaimBook]:
    books = [ClaimBook(run, Worker(f"w{i}", "another-host", 1), lease_seconds=lease) for i in range(contenders)]
    start = threading.Barrier(contenders)
    winners: list[ClaimBook] = []

    def contend(book: ClaimBook) -> None:
        start.wait()
        if book.try_claim(shard) is not None:
            winners.append(book)

    threads = [threading.Thread(target=contend, args=(book,)) for book in books]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for book in books:
        book._stop.set()  # no heartbeats from these test books after the race
    return winners


def test_workers_racing_for_a_shard_on_s3_one_wins_the_others_move_on(s3_run: RunDir):
    for round_ in range(5):
        shard = f"naive/train-b0-{round_:05d}"
        winners = race(s3_run, 8, shard, lease=60.0)
        assert len(winners) == 1, f"round {round_}: {len(winners)} winners"
        assert current_claim(s3_run, shard).worker == winners[0].worker
    assert len(live_claims(s3_run, 60.0)) == 5


def test_an_expired_lease_on_s3_is_taken_over_exactly_once(s3_run: RunDir):
    stale = ClaimBook(s3_run, Worker("gone", "far-host", 1), lease_seconds=1.0)
    assert stale.try_claim(SHARD) is not None
    stale._stop.set()  # paused: no more heartbeats
    assert race(s3_run, 4, SHARD, lease=60.0) == []  # a live lease is left alone
    time.sleep(2.5)  # the store's clock counts whole seconds
    winners = race(s3_run, 6, SHARD, lease=1.0)
    assert len(winners) == 1
    claim = current_claim(s3_run, SHARD)
    assert (claim.epoch, claim.worker) == (1, winners[0].worker)
    assert s3_run.store.stat(f"shards/.claims/{SHARD}.claim.0") is None  # the taker cleared the old epoch
    with pytest.raises(ClaimLost):
        stale.check_held(SHARD)
    stale.heartbeat_once()  # its conditional put fails: it learns it lost the shard
    assert SHARD in stale._lost


def test_the_heartbeat_keeps_an_s3_claim_alive_past_its_lease(s3_run: RunDir):
    holder = ClaimBook(s3_run, lease_seconds=2.0)
    first = holder.try_claim(SHARD)
    time.sleep(5)  # more than two leases
    assert race(s3_run, 3, SHARD, lease=2.0) == []
    holder.check_held(SHARD)
    assert current_claim(s3_run, SHARD).touched > first.touched  # renewed by If-Match puts
    holder.close()
    assert current_claim(s3_run, SHARD) is None


def synthset(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "synthset", *args], capture_output=True, text=True, env=env or os.environ.copy()
    )
    if check and result.returncode != 0:
        raise AssertionError(f"synthset {' '.join(args)}: rc {result.returncode}\n{result.stderr[-3000:]}")
    return result


def worker_env(tmp_path: Path, host: str) -> dict:
    """A worker with its own scratch disk, as on another node."""
    return {**os.environ, "SYNTHSET_SCRATCH": str(tmp_path / f"scratch-{host}")}


def store_records(fs, url: str) -> dict[str, dict]:
    root = url.removeprefix("s3://")
    return {
        Path(key).stem: json.loads(fs.cat(key))
        for key in fs.find(f"{root}/shards")
        if key.endswith(".json") and "/.claims/" not in key and not key.endswith("manifest.jsonl")
    }


RECIPE = {
    "configs": [{"name": "naive", "strategy": "naive", "images_per_class": 8}],
    "storage": {"format": "png", "shard_size": 4, "row_group_size": 4},
}


def test_the_whole_pipeline_on_s3_with_workers_joining_and_one_killed_equals_a_local_run(
    s3_url, tmp_path, write_recipe
):
    import datasets
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)
    recipe = write_recipe(RECIPE)

    # The reference: an uninterrupted local run of the same recipe.
    synthset("plan", str(recipe))
    synthset("generate", str(tmp_path / "runs" / "t"))
    synthset("build", str(tmp_path / "runs" / "t"))
    local = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "runs" / "t" / "shards" / "naive").glob("*.json")}
    assert len(local) == 6

    plan = synthset("plan", str(recipe), "--run-dir", s3_url, env=worker_env(tmp_path, "planner"))
    assert f"run directory: {s3_url}" in plan.stdout
    generate = [sys.executable, "-m", "synthset", "generate", s3_url, "--lease-seconds", "8"]
    first = subprocess.Popen(generate, env=worker_env(tmp_path, "a"), stderr=subprocess.DEVNULL)
    second = subprocess.Popen(generate, env=worker_env(tmp_path, "b"), stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # until the first worker committed a shard: then kill it mid-run
        if any(f".{first.pid}." in r["worker"] for r in store_records(fs, s3_url).values()):
            break
        time.sleep(0.2)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    late = subprocess.Popen(generate, env=worker_env(tmp_path, "c"), stderr=subprocess.DEVNULL)  # joins late
    assert second.wait(timeout=300) == 0 and late.wait(timeout=300) == 0

    records = store_records(fs, s3_url)
    assert {r["worker"].split(".")[1] for r in records.values()} >= {str(first.pid), str(second.pid)}
    assert {name: r["sha256"] for name, r in records.items()} == {name: r["sha256"] for name, r in local.items()}
    assert sum(r["rows"] for r in records.values()) == 24

    status = synthset("status", s3_url, env=worker_env(tmp_path, "d")).stdout
    assert "shards: 6 done, 0 being made, 0 with an expired lease, 0 pending (of 6)" in status
    assert "images: 24 of 24 (100.0%)" in status
    made_by = {r["worker"] for r in records.values()}
    for worker in made_by:  # one line per worker, with the shards the records give it
        line = next(line for line in status.splitlines() if line.startswith(worker))
        assert int(line.split()[1]) == sum(r["worker"] == worker for r in records.values())

    build = synthset("build", s3_url, env=worker_env(tmp_path, "e")).stdout
    assert f"dataset: {s3_url}/dataset" in build
    root = s3_url.removeprefix("s3://")
    published = sorted(fs.find(f"{root}/dataset/naive"))
    assert len(published) == 6
    shard_etags = {fs.info(f"{root}/shards/naive/{name}.parquet")["ETag"] for name in records}
    assert {fs.info(key)["ETag"] for key in published} == shard_etags  # copied in the store, same bytes
    loaded = datasets.load_dataset(
        "parquet", data_files={"train": f"{s3_url}/dataset/naive/b0/train-*.parquet"}, split="train"
    )
    reference = datasets.load_dataset(str(tmp_path / "runs" / "t" / "dataset"), "naive", split="train")
    assert loaded.num_rows == reference.num_rows == 24
    key = lambda row: row["sample_id"]  # noqa: E731
    assert sorted(loaded, key=key) == sorted(reference, key=key)


def test_an_unreachable_store_is_one_clear_line(s3_endpoint, tmp_path):
    env = {**worker_env(tmp_path, "x"), "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
    started = time.monotonic()
    result = synthset("status", f"s3://{BUCKET}/nowhere", env=env, check=False)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(
        f"synthset: error: s3://{BUCKET}/nowhere: object store unusable at http://127.0.0.1:"
    )
    assert "Could not connect to the endpoint URL" in result.stderr
    assert time.monotonic() - started < 60


def test_a_missing_bucket_and_an_unsupported_store_are_one_line_each(s3_endpoint, tmp_path):
    result = synthset("status", "s3://no-such-bucket/run", env=worker_env(tmp_path, "x"), check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"synthset: error: s3://no-such-bucket/run: object store unusable at {s3_endpoint} (list /): "
        "bucket 'no-such-bucket' does not exist"
    )
    result = synthset("generate", "gs://bucket/run", check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "synthset: error: gs://bucket/run: run directories on gs:// are not supported (they need conditional "
        "writes for shard claims; supported: s3:// and local paths)"
    )


def test_an_s3_run_that_was_never_planned_says_what_to_run(s3_endpoint, tmp_path):
    result = synthset("generate", f"s3://{BUCKET}/empty", env=worker_env(tmp_path, "x"), check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"synthset: error: s3://{BUCKET}/empty: not a planned run directory (recipe.lock.yaml missing; "
        "run `synthset plan` first)"
    )
