"""`synthset push / versions / verify` against a real HTTP server that speaks the Hub protocol.

huggingface_hub and datasets read HF_ENDPOINT (and HF_HUB_DISABLE_XET) once, at import time, and this
test process has imported them long before any server exists. So the client side always runs as a
user runs it: `python -m synthset ...` (or a small load script) in a fresh process whose environment
points at the loopback server (tests/hubserver.py), which runs here, in a thread, where the tests count
what crossed the wire and inject faults.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections import Counter
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pyarrow.parquet as pq
import pytest
import yaml
from conftest import BASE_RECIPE, TINY_QUALITY, deep_update
from hubserver import Blob, HubLimits, HubServer, endpoint_of

from synthset.builders.assemble import build_dataset
from synthset.cards import write_card
from synthset.cards.render import card_for_repo
from synthset.cli import main
from synthset.errors import SynthsetError
from synthset.generation.plan import plan_run
from synthset.generation.runner import generate_run
from synthset.hub.manifest import iter_entries
from synthset.recipe import load_recipe
from synthset.run.paths import RunDir
from synthset.run.published import pattern_matches

REPO_ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_test_token"  # alice's token on the loopback server; alice belongs to org
CONFIGS = [
    {"name": "naive", "strategy": "naive", "images_per_class": 5},
    {"name": "lar", "strategy": "lar", "images_per_class": 2},
]


def _make_run(root: Path, name: str, changes: dict) -> Path:
    base = {**BASE_RECIPE, "name": name, "output_dir": str(root / "runs"), "configs": CONFIGS, "quality": TINY_QUALITY}
    data = deep_update(base, changes)
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    recipe = load_recipe(path)
    plan_run(recipe)
    generate_run(recipe.run_dir)
    build_dataset(recipe.run_dir)
    write_card(recipe.run_dir, license="apache-2.0")
    return Path(recipe.run_dir)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """v1: naive 15 rows in 3 shards, lar 6. v2: another seed; naive in two scale bands of 6 rows, published as
    naive (12), naive_1x (6, band 0) and naive_2x (12): configs sharing files. Every v1 naive path goes."""
    root = tmp_path_factory.mktemp("hub-runs")
    return {
        "v1": _make_run(root, "synth", {}),
        "v2": _make_run(
            root, "synth2", {"seed": 8, "configs": [{**CONFIGS[0], "images_per_class": 2, "bands": 2}, CONFIGS[1]]}
        ),
    }


@pytest.fixture
def hub():
    with HubServer(tree_page_size=2) as server:  # small pages: clients must follow the Link pagination
        yield server


def pull_commits(hub: HubServer, repo_id: str = "org/synth") -> list[tuple[str, int]]:
    """(path, status) of every commit request that reached the server for the repo."""
    return [(p, st) for m, p, st in hub.state.requests if m == "POST" and f"/{repo_id}/commit/" in p]


def hub_env(server: HubServer, home: Path, token: str | None = TOKEN) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(
        HF_ENDPOINT=server.url,
        HF_HUB_DISABLE_XET="1",  # the loopback server speaks the LFS batch API, not Xet
        HF_HOME=str(home),  # its own cache and no stored login
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HF_DATASETS_DISABLE_PROGRESS_BARS="1",
        HF_HUB_DISABLE_TELEMETRY="1",
    )
    if token is not None:
        env["HF_TOKEN"] = token
    return env


def cli(server: HubServer, home: Path, *args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "synthset", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=hub_env(server, home, token),
        timeout=120,
    )


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("synthset: error: ")
    return lines[0].removeprefix("synthset: error: ")


LOAD_SCRIPT = """
import hashlib, json, sys
import datasets
repo, wanted = sys.argv[1], sys.argv[2:]
out = {}
for item in wanted:
    revision, config = item.split("/")
    ds = datasets.load_dataset(repo, config, split="train", revision=revision)
    ds = ds.cast_column("image", datasets.Image(decode=False))
    out[item] = [[row["sample_id"], row["seed"], hashlib.sha256(row["image"]["bytes"]).hexdigest()] for row in ds]
print(json.dumps(out))
"""


def readme_yaml(run_dir: Path) -> dict:
    return yaml.safe_load((run_dir / "dataset" / "README.md").read_text().split("---")[1])


def local_rows(run_dir: Path, config: str) -> list[list]:
    """What load_dataset must give for a config: the files its globs select (sorted per glob), their rows."""
    entry = next(c for c in readme_yaml(run_dir)["configs"] if c["config_name"] == config)
    rows = []
    for pattern in entry["data_files"][0]["path"]:
        for path in sorted(p for p in dataset_files(run_dir) if pattern_matches(pattern, p)):
            table = pq.read_table(run_dir / "dataset" / path, columns=["sample_id", "seed", "image"]).to_pylist()
            rows += [[r["sample_id"], r["seed"], hashlib.sha256(r["image"]["bytes"]).hexdigest()] for r in table]
    return rows


def dataset_files(run_dir: Path) -> dict[str, bytes]:
    root = run_dir / "dataset"
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def published_files(run_dir: Path, repo_id: str) -> dict[str, bytes]:
    """What a push of the run to `repo_id` publishes: dataset/ with the card naming the repo, and the manifest."""
    files = dataset_files(run_dir)
    files["README.md"] = card_for_repo(files["README.md"].decode(), repo_id).encode()
    files["manifest.jsonl"] = (run_dir / ".publish" / repo_id.replace("/", "--") / "manifest.jsonl").read_bytes()
    return files


def parquet_paths(run_dir: Path, config: str = "") -> list[str]:
    """The published Parquet paths (of one config folder), as the manifest and the Hub name them."""
    return sorted(p for p in dataset_files(run_dir) if p.endswith(".parquet") and p.startswith(config))


def lfs_files(run_dir: Path) -> dict[str, int]:
    """sha256 -> size of the files the Hub stores in LFS (Parquet, JPEG and PNG)."""
    return {
        hashlib.sha256(data).hexdigest(): len(data)
        for path, data in dataset_files(run_dir).items()
        if path.endswith((".parquet", ".jpg", ".png"))
    }


# -- the published manifest ------------------------------------------------------------------------
def test_manifest_takes_shard_hashes_from_records_unless_the_file_changed(runs, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(runs["v1"], run)  # copytree breaks the hard links: re-link one shard as build does
    files = {e.path: e for e in iter_entries(RunDir(run))}
    assert set(files) == set(dataset_files(runs["v1"]))
    for path, entry in files.items():
        assert entry.sha256 == hashlib.sha256((run / "dataset" / path).read_bytes()).hexdigest()
        assert entry.bytes == (run / "dataset" / path).stat().st_size
    assert sum(e.rows or 0 for p, e in files.items() if p.startswith("naive/")) == 15
    assert not any(e.shard for e in files.values())  # copies: hashed, not trusted
    assert list(files) == sorted(files, key=lambda p: (p.rpartition("/")[0], p.rpartition("/")[2]))  # by folder

    published = run / "dataset" / parquet_paths(run, "naive")[0]
    shard = next(p for p in (run / "shards").rglob("*.parquet") if p.read_bytes() == published.read_bytes())
    published.unlink()
    os.link(shard, published)
    os.utime(shard.with_suffix(".json"))  # the record is written after its shard
    relative = published.relative_to(run / "dataset").as_posix()
    entry = {e.path: e for e in iter_entries(RunDir(run))}[relative]
    assert entry.shard == shard.relative_to(run / "shards").with_suffix("").as_posix()  # the record's hash

    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))  # changed in place after its record: same inode, same size
    entry = {e.path: e for e in iter_entries(RunDir(run))}[relative]
    assert entry.shard is None and entry.sha256 == hashlib.sha256(data).hexdigest()


# -- the server itself -----------------------------------------------------------------------------
def test_loopback_server_resolve_headers_and_ranges(runs, hub, tmp_path):
    ok(cli(hub, tmp_path, "push", str(runs["v1"]), "--repo", "org/synth", "--tag", "v1.0"))
    path = parquet_paths(runs["v1"], "naive")[0]
    data = (runs["v1"] / "dataset" / path).read_bytes()
    url = f"{hub.url}/datasets/org/synth/resolve/v1.0/{path}"
    with urllib.request.urlopen(urllib.request.Request(url, method="HEAD")) as response:
        headers = response.headers
    tag_commit = hub.state.repos[("dataset", "org/synth")].tags["v1.0"]
    assert headers["X-Repo-Commit"] == tag_commit
    assert headers["X-Linked-Etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert int(headers["X-Linked-Size"]) == int(headers["Content-Length"]) == len(data)
    request = urllib.request.Request(url, headers={"Range": "bytes=4-19"})
    with urllib.request.urlopen(request) as response:
        assert response.status == 206
        assert response.headers["Content-Range"] == f"bytes 4-19/{len(data)}"
        assert response.read() == data[4:20]
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=-8"})) as response:
        assert response.read() == data[-8:]  # the parquet footer read


def _post(url: str, data: bytes, content_type: str, token: str | None = TOKEN) -> int:
    headers = {"Content-Type": content_type, **({"Authorization": f"Bearer {token}"} if token else {})}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers, method="POST")) as r:
            return r.status
    except urllib.error.HTTPError as error:
        return error.code


def test_loopback_server_enforces_the_hubs_per_call_and_repo_limits(runs, tmp_path):
    with HubServer(limits=HubLimits(files_per_folder=10)) as hub:  # fewer than 10 per folder; the root holds 8
        ok(cli(hub, tmp_path, "push", str(runs["v1"]), "--repo", "org/synth"))
        api = f"{hub.url}/api/datasets/org/synth"
        sample = "AAAA"
        files = [{"path": f"x/{i}.txt", "sample": sample, "size": 3} for i in range(257)]
        assert _post(f"{api}/preupload/main", json.dumps({"files": files}).encode(), "application/json") == 413
        assert _post(f"{api}/preupload/main", json.dumps({"files": files[:256]}).encode(), "application/json") == 200
        form = "&".join(f"paths=x{i}" for i in range(1001)).encode()
        assert _post(f"{api}/paths-info/main", form, "application/x-www-form-urlencoded", token=None) == 413
        assert (
            _post(f"{api}/paths-info/main", form[: form.rfind(b"&")], "application/x-www-form-urlencoded", None) == 200
        )

        def commit(paths: list[str]) -> int:
            lines = [{"key": "header", "value": {"summary": "t"}}]
            lines += [{"key": "file", "value": {"path": p, "content": "eHl6", "encoding": "base64"}} for p in paths]
            return _post(f"{api}/commit/main", "\n".join(json.dumps(x) for x in lines).encode(), "application/x-ndjson")

        assert commit([f"many/{i}.txt" for i in range(101)]) == 413  # more operations than one commit takes
        assert commit([f"folder/{i}.txt" for i in range(10)]) == 400  # "< 10k": a folder of exactly 10 is over
        assert commit([f"folder/{i}.txt" for i in range(9)]) == 200
        assert commit(["folder/sub/x.txt"]) == 400  # a sub-folder is an entry too
        readme = json.dumps({"content": "---\nx: " + "a" * 1_000_001 + "\n---\n"}).encode()
        assert _post(f"{hub.url}/api/validate-yaml", readme, "application/json") == 413


# -- push v1, push v2, load each by tag -----------------------------------------------------------------
WANTED = ("v1.0/naive", "v1.0/lar", "v2.0/naive", "v2.0/lar", "v2.0/naive_2x", "v2.0/naive_1x", "main/naive")


def test_push_two_versions_and_load_each_by_tag(runs, hub, tmp_path):
    out = ok(cli(hub, tmp_path, "push", str(runs["v1"]), "--repo", "org/synth", "--tag", "v1.0"))
    assert "9 added, 0 changed, 0 deleted, 0 unchanged; 1 commits on pull request #1, merged as" in out
    assert "tagged v1.0" in out
    out = ok(cli(hub, tmp_path, "push", str(runs["v2"]), "--repo", "org/synth", "--tag", "v2.0"))
    # v2 drops every v1 naive shard (their folder goes in one operation) and changes the rest
    assert "tagged v2.0" in out and " 3 deleted, 0 unchanged; 1 commits on pull request #2" in out

    repo = hub.state.repos[("dataset", "org/synth")]
    assert [status for _, status in pull_commits(hub)] == [200, 200]  # one commit per pull request...
    assert all("create_pr=1" in path for path, _ in pull_commits(hub))  # ...never to main directly
    assert [p.status for p in repo.pulls.values()] == ["merged", "merged"]
    main_history = [repo.commits[repo.branches["main"]]]
    while main_history[-1].parent:
        main_history.append(repo.commits[main_history[-1].parent])
    assert len(main_history) == 3  # initial commit, then one merge commit per version: main never showed half
    for tag, run in (("v1.0", runs["v1"]), ("v2.0", runs["v2"])):
        gitattributes = hub.files("org/synth", "main")[".gitattributes"]
        assert hub.files("org/synth", tag) == {".gitattributes": gitattributes, **published_files(run, "org/synth")}
    assert repo.branches["main"] == repo.tags["v2.0"] != repo.tags["v1.0"]

    reads_from = len(hub.state.requests)
    script = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, "org/synth", *WANTED],
        capture_output=True,
        text=True,
        env=hub_env(hub, tmp_path / "reader", token=None),  # an anonymous reader of a public repo
        timeout=120,
    )
    assert script.returncode == 0, script.stderr
    loaded = json.loads(script.stdout)
    for item in WANTED:
        revision, config = item.split("/")
        assert loaded[item] == local_rows(runs["v1" if revision == "v1.0" else "v2"], config), item
    assert [len(loaded[item]) for item in WANTED] == [15, 6, 12, 6, 12, 6, 12]
    assert loaded["v2.0/naive_1x"] == loaded["v2.0/naive_2x"][:6]  # the 1x scale is the first band
    reads = [path for _, path, _ in hub.state.requests[reads_from:]]
    assert any("/tree/" in path and "cursor=" in path for path in reads)  # datasets followed the tree pages
    assert {row[2] for row in loaded["v1.0/naive"]}.isdisjoint(row[2] for row in loaded["v2.0/naive"])

    versions = ok(cli(hub, tmp_path, "versions", "org/synth")).splitlines()
    rows = {"v1.0": {"lar": 6, "naive": 15}, "v2.0": {"lar": 6, "naive": 12, "naive_1x": 6, "naive_2x": 12}}
    for line, (tag, run, heads) in zip(versions, (("v1.0", "v1", ""), ("v2.0", "v2", "  [head of main]")), strict=True):
        order = [info["config_name"] for info in readme_yaml(runs[run])["dataset_info"]]  # the README's order
        configs = ", ".join(f"{c} {rows[tag][c]} rows" for c in order)
        assert line == f"{tag}  {repo.tags[tag][:12]}  {configs}{heads}"
    # verify follows configs that share files, anonymously
    out = ok(cli(hub, tmp_path, "verify", "org/synth", "--revision", "v2.0", "--run", str(runs["v2"]), token=None))
    assert "naive_1x: train 6 rows" in out and "naive_2x: train 12 rows" in out and "4 configs" in out

    # a version is never moved: pushing other files under v1.0 is refused and changes nothing
    before = dict(repo.branches), dict(repo.tags)
    error = one_error_line(cli(hub, tmp_path, "push", str(runs["v2"]), "--repo", "org/synth", "--tag", "v1.0"))
    assert error.startswith(f"org/synth: tag v1.0 already names commit {repo.tags['v1.0'][:12]} with other files")
    assert (dict(repo.branches), dict(repo.tags)) == before
    # re-running a finished push is a no-op
    assert "already is commit" in ok(
        cli(hub, tmp_path, "push", str(runs["v2"]), "--repo", "org/synth", "--tag", "v2.0")
    )


def test_each_repo_names_itself_and_the_runs_card_is_untouched(runs, hub, tmp_path):
    readme = runs["v1"] / "dataset" / "README.md"
    before = readme.read_bytes()
    for repo in ("org/first", "org/second"):
        ok(cli(hub, tmp_path, "push", str(runs["v1"]), "--repo", repo))
    for repo, other in (("org/first", "org/second"), ("org/second", "org/first")):
        text = hub.files(repo)["README.md"].decode()
        assert f'load_dataset("{repo}", "naive"' in text and other not in text and "ORG/NAME" not in text
    assert readme.read_bytes() == before


def test_repo_ids_are_checked_by_huggingface_hub_before_anything_happens(runs, hub, tmp_path):
    readme = (runs["v1"] / "dataset" / "README.md").read_bytes()
    error = one_error_line(cli(hub, tmp_path, "push", str(runs["v1"]), "--repo", "org/a--b"))
    assert error.startswith("repo: 'org/a--b' is not a Hub repo id: ") and "--" in error
    assert one_error_line(cli(hub, tmp_path, "push", str(runs["v1"]), "--repo", "synth")).startswith(
        "repo: 'synth' is not a Hub repo id"
    )
    assert hub.state.requests == [] and (runs["v1"] / "dataset" / "README.md").read_bytes() == readme


def test_push_to_a_branch_leaves_main_alone(runs, hub, tmp_path):
    args = ("push", str(runs["v1"]), "--repo", "org/synth", "--revision", "staging", "--tag", "v1.0-rc1")
    out = ok(cli(hub, tmp_path, *args))
    assert "to org/synth@staging: 9 added" in out
    repo = hub.state.repos[("dataset", "org/synth")]
    assert list(hub.files("org/synth", "main")) == [".gitattributes"]
    assert repo.branches["staging"] == repo.tags["v1.0-rc1"]
    assert set(hub.files("org/synth", "staging")) == {".gitattributes", *published_files(runs["v1"], "org/synth")}
    versions = ok(cli(hub, tmp_path, "versions", "org/synth"))
    assert versions.strip().endswith("lar 6 rows, naive 15 rows  [head of staging]")


def test_private_repos_stay_private(runs, hub, tmp_path):
    ok(cli(hub, tmp_path, "push", str(runs["v1"]), "--repo", "org/secret", "--private", "--tag", "v1.0"))
    assert hub.state.repos[("dataset", "org/secret")].private
    assert "v1.0" in ok(cli(hub, tmp_path, "versions", "org/secret"))
    error = one_error_line(cli(hub, tmp_path, "versions", "org/secret", token=None))
    assert error == f"org/secret: no such dataset repo on {hub.url} (or it is private and the token cannot see it)"
    form = b"paths=README.md"
    assert (
        _post(f"{hub.url}/api/datasets/org/secret/paths-info/main", form, "application/x-www-form-urlencoded", None)
        == 404
    )
    ok(cli(hub, tmp_path, "push", str(runs["v1"]), "--repo", "org/open"))
    assert (
        _post(f"{hub.url}/api/datasets/org/open/paths-info/main", form, "application/x-www-form-urlencoded", None)
        == 200
    )
    error = one_error_line(cli(hub, tmp_path, "push", str(runs["v2"]), "--repo", "org/open", "--private"))
    assert error == "org/open: the repo exists and is public; --private cannot hide it (change it on the Hub)"


# -- retries, interruptions, races -------------------------------------------------------------------------
def test_conflicts_rate_limits_and_lost_answers_are_retried_without_duplicates(runs, hub, tmp_path):
    hub.state.inject("commit", 409)  # "another commit is in progress"
    hub.state.inject("commit", 429, retry_after=1)
    hub.state.inject("commit", 500, after=True)  # the commit lands, its answer is lost
    hub.state.inject("merge", 503, after=True)
    hub.state.inject("tag", 502, after=True)
    out = ok(cli(hub, tmp_path, "push", str(runs["v1"]), "--repo", "org/synth", "--tag", "v1.0"))
    assert "on pull request #1, merged as" in out
    repo = hub.state.repos[("dataset", "org/synth")]
    assert list(repo.pulls) == [1] and repo.pulls[1].status == "merged"  # one pull request, not two
    assert [st for _, st in pull_commits(hub)] == [409, 429, 500]  # the lost answer was not sent again
    assert hub.state.commits_applied == 2  # the commit and the merge, each once
    assert repo.tags["v1.0"] == repo.branches["main"]
    assert hub.files("org/synth", "v1.0")["README.md"] == published_files(runs["v1"], "org/synth")["README.md"]
    times = {}
    for when, method, path, status in hub.state.timeline:
        if method == "POST" and "/commit/" in path:
            times.setdefault(status, when)
    assert times[500] - times[429] >= 1.0  # Retry-After honoured


# Every endpoint each command calls (a clean push of v1 to a new repo, verify and versions of it), with
# one transient answer each: a rate limit (429 with the Hub's headers) or a 5xx, in turn. The test also
# asserts that the fault was met, so a command that stops calling an endpoint shows up here.
PUSH_ENDPOINTS = [
    *("whoami", "create-repo", "repo-info", "refs", "tree", "discussions", "validate-yaml", "preupload"),
    *("batch", "upload", "commit", "discussion", "merge", "tag"),
]
# (command, endpoint, which of its requests): the first, and the last, which falls inside the libraries' own
# calls (HfFileSystem's opens and range reads, datasets' streamed load, a listing's last page).
READ_ENDPOINTS = [("verify", e, w) for e in ("repo-info", "resolve", "tree", "paths-info") for w in ("first", "last")]
READ_ENDPOINTS += [("versions", "refs", "first"), ("versions", "resolve", "first"), ("versions", "resolve", "last")]
TRANSIENT = (429, 500, 503, 502)


@pytest.mark.parametrize("endpoint", [*PUSH_ENDPOINTS, "tree-page-3"])
def test_one_transient_fault_on_any_endpoint_of_a_push_is_harmless(runs, hub, tmp_path, endpoint):
    if endpoint == "tree-page-3":  # a paged listing fails on its third page: the whole listing is read again
        hub.state.inject("tree", 503, skip=2)
    else:
        hub.state.inject(endpoint, TRANSIENT[PUSH_ENDPOINTS.index(endpoint) % len(TRANSIENT)])
    ok(cli(hub, tmp_path, "push", str(runs["v1"]), "--repo", "org/synth", "--tag", "v1.0"))
    assert hub.state.pending_faults() == {}, f"push never called {endpoint}"
    repo = hub.state.repos[("dataset", "org/synth")]
    assert list(repo.pulls) == [1] and hub.state.commits_applied == 2  # one commit, one merge: nothing twice
    assert repo.tags["v1.0"] == repo.branches["main"]
    assert set(hub.files("org/synth", "v1.0")) == {".gitattributes", *published_files(runs["v1"], "org/synth")}


def endpoints_called(server: HubServer, since: int) -> Counter:
    """How many requests each endpoint got since request number `since`."""
    return Counter(endpoint_of(m, [unquote(p) for p in urlsplit(path).path.split("/")[1:]]) for m, path, _ in
                   server.state.requests[since:])  # fmt: skip


@pytest.fixture(scope="module")
def published(runs, tmp_path_factory):
    """One loopback Hub holding v1 as pushed; what verify and versions say of it without a fault, and how
    many requests each of their endpoints gets (each command with an empty download cache)."""
    commands = {"verify": ("verify", "org/synth", "--revision", "v1.0"), "versions": ("versions", "org/synth")}
    with HubServer(tree_page_size=2) as server:
        ok(
            cli(
                server,
                tmp_path_factory.mktemp("hf-home"),
                "push",
                str(runs["v1"]),
                "--repo",
                "org/synth",
                "--tag",
                "v1.0",
            )
        )
        clean, counts = {}, {}
        for name, args in commands.items():
            since = len(server.state.requests)
            clean[name] = ok(cli(server, tmp_path_factory.mktemp("hf-home"), *args))
            counts[name] = endpoints_called(server, since)
        yield server, commands, clean, counts


@pytest.mark.parametrize(("command", "endpoint", "which"), READ_ENDPOINTS)
def test_one_transient_fault_on_any_endpoint_of_verify_or_versions_is_harmless(
    published, tmp_path, command, endpoint, which
):
    server, commands, clean, counts = published
    status = TRANSIENT[READ_ENDPOINTS.index((command, endpoint, which)) % len(TRANSIENT)]
    server.state.inject(endpoint, status, skip=0 if which == "first" else counts[command][endpoint] - 1)
    try:
        assert ok(cli(server, tmp_path, *commands[command])) == clean[command]  # tmp_path: an empty cache
        assert server.state.pending_faults() == {}, f"{command} never made that request to {endpoint}"
    finally:
        server.state.clear_faults()  # the server is shared: a fault not met must not reach the next test


def test_a_tag_made_by_a_call_whose_answer_was_a_409_is_a_success(runs, hub, tmp_path):
    hub.state.inject("tag", 409, after=True)  # the tag is made; the answer says it exists (a retry raced it)
    out = ok(cli(hub, tmp_path, "push", str(runs["v1"]), "--repo", "org/synth", "--tag", "v1.0"))
    repo = hub.state.repos[("dataset", "org/synth")]
    assert f"tagged v1.0 -> {repo.branches['main'][:12]}" in out and repo.tags["v1.0"] == repo.branches["main"]


def test_giving_up_counts_the_tries_really_made(monkeypatch):
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    from synthset.hub import client

    monkeypatch.setattr(client, "RETRY_ATTEMPTS", 3)
    monkeypatch.setattr(client.time, "sleep", lambda seconds: None)
    request = httpx2.Request("GET", "http://hub.invalid/api/whoami-v2")
    calls = []

    def rate_limited():
        calls.append(1)
        response = httpx2.Response(429, request=request, headers={"Retry-After": "0"})
        raise HfHubHTTPError("429 Too Many Requests", response=response, server_message="slow down")

    with pytest.raises(SynthsetError) as error:
        client.with_retries("whoami", rate_limited)
    assert str(error.value) == "whoami: HTTP 429: slow down (still failing after 3 tries)" and len(calls) == 3
    # a call that is never retried does not claim tries
    with pytest.raises(SynthsetError) as error, client.hub_errors("org/x", None, "http://hub.invalid"):
        rate_limited()
    assert str(error.value) == "org/x: HTTP 429: slow down"


def test_push_killed_between_commits_resumes_and_sends_nothing_twice(runs, hub, tmp_path):
    ok(cli(hub, tmp_path, "push", str(runs["v1"]), "--repo", "org/synth", "--tag", "v1.0"))
    hub.state.hold_commits_after(hub.state.commits_applied)  # the v2 pull request's first commit parks
    process = subprocess.Popen(
        [sys.executable, "-m", "synthset", "push", str(runs["v2"]), "--repo", "org/synth", "--tag", "v2.0"],
        cwd=REPO_ROOT,
        env=hub_env(hub, tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert hub.state.commit_parked.wait(timeout=60), "the push never reached its commit"
    finally:
        process.kill()
        process.wait(timeout=30)
    hub.state.release_held()
    repo = hub.state.repos[("dataset", "org/synth")]
    assert repo.branches["main"] == repo.tags["v1.0"] and "v2.0" not in repo.tags  # main: still v1
    sent = hub.state.put_bytes
    ok(cli(hub, tmp_path, "push", str(runs["v2"]), "--repo", "org/synth", "--tag", "v2.0"))
    assert hub.state.put_bytes == sent  # every LFS object had arrived before the kill: none sent again
    assert hub.files("org/synth", "v2.0") == hub.files("org/synth", "main")
    assert set(hub.files("org/synth", "main")) == {".gitattributes", *published_files(runs["v2"], "org/synth")}


def test_push_killed_mid_upload_resends_only_unfinished_files(runs, hub, tmp_path):
    expected = lfs_files(runs["v1"])
    assert len(expected) == 6  # 4 shards, samples.jpg and the card's clip_scores.png
    hub.state.hold_uploads_after(2)  # two uploads finish; the next ones hang as if the link died
    process = subprocess.Popen(
        [sys.executable, "-m", "synthset", "push", str(runs["v1"]), "--repo", "org/synth", "--tag", "v1.0"],
        cwd=REPO_ROOT,
        env=hub_env(hub, tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert hub.state.upload_parked.wait(timeout=60), "the push never reached its third upload"
    finally:
        process.kill()  # killed mid-upload: no clean shutdown
        process.wait(timeout=30)
    hub.state.release_held()
    finished = {oid for oid, _ in hub.state.uploads}
    assert len(finished) == 2
    assert list(hub.files("org/synth", "main")) == [".gitattributes"]  # nothing half-published
    sent_first = hub.state.put_bytes

    ok(cli(hub, tmp_path, "push", str(runs["v1"]), "--repo", "org/synth", "--tag", "v1.0"))
    stored = Counter(oid for oid, _ in hub.state.uploads)
    assert stored == Counter(list(expected))  # every object stored exactly once over both runs
    resent = hub.state.put_bytes - sent_first
    unfinished = sum(size for oid, size in expected.items() if oid not in finished)
    assert resent == unfinished  # the resumed push sent exactly the files that had not arrived
    assert set(hub.files("org/synth", "v1.0")) == {".gitattributes", *published_files(runs["v1"], "org/synth")}


def test_a_push_racing_another_writer_is_one_clear_line(runs, hub, tmp_path):
    def someone_else_commits(repo):
        hub.state.before_commit = hub.state.before_merge = None
        head = repo.commits[repo.branches["main"]]
        files = {**head.files, "notes.txt": Blob.regular(b"pushed meanwhile %d" % len(repo.commits))}  # new
        repo.branches["main"] = hub.state.new_commit(repo, head.oid, "someone else", "", files).oid

    # main moves just before the pull request is opened: its base is checked by the server (412)
    hub.state.before_commit = someone_else_commits
    error = one_error_line(cli(hub, tmp_path, "push", str(runs["v1"]), "--repo", "org/synth", "--tag", "v1.0"))
    assert error == "org/synth: the branch moved while pushing (another push?); run the push again"
    repo = hub.state.repos[("dataset", "org/synth")]
    assert set(hub.files("org/synth", "main")) == {".gitattributes", "notes.txt"} and not repo.pulls  # theirs
    out = ok(cli(hub, tmp_path, "push", str(runs["v1"]), "--repo", "org/synth", "--tag", "v1.0"))
    assert "kept 1 file on main that synthset did not publish: notes.txt (push with --delete-unpublished" in out
    expected = {".gitattributes", "notes.txt", *published_files(runs["v1"], "org/synth")}  # theirs stays
    assert set(hub.files("org/synth", "main")) == expected

    # main moves while the merge is under way (the Hub's merge takes no parent commit): caught after it
    hub.state.before_merge = someone_else_commits
    error = one_error_line(cli(hub, tmp_path, "push", str(runs["v2"]), "--repo", "org/synth", "--tag", "v2.0"))
    assert (
        error.startswith("org/synth: main at ") and "does not hold exactly the published files after merging" in error
    )
    assert "v2.0" not in repo.tags  # nothing is tagged


def test_a_push_never_deletes_another_writers_files_unless_asked_and_names_them(runs, hub, tmp_path):
    ok(cli(hub, tmp_path, "push", str(runs["v1"]), "--repo", "org/synth", "--tag", "v1.0"))
    repo = hub.state.repos[("dataset", "org/synth")]

    def someone_commits(files: dict[str, Blob]) -> None:
        head = repo.commits[repo.branches["main"]]
        repo.branches["main"] = hub.state.new_commit(repo, head.oid, "someone else", "", {**head.files, **files}).oid

    someone_commits({"other.txt": Blob.regular(b"theirs"), "notes/a.md": Blob.regular(b"theirs too")})
    out = ok(cli(hub, tmp_path, "push", str(runs["v2"]), "--repo", "org/synth", "--tag", "v2.0"))
    assert "kept 2 files on main that synthset did not publish: notes/a.md, other.txt (push with " in out
    v1_only = set(published_files(runs["v1"], "org/synth")) - set(published_files(runs["v2"], "org/synth"))
    deleted = len(v1_only)
    assert f", {deleted} deleted, " in out and v1_only  # v1's own files went: synthset published them
    expected = {".gitattributes", "other.txt", "notes/a.md", *published_files(runs["v2"], "org/synth")}
    assert set(hub.files("org/synth", "v2.0")) == expected
    ok(cli(hub, tmp_path, "verify", "org/synth", "--revision", "v2.0"))  # their notes are not read by any config

    # a file of theirs that a config would load cannot be left in place: refused, nothing committed
    stray = "naive/b0/train-00009-of-00009.parquet"
    someone_commits({stray: repo.commits[repo.tags["v2.0"]].files[parquet_paths(runs["v2"], "naive")[0]]})
    applied = hub.state.commits_applied
    error = one_error_line(cli(hub, tmp_path, "push", str(runs["v1"]), "--repo", "org/synth", "--tag", "v3.0"))
    assert error == (
        f"org/synth: {stray}: on main but not published by synthset, and config naive's data_files "
        "'naive/b0/train-*.parquet' would load it; delete it on the Hub, or push with --delete-unpublished"
    )
    assert hub.state.commits_applied == applied
    out = ok(
        cli(hub, tmp_path, *("push", str(runs["v1"]), "--repo", "org/synth", "--tag", "v3.0", "--delete-unpublished"))
    )
    assert (
        f"deleted 3 files that synthset did not publish (--delete-unpublished): {stray}, notes/a.md, other.txt" in out
    )
    assert set(hub.files("org/synth", "v3.0")) == {".gitattributes", *published_files(runs["v1"], "org/synth")}


# -- tokens ---------------------------------------------------------------------------------------------
def test_missing_or_rejected_token_is_one_clear_line(runs, hub, tmp_path):
    bad = "hf_this_is_not_a_valid_token_0123456789"
    result = cli(hub, tmp_path, "push", str(runs["v1"]), "--repo", "org/synth", token=bad)
    error = one_error_line(result)
    assert error == (f"the Hugging Face token was rejected by {hub.url}: set a valid HF_TOKEN or run `hf auth login`")
    assert bad not in result.stdout + result.stderr
    assert one_error_line(cli(hub, tmp_path, "push", str(runs["v1"]), "--repo", "org/synth", token=None)) == (
        "no Hugging Face token: set HF_TOKEN or run `hf auth login`"
    )
    # reads with a bad token are refused the same way
    assert "token was rejected" in one_error_line(cli(hub, tmp_path, "versions", "org/synth", token=bad))
    assert hub.state.repos == {} and hub.state.uploads == []  # refused before anything was sent


def test_token_never_appears_in_outputs_logs_or_published_files(runs, hub, tmp_path):
    secret = "hf_SecretValue_9f8e7d6c5b4a"
    hub.state.tokens[secret] = "alice"
    results = [
        cli(hub, tmp_path, "-v", "push", str(runs["v1"]), "--repo", "org/synth", "--tag", "v1.0", token=secret),
        cli(hub, tmp_path, "-v", "versions", "org/synth", token=secret),
        cli(hub, tmp_path, "-v", "verify", "org/synth", "--revision", "v1.0", token=secret),
        cli(hub, tmp_path, "verify", "org/synth", "--revision", "v9.9", token=secret),  # an error path too
    ]
    assert [r.returncode for r in results] == [0, 0, 0, 2]
    for result in results:
        assert secret not in result.stdout + result.stderr
    for repo in hub.state.repos.values():
        for commit in repo.commits.values():
            for blob in commit.files.values():
                assert secret.encode() not in hub.state.content(blob)
    for data in dataset_files(runs["v1"]).values():
        assert secret.encode() not in data


# -- verify -----------------------------------------------------------------------------------------------
def test_verify_checks_metadata_footers_and_samples_without_downloading(runs, hub, tmp_path):
    ok(cli(hub, tmp_path, "push", str(runs["v1"]), "--repo", "org/synth", "--tag", "v1.0"))
    commit = hub.state.repos[("dataset", "org/synth")].tags["v1.0"]
    size = sum(len(d) for p, d in published_files(runs["v1"], "org/synth").items() if p != "manifest.jsonl")
    reads_from = len(hub.state.requests)
    out = ok(cli(hub, tmp_path, "verify", "org/synth", "--revision", "v1.0", "--run", str(runs["v1"])))
    assert out.splitlines()[0] == (
        f"verified org/synth@v1.0 (commit {commit[:12]}): 8 files, {size} bytes listed by the Hub, match "
        "manifest.jsonl; 4 Parquet footers read; lar: train 6 rows; naive: train 15 rows"
    )
    parquet = parquet_paths(runs["v1"])
    ranged = [r for r in hub.state.requests[reads_from:] if r[1].split("?")[0].endswith(".parquet")]
    assert {p.split("/resolve/")[1].split("/", 1)[1] for _, p, st in ranged if st == 206} >= set(parquet)
    assert not [r for r in ranged if r[2] == 200]  # no Parquet file was downloaded whole
    # a published manifest that disagrees with the run is caught (here: v1's repo against the v2 run)
    error = one_error_line(cli(hub, tmp_path, "verify", "org/synth", "--revision", "main", "--run", str(runs["v2"])))
    assert error.startswith("org/synth@main: verification failed: ")

    # an extra Parquet file in a globbed folder would be read by load_dataset: caught from the listing
    repo = hub.state.repos[("dataset", "org/synth")]
    head = repo.commits[repo.branches["main"]]
    extra = {**head.files, "naive/b0/train-00009-of-00003.parquet": head.files[parquet_paths(runs["v1"], "naive")[0]]}
    repo.branches["main"] = hub.state.new_commit(repo, head.oid, "extra", "", extra).oid
    error = one_error_line(cli(hub, tmp_path, "verify", "org/synth"))
    assert error.startswith(
        "org/synth@main: verification failed: "
        "naive/b0/train-00009-of-00003.parquet: in the repo but not in the manifest"
    )

    # same size, same metadata, other bytes: only downloading sees it (--sample N, --full)
    victim = parquet_paths(runs["v1"], "naive")[1]
    hub.state.tamper("dataset", "org/synth", victim, revision="v1.0")
    ok(cli(hub, tmp_path, "verify", "org/synth", "--revision", "v1.0"))  # the footer is intact
    error = one_error_line(cli(hub, tmp_path, "verify", "org/synth", "--revision", "v1.0", "--sample", "4"))
    assert (
        error.startswith(f"org/synth@v1.0: verification failed: {victim}: downloaded ") and "the manifest says" in error
    )
    error = one_error_line(cli(hub, tmp_path, "verify", "org/synth", "--revision", "v1.0", "--full"))
    assert error.startswith(f"org/synth@v1.0: verification failed: {victim}: downloaded ")


def test_verify_sample_downloads_and_decodes_random_files(runs, hub, tmp_path):
    ok(cli(hub, tmp_path, "push", str(runs["v1"]), "--repo", "org/synth", "--tag", "v1.0"))
    out = ok(cli(hub, tmp_path, "verify", "org/synth", "--revision", "v1.0", "--sample", "2", "--seed", "3"))
    assert out.strip().splitlines()[-1].startswith("sampled 2 files: downloaded, sha256 checked, ")
    decoded = int(out.strip().splitlines()[-1].split(", ")[-1].split()[0])
    assert decoded in (2 * 6, 6 + 3, 3 + 3, 6 + 6)  # naive shards hold 6, 6, 3 rows; lar's holds 6


def test_versions_names_a_tag_it_cannot_read(runs, hub, tmp_path):
    ok(cli(hub, tmp_path, "push", str(runs["v1"]), "--repo", "org/synth", "--tag", "v1.0"))
    repo = hub.state.repos[("dataset", "org/synth")]
    head = repo.commits[repo.branches["main"]]
    broken = {p: b for p, b in head.files.items() if p != "README.md"}
    repo.tags["v0.9"] = hub.state.new_commit(repo, head.oid, "no card", "", broken).oid
    lines = ok(cli(hub, tmp_path, "versions", "org/synth")).splitlines()
    assert lines[0] == f"v0.9  {repo.tags['v0.9'][:12]}  cannot be read: no README.md"
    assert lines[1] == f"v1.0  {repo.tags['v1.0'][:12]}  lar 6 rows, naive 15 rows  [head of main]"


def test_push_needs_a_rendered_card(tmp_path, capsys, write_recipe):
    recipe = load_recipe(write_recipe({"classes": {"set": "imagenet-1k", "limit": 1}}))
    plan_run(recipe)
    generate_run(recipe.run_dir)
    build_dataset(recipe.run_dir)
    capsys.readouterr()
    assert main(["push", str(recipe.run_dir), "--repo", "org/x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"synthset: error: {recipe.run_dir}/dataset/README.md: not this run's dataset card; "
        f"run `synthset card {recipe.run_dir}` first"
    )
