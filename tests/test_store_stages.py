"""build, card, review, validate and push of an s3:// run without a dataset-sized scratch (moto's S3 server).

The same synthesized run (tests/synthruns.py: planned, every shard written by the real ShardWriter) lives
twice: as a local run, and uploaded as it is into s3://. Each stage runs on the store run from a fresh
scratch disk (as a fresh host would), with the store's `download` watched: no shard, rejects file or
published Parquet file may come into scratch, and what the stage leaves in scratch holds no image data.
Its results must equal the local run's: the same published files (byte for byte), the same card, review page
and validation findings, the same files on the Hub.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hubserver import HubServer
from s3server import make_bucket, moto_s3_server, s3_environment
from synthruns import synth_recipe, write_shards
from test_hub import hub_env

from synthset import api
from synthset.run import mirror, objects
from synthset.run.paths import RunDir, is_data_file
from synthset.run.store import READ_BLOCK, RunStore

BUCKET = "stage-runs"
SHARDS = 12


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(local run dir, s3 URL) of one synthesized run of 12 one-image shards, generated but not built."""
    from synthset.generation.plan import plan_run
    from synthset.recipe import load_recipe

    root = tmp_path_factory.mktemp("stages")
    recipe = load_recipe(synth_recipe(root, "stages", SHARDS))
    with contextlib.redirect_stderr(io.StringIO()):
        plan_run(recipe)
        write_shards(recipe.run_dir)
    with moto_s3_server() as endpoint, s3_environment(endpoint):
        make_bucket(BUCKET)
        url = f"s3://{BUCKET}/stages"
        store = RunStore(url)
        local = Path(recipe.run_dir)
        for path in sorted(p for p in local.rglob("*") if p.is_file()):
            store.upload(path, path.relative_to(local).as_posix())
        yield local, url


class Watched:
    """What the store sent to scratch during one stage: the paths downloaded."""

    def __init__(self, monkeypatch, scratch: Path) -> None:
        self.downloaded: list[str] = []
        self.scratch = scratch
        download, download_many = RunStore.download, RunStore.download_many

        def watched(store, rel, dest):
            download(store, rel, dest)
            self.downloaded.append(rel)

        def watched_many(store, pairs):
            download_many(store, pairs)
            self.downloaded += [rel for rel, _ in pairs]

        monkeypatch.setattr(RunStore, "download", watched)
        monkeypatch.setattr(RunStore, "download_many", watched_many)

    def check(self) -> None:
        assert [rel for rel in self.downloaded if is_data_file(rel)] == []
        assert data_bytes_in(self.scratch) == 0


def data_bytes_in(folder: Path) -> int:
    """Bytes of image data (Parquet under shards/ or dataset/) anywhere in a scratch folder."""
    return sum(p.stat().st_size for p in folder.rglob("*.parquet") if "shards" in p.parts or "dataset" in p.parts)


@pytest.fixture
def fresh_host(tmp_path, monkeypatch):
    """Each call: a new scratch disk for the next stage, its downloads watched, and none of the small objects
    an earlier stage of this process kept (a fresh host is a fresh process)."""
    count = iter(range(100))

    def new() -> Watched:
        scratch = tmp_path / f"scratch-{next(count)}"
        monkeypatch.setenv("SYNTHSET_SCRATCH", str(scratch))
        monkeypatch.setattr(objects, "_RECENT", objects._Recent())
        return Watched(monkeypatch, scratch)

    return new


def store_bytes(url: str, rel: str) -> bytes:
    return RunStore(url).fs.cat(f"{url.removeprefix('s3://')}/{rel}")


def test_build_card_review_on_s3_move_no_image_data_and_equal_a_local_run(runs, fresh_host, monkeypatch):
    local, url = runs
    api.build(local)
    host = fresh_host()
    built = api.build(url)
    host.check()
    assert built.dataset == f"{url}/dataset"
    store = RunStore(url)
    published = {rel: obj for rel, obj in store.list("dataset/").items() if rel.endswith(".parquet")}
    local_files = sorted(p.relative_to(local).as_posix() for p in (local / "dataset").rglob("*.parquet"))
    assert sorted(published) == local_files and len(local_files) == SHARDS
    shards = store.list("shards/")
    for rel in local_files:  # copies made in the store: each the very shard, byte for byte the local file
        assert store_bytes(url, rel) == (local / rel).read_bytes()
    assert {obj.etag for obj in published.values()} <= {obj.etag for obj in shards.values()}
    assert store_bytes(url, "dataset/README.md").decode() == (local / "dataset" / "README.md").read_text()

    # a rebuild copies nothing already in place and deletes a published object no build names any more
    stale = "dataset/custom_16shot/b0/train-99999-of-00012.parquet"
    store.copy("shards/custom_16shot/train-b0-00000.parquet", stale)
    copies: list[str] = []
    with monkeypatch.context() as patched:
        patched.setattr(RunStore, "copy", lambda store, src, dst: copies.append(dst))
        api.build(url)
    assert copies == [] and store.stat(stale) is None
    assert sorted(rel for rel in store.list("dataset/") if rel.endswith(".parquet")) == local_files

    api.card(local, license="apache-2.0")
    host = fresh_host()
    api.card(url, license="apache-2.0")
    host.check()
    for name in ("README.md", "samples.jpg"):
        assert store_bytes(url, f"dataset/{name}") == (local / "dataset" / name).read_bytes(), name

    host = fresh_host()
    page = api.review(url, out=None, per_class=2)
    host.check()
    local_page = api.review(local, per_class=2)
    assert store_bytes(url, "review.html") == local_page.page.path.read_bytes()
    assert page.page.configs == local_page.page.configs


def test_a_fresh_host_takes_the_records_from_the_manifest_and_fetches_only_those_rewritten_since(
    runs, fresh_host, monkeypatch
):
    local, _ = runs
    url = f"s3://{BUCKET}/manifest-pull"
    store = RunStore(url)
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        store.upload(path, path.relative_to(local).as_posix())
    records = sorted(rel for rel in store.list("shards/") if rel.endswith(".json"))
    assert len(records) == SHARDS
    redone = records[3]  # a shard redone after generate wrote the manifest: its record now differs from its line
    store.put(redone, store_bytes(url, redone).replace(b'"seconds": ', b'"seconds": 1'))

    host = fresh_host()
    run = RunDir.at(url)
    mirror.pull(run, mirror.all_but_data)
    fetched = sorted(rel for rel in host.downloaded if rel.startswith("shards/"))
    assert fetched == sorted(["shards/manifest.jsonl", redone])
    for rel in records:  # every record in scratch is the store's, byte for byte (the redone one too)
        assert (run.root / rel).read_bytes() == store_bytes(url, rel), rel

    # a store whose ETags are not MD5s (e.g. SSE-KMS) matches no line: every record is fetched alone
    listing = RunStore.list

    def listing_with_kms_etags(store: RunStore, start: str = "") -> dict:
        return {
            rel: dataclasses.replace(obj, etag=f'"kms-{obj.etag[1:]}') for rel, obj in listing(store, start).items()
        }

    monkeypatch.setattr(RunStore, "list", listing_with_kms_etags)
    host = fresh_host()
    run = RunDir.at(url)
    mirror.pull(run, mirror.all_but_data)
    assert sorted(rel for rel in host.downloaded if rel.endswith(".json")) == records
    for rel in records:
        assert (run.root / rel).read_bytes() == store_bytes(url, rel), rel


@pytest.mark.parametrize("small", [True, False], ids=["small-objects-read-whole", "large-objects-by-range"])
def test_validate_on_s3_checks_each_shard_once_and_finds_what_a_local_run_finds(runs, fresh_host, monkeypatch, small):
    """A small shard is read in one request and hashed here (asking for the store's checksum would be one more);
    a larger one is checked by the checksum the store keeps, or else hashed streamed once."""
    local, url = runs
    if not small:
        monkeypatch.setattr(objects, "WHOLE_READ", 0)  # every object counts as large
    streamed: list[str] = []  # objects hashed by reading them (the store kept no checksum of them)
    asked: list[str] = []  # objects whose checksum was asked of the store
    read_whole: list[str] = []
    open_object, stored_sha256, whole = RunStore.open, RunStore.sha256, RunStore.read_whole

    def watched_open(store, rel, size=None, block_size=READ_BLOCK, etag=None):
        if block_size == objects.HASH_CHUNK:
            streamed.append(rel)
        return open_object(store, rel, size, block_size, etag)

    monkeypatch.setattr(RunStore, "open", watched_open)
    monkeypatch.setattr(RunStore, "sha256", lambda store, rel: asked.append(rel) or stored_sha256(store, rel))
    monkeypatch.setattr(RunStore, "read_whole", lambda store, rel: read_whole.append(rel) or whole(store, rel))
    host = fresh_host()
    assert api.validate(url).ok and api.validate(local).ok
    host.check()
    shards = sorted(f"shards/{p.relative_to(local / 'shards').as_posix()}" for p in local.glob("shards/**/*.parquet"))
    assert len(shards) == SHARDS and streamed == []
    if small:
        assert sorted(read_whole) == shards and asked == []  # one request per shard
    else:
        assert read_whole == [] and sorted(asked) == shards  # every shard was put with its SHA-256

    # the same byte flipped in one shard of each run: the same finding, named the same way
    store = RunStore(url)
    shard = "shards/custom_16shot/train-b0-00003.parquet"
    original = (local / shard).read_bytes()
    data = bytearray(original)
    data[len(data) // 2] ^= 0xFF
    try:
        (local / shard).write_bytes(bytes(data))
        store.fs.pipe_file(f"{BUCKET}/stages/{shard}", bytes(data))  # put without a checksum
        assert stored_sha256(store, shard) is None
        host = fresh_host()
        found_store = [p for r in api.validate(url).reports for p in r.problems]
        host.check()
        found_local = [p for r in api.validate(local).reports for p in r.problems]
        assert found_store == [p.replace(str(local), url) for p in found_local]
        assert found_store == [f"{shard}: sha256 mismatch; `synthset generate {url}` makes it again"]
        assert streamed == ([] if small else [shard])  # a large one without a stored checksum: hashed, streamed
    finally:
        (local / shard).write_bytes(original)
        store.upload(local / shard, shard)


def test_a_large_shard_is_read_by_range_with_no_head_and_gives_the_local_rows(runs, fresh_host, monkeypatch):
    """A shard above `WHOLE_READ` is read where it is: s3fs would HEAD it for the ETag it checks every range
    against; the listing's size and ETag spare that request."""
    from aiobotocore.endpoint import AioEndpoint

    from synthset.run.access import READS_ALL_BUT_DATA, open_run

    local, url = runs
    monkeypatch.setattr(objects, "WHOLE_READ", 0)  # every object counts as large
    sent: list[str] = []
    send = AioEndpoint._do_get_response

    async def counted(self, request, operation_model, context):
        sent.append(operation_model.name)
        return await send(self, request, operation_model, context)

    host = fresh_host()
    shard = "shards/custom_16shot/train-b0-00003.parquet"
    with open_run(url, READS_ALL_BUT_DATA, writes=False) as run:
        monkeypatch.setattr(AioEndpoint, "_do_get_response", counted)
        with objects.parquet_file(run, run.root / shard) as parquet:
            rows = [row for batch in parquet.iter_batches() for row in batch.to_pylist()]
    host.check()
    assert sent and set(sent) == {"GetObject"}
    assert rows == pq.read_table(local / shard).to_pylist()


PUSH_WATCHED = """
import json, sys
from pathlib import Path
from synthset import api
from synthset.hub import publish
from synthset.run.paths import RunDir, is_data_file
from synthset.run.store import READ_BLOCK, RunStore

scratch, url, repo = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
seen = {"groups": [], "peak": 0, "downloaded": []}
publish.FETCH_GROUP = 3
release, download, download_many = publish.release_fetched, RunStore.download, RunStore.download_many

def released(paths):
    held = sum(p.stat().st_size for p in scratch.rglob("*.parquet") if publish.FETCHED_DIR in p.parts)
    seen["peak"] = max(seen["peak"], held)
    seen["groups"].append(len(paths))
    release(paths)

def downloaded(store, rel, dest):
    seen["downloaded"].append(rel)
    download(store, rel, dest)

def downloaded_many(store, pairs):
    seen["downloaded"] += [rel for rel, _ in pairs]
    download_many(store, pairs)

publish.release_fetched, RunStore.download, RunStore.download_many = released, downloaded, downloaded_many
done = api.push(url, repo, tag="v1.0", allow_unscreened=True)
seen["already"] = done.push.already_published
print(json.dumps(seen))
"""


def watched_push(env: dict, scratch: Path, url: str, repo: str) -> dict:
    import json
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", PUSH_WATCHED, str(scratch), url, repo],
        capture_output=True,
        text=True,
        env={**env, "SYNTHSET_SCRATCH": str(scratch)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_push_of_an_s3_run_fetches_a_few_files_at_a_time_and_publishes_what_a_local_run_does(runs, tmp_path):
    from huggingface_hub import HfApi

    from synthset.hub.publish import FETCHED_DIR

    local, url = runs
    if not (local / "dataset" / "README.md").is_file():
        api.build(local)
        api.build(url)
    api.card(local, license="apache-2.0")
    api.card(url, license="apache-2.0")
    with HubServer() as hub:
        env = hub_env(hub, tmp_path / "hf")
        watched_push(env, tmp_path / "scratch-local", str(local), "org/local-run")
        scratch = tmp_path / "scratch-store"
        seen = watched_push(env, scratch, url, "org/store-run")
        data = [rel for rel in seen["downloaded"] if is_data_file(rel)]
        assert sorted(data) == sorted(set(data)) and len(data) == SHARDS  # each fetched once, to be uploaded
        fetched = [n for n in seen["groups"] if n]  # each group: fetched, uploaded, removed
        assert sum(fetched) == SHARDS and max(fetched) == 3
        one_file = max(p.stat().st_size for p in (local / "dataset").rglob("*.parquet"))
        assert 0 < seen["peak"] <= 3 * one_file
        assert [p for p in scratch.rglob("*") if p.is_file() and FETCHED_DIR in p.parts] == []
        hub_api = HfApi(endpoint=hub.url, token=env["HF_TOKEN"])

        def files(repo: str) -> dict:
            tree = hub_api.list_repo_tree(repo, repo_type="dataset", revision="v1.0", recursive=True)
            return {e.path: (e.size, e.lfs.sha256 if e.lfs else e.blob_id) for e in tree if hasattr(e, "size")}

        local_files, store_files = files("org/local-run"), files("org/store-run")
        assert sorted(store_files) == sorted(local_files)
        differing = {path for path in local_files if local_files[path] != store_files[path]}
        assert differing == {"README.md", "manifest.jsonl"}  # they name the repo; every other file is equal
        assert watched_push(env, tmp_path / "scratch-again", url, "org/store-run")["already"]


def test_what_a_killed_fetch_or_pull_leaves_is_cleared_once_its_process_is_gone(tmp_path):
    """A fetch (`RunStore.download`) and a record written from the manifest (`mirror._place`) go through temp
    files named by their owner: a worker's start-up clean-up (`remove_dead_temp_files`) removes those of a dead
    process of this host, and leaves a live one's."""
    import subprocess
    import sys

    from synthset.fsutil import remove_dead_temp_files
    from synthset.run.store import _fetch_temp

    dest = tmp_path / "train-b0-00000.json"
    leave_temps = (
        "import sys\n"
        "from pathlib import Path\n"
        "from synthset.fsutil import temp_path_for\n"
        "from synthset.run.store import _fetch_temp\n"
        "dest = Path(sys.argv[1])\n"
        "_fetch_temp(dest).touch()\n"
        "temp_path_for(dest).touch()\n"
    )
    subprocess.run([sys.executable, "-c", leave_temps, str(dest)], check=True)  # then its process is gone
    assert len(list(tmp_path.iterdir())) == 2
    live = _fetch_temp(dest)
    live.touch()
    assert remove_dead_temp_files(tmp_path) == 2
    assert list(tmp_path.iterdir()) == [live]
