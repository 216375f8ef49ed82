"""Publishing on the Hugging Face Hub: `push`, `versions` and `verify`, every call through `HfApi`.

push: `dataset/` (Parquet shards, README.md card, recipe.lock.yaml, samples.jpg, and a `manifest.json` of
  every file's sha256 and rows) goes up as ONE commit made with `HfApi.create_commit`: additions, changed
  files and deletions of files the new version no longer has, with `parent_commit` set to the head the
  diff was computed against. A reader of the branch therefore sees the previous version or the new one,
  never a mix, and a concurrent push fails instead of being merged blindly. Then the tag is created on
  that commit. Tags are versions: an existing tag is never moved.
  Resuming: LFS content is uploaded before the commit, and the Hub's LFS batch API answers "already
  have it" for every object it stores (keyed by sha256), so re-running an interrupted push re-sends only
  the files whose upload did not finish; files already committed on the branch are not even offered.
  The sha256 of the shards comes from the shard records (`synthset build` verified them), so a push does
  not re-hash hundreds of GB; other files are hashed.
versions: the repo's tags, each with its configs and row counts read from that tag's README.
verify: downloads every file of a revision afresh, checks sha256 and size against the manifest (and,
  given a run directory, the manifest against the run), then loads every config with
  `datasets.load_dataset(..., revision=)` and checks its rows against the manifest and `dataset_info`.

The token comes from where huggingface_hub looks (`HF_TOKEN`, then the stored login); it is never
printed, and every error is turned into one line with any token scrubbed from it. `HF_ENDPOINT` (a
mirror, or the tests' loopback server) is read by huggingface_hub and datasets at import time; against a
server without Xet storage set `HF_HUB_DISABLE_XET=1` too, before the process starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthset.cards.render import README, REPO_PLACEHOLDER, card_marker
from synthset.errors import SynthsetError, first_line
from synthset.fsutil import sha256_file, write_text_atomic
from synthset.run.lock import read_lock_data
from synthset.run.paths import RunDir

MANIFEST_FILE = "manifest.json"
SAMPLES_FILE = "samples.jpg"
REPO_TYPE = "dataset"
KEEP_ON_HUB = (".gitattributes",)  # made by the Hub with the repo; never ours to delete
REPO_ID_PATTERN = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
MAX_FILES_PER_COMMIT = 25_000  # create_commit's limit on LFS files; the Hub advises < 100k files per repo
NO_TOKEN = "no Hugging Face token: set HF_TOKEN or run `hf auth login`"


def _token_rejected(endpoint: str) -> str:
    return f"the Hugging Face token was rejected by {endpoint}: set a valid HF_TOKEN or run `hf auth login`"


# -- errors and the API client ----------------------------------------------------------------------
@contextlib.contextmanager
def _hub_errors(where: str, token: str | None, endpoint: str) -> Iterator[None]:
    """Turn whatever a Hub call raises into one SynthsetError line, with the token scrubbed out."""
    try:
        from httpx2 import HTTPError  # huggingface_hub 2.x's HTTP client: its transport errors are not OSErrors
    except ImportError:  # pragma: no cover - older huggingface_hub
        HTTPError = OSError  # noqa: N806
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    def fail(message: str) -> SynthsetError:
        text = f"{where}: {message}"
        if token:
            text = text.replace(token, "<token>")
        return SynthsetError(" ".join(text.split()))

    try:
        yield
    except SynthsetError as error:
        raise fail(str(error).removeprefix(f"{where}: ")) from None
    except RevisionNotFoundError:
        raise fail("no such revision") from None
    except RepositoryNotFoundError:
        raise fail(f"no such dataset repo on {endpoint} (or it is private and the token cannot see it)") from None
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else None
        if status == 401:
            raise SynthsetError(_token_rejected(endpoint) if token else f"{where}: {NO_TOKEN}") from None
        if status == 412:
            raise fail("the branch moved while pushing (another push?); run the push again") from None
        detail = error.server_message or first_line(error)
        raise fail(f"HTTP {status}: {first_line(Exception(detail))}") from None
    except LocalEntryNotFoundError as error:  # hf_hub_download could not reach the server: not a missing file
        raise fail(f"cannot reach {endpoint}: {first_line(error)}") from None
    except EntryNotFoundError as error:
        raise fail(f"file not found: {first_line(error)}") from None
    except RuntimeError as error:
        # a failed LFS upload: huggingface_hub wraps the HTTP error in "Error while uploading '<path>'"
        if not isinstance(error.__cause__, HTTPError):
            raise
        raise fail(f"{first_line(error)} ({first_line(error.__cause__)})") from None
    except ValueError as error:
        if "metadata" not in str(error):  # README metadata the server's validate-yaml refused
            raise
        raise fail(first_line(error) + " " + " ".join(str(error).splitlines()[1:2])) from None
    except HTTPError as error:  # connection refused, timeouts, DNS
        raise fail(f"cannot reach {endpoint}: {first_line(error)}") from None


def _client(require_token: bool) -> tuple[Any, str | None]:
    """An HfApi with the user's token (None for anonymous reads); refuses early when one is required."""
    from huggingface_hub import HfApi, get_token

    token = get_token()
    if require_token and not token:
        raise SynthsetError(NO_TOKEN)
    api = HfApi(token=token or False)
    return api, token


def _check_repo_id(repo_id: str) -> None:
    if not REPO_ID_PATTERN.match(repo_id):
        raise SynthsetError(f"repo: {repo_id!r} is not a Hub repo id of the form org/name")


# -- the published manifest -------------------------------------------------------------------------
def local_files(dataset_dir: Path) -> list[str]:
    """Every file of dataset/ to publish (relative POSIX paths), skipping temp files and hidden folders."""
    files = []
    for path in sorted(p for p in dataset_dir.rglob("*") if p.is_file()):
        relative = path.relative_to(dataset_dir)
        if any(part.startswith(".") for part in relative.parts):
            continue
        files.append(relative.as_posix())
    return files


def build_manifest(run: RunDir) -> dict[str, Any]:
    """manifest.json: sha256, bytes and rows of every published file (but itself), plus the run's hashes.

    A Parquet file that is a hard link of a recorded shard, not modified since its record was written,
    takes the record's sha256 (which `synthset build` checked): a push does not re-read hundreds of GB
    before uploading them. Anything else is hashed here.
    """
    import pyarrow.parquet as pq

    from synthset.run.records import read_records

    dataset_dir = run.dataset_dir
    by_inode = {}
    for record in read_records(run).values():
        source = run.shard_file(record.shard)
        if source.is_file():
            stat = source.stat()
            if stat.st_mtime <= run.record_file(record.shard).stat().st_mtime:
                by_inode[(stat.st_dev, stat.st_ino)] = record
    entries = []
    for relative in local_files(dataset_dir):
        if relative == MANIFEST_FILE:
            continue
        path = dataset_dir / relative
        stat = path.stat()
        record = by_inode.get((stat.st_dev, stat.st_ino))
        entry: dict[str, Any] = {"path": relative, "bytes": stat.st_size}
        if record is not None and record.bytes == stat.st_size:
            entry.update(sha256=record.sha256, rows=record.rows, shard=record.shard)
        else:
            entry["sha256"] = sha256_file(path)
            if relative.endswith(".parquet"):
                entry["rows"] = pq.ParquetFile(path).metadata.num_rows
        entries.append(entry)
    lock = read_lock_data(run)
    return {
        "format": 1,
        "name": lock["recipe"]["name"],
        "provenance": lock["provenance"],
        "generation_key": lock.get("generation_key"),
        "files": entries,
    }


def _git_blob_oid(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _same_content(remote: Any, entry: dict[str, Any], local: Path) -> bool:
    """Whether a remote RepoFile holds exactly the local file (LFS by sha256, regular by git blob id)."""
    if remote.size != entry["bytes"]:
        return False
    if remote.lfs is not None:
        return remote.lfs.sha256 == entry["sha256"]
    return remote.blob_id == _git_blob_oid(local)


# -- push -------------------------------------------------------------------------------------------
@dataclass
class PushResult:
    repo_id: str
    branch: str
    commit: str
    tag: str | None
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    already_published: bool = False


def _check_publishable(run: RunDir, dataset_dir: Path) -> None:
    """Only a rendered card goes out, and only as many files as one commit can hold."""
    lock = read_lock_data(run)
    readme = dataset_dir / README
    if not readme.is_file():
        raise SynthsetError(f"{run}: no {dataset_dir.name}/; run `synthset build` and `synthset card` first")
    text = readme.read_text(encoding="utf-8")
    if card_marker(lock["provenance"]) not in text or not (dataset_dir / SAMPLES_FILE).is_file():
        raise SynthsetError(f"{readme}: not this run's dataset card; run `synthset card {run}` first")
    files = local_files(dataset_dir)
    if len(files) > MAX_FILES_PER_COMMIT:
        raise SynthsetError(
            f"{dataset_dir}: {len(files)} files, more than one Hub commit takes ({MAX_FILES_PER_COMMIT}); "
            "plan the run with a larger storage.shard_size"
        )


def check_screened(run: RunDir, allow_unscreened: bool) -> None:
    """Images no NSFW checker saw are published only when the user says so (the card warns in its first lines)."""
    quality = (read_lock_data(run).get("recipe") or {}).get("quality") or {}
    if quality.get("checker") or allow_unscreened:
        return
    raise SynthsetError(
        f"{run}: its images were never screened for NSFW content (the recipe has no quality.checker); "
        "add a quality section and generate again, or push with --allow-unscreened"
    )


def _fill_in_repo(dataset_dir: Path, repo_id: str) -> None:
    """A card rendered without --repo names ORG/NAME in its examples; the push names the real repo."""
    readme = dataset_dir / README
    text = readme.read_text(encoding="utf-8")
    if REPO_PLACEHOLDER in text:
        write_text_atomic(readme, text.replace(REPO_PLACEHOLDER, repo_id))


def _remote_files(api: Any, repo_id: str, revision: str) -> dict[str, Any]:
    from huggingface_hub.hf_api import RepoFile

    tree = api.list_repo_tree(repo_id, repo_type=REPO_TYPE, revision=revision, recursive=True)
    return {entry.path: entry for entry in tree if isinstance(entry, RepoFile)}


def _matches(remote: dict[str, Any], entries: dict[str, dict[str, Any]], dataset_dir: Path) -> bool:
    ours = {p for p in remote if p not in KEEP_ON_HUB}
    return ours == set(entries) and all(_same_content(remote[p], entries[p], dataset_dir / p) for p in entries)


def _operations(
    remote: dict[str, Any], entries: dict[str, dict[str, Any]], dataset_dir: Path, result: PushResult
) -> list[Any]:
    """The commit that turns the branch into dataset/: add new and changed files, delete what is gone.

    Unchanged files are left out, so a re-run offers the Hub nothing it already has on the branch. The
    sha256 of each addition is set from the manifest, so huggingface_hub does not hash it again.
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    operations: list[Any] = []
    for path, entry in entries.items():
        if path in remote and _same_content(remote[path], entry, dataset_dir / path):
            result.unchanged.append(path)
            continue
        (result.changed if path in remote else result.added).append(path)
        operation = CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(dataset_dir / path))
        operation.upload_info.sha256 = bytes.fromhex(entry["sha256"])
        operations.append(operation)
    for path in sorted(set(remote) - set(entries) - set(KEEP_ON_HUB)):
        result.deleted.append(path)
        operations.append(CommitOperationDelete(path_in_repo=path))
    return operations


def push_dataset(
    run_dir: str | Path | RunDir,
    repo_id: str,
    private: bool = False,
    tag: str | None = None,
    branch: str = "main",
    num_threads: int = 5,
    allow_unscreened: bool = False,
) -> PushResult:
    """Publish `RUN/dataset/` to `repo_id` as one commit on `branch`, then tag it."""
    run = RunDir.at(run_dir)
    dataset_dir = run.dataset_dir
    _check_repo_id(repo_id)
    _check_publishable(run, dataset_dir)
    check_screened(run, allow_unscreened)
    api, token = _client(require_token=True)
    with _hub_errors(repo_id, token, api.endpoint):
        api.whoami()  # a rejected token fails here, before anything is hashed or uploaded
        _fill_in_repo(dataset_dir, repo_id)
        manifest = build_manifest(run)
        write_text_atomic(dataset_dir / MANIFEST_FILE, json.dumps(manifest, indent=1) + "\n")
        entries = {e["path"]: e for e in manifest["files"]}
        entries[MANIFEST_FILE] = {
            "path": MANIFEST_FILE,
            "bytes": (dataset_dir / MANIFEST_FILE).stat().st_size,
            "sha256": sha256_file(dataset_dir / MANIFEST_FILE),
        }
        api.create_repo(repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True)
        if branch != "main":
            api.create_branch(repo_id, branch=branch, repo_type=REPO_TYPE, exist_ok=True)
        if tag is not None:
            tags = {t.name: t.target_commit for t in api.list_repo_refs(repo_id, repo_type=REPO_TYPE).tags}
            if tag in tags:
                if _matches(_remote_files(api, repo_id, tags[tag]), entries, dataset_dir):
                    return PushResult(repo_id, branch, tags[tag], tag, already_published=True)
                raise SynthsetError(
                    f"tag {tag} already names commit {tags[tag][:12]} with other files; "
                    "a published version never changes: push under a new tag"
                )
        info = api.repo_info(repo_id, repo_type=REPO_TYPE, revision=branch)
        if private and not info.private:
            raise SynthsetError("the repo exists and is public; --private cannot hide it (change it on the Hub)")
        result = PushResult(repo_id, branch, info.sha, tag)
        operations = _operations(_remote_files(api, repo_id, info.sha), entries, dataset_dir, result)
        if operations:
            commit = api.create_commit(
                repo_id,
                operations,
                repo_type=REPO_TYPE,
                revision=branch,
                parent_commit=info.sha,  # the branch must still be where the diff was made
                num_threads=num_threads,
                commit_message=f"synthset: publish {manifest['name']}" + (f" {tag}" if tag else ""),
                commit_description=f"provenance {manifest['provenance']}; {len(entries)} files",
            )
            result.commit = commit.oid
        if tag is not None:
            api.create_tag(repo_id, tag=tag, revision=result.commit, repo_type=REPO_TYPE, tag_message=tag)
    return result


# -- versions ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Version:
    tag: str
    commit: str
    rows: dict[str, dict[str, int]]  # config -> split -> rows
    branches: tuple[str, ...]  # branches whose head is this commit


def _natural_key(text: str) -> list[Any]:
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)]


def rows_from_card(card_data: dict[str, Any]) -> dict[str, dict[str, int]]:
    """config -> split -> num_examples, from `dataset_info` (a list of configs, or one mapping)."""
    infos = card_data.get("dataset_info") or []
    infos = [infos] if isinstance(infos, dict) else infos
    return {
        info.get("config_name", "default"): {s["name"]: int(s.get("num_examples", 0)) for s in info.get("splits", [])}
        for info in infos
    }


def list_versions(repo_id: str) -> list[Version]:
    """Every tag of the dataset repo, oldest name first (v1.0 < v2.0 < v10.0), with its configs' rows."""
    from huggingface_hub import DatasetCard

    _check_repo_id(repo_id)
    api, token = _client(require_token=False)
    with _hub_errors(repo_id, token, api.endpoint):
        refs = api.list_repo_refs(repo_id, repo_type=REPO_TYPE)
        versions = []
        for ref in sorted(refs.tags, key=lambda r: _natural_key(r.name)):
            readme = api.hf_hub_download(repo_id, README, repo_type=REPO_TYPE, revision=ref.target_commit)
            branches = tuple(b.name for b in refs.branches if b.target_commit == ref.target_commit)
            rows = rows_from_card(DatasetCard.load(readme).data.to_dict())
            versions.append(Version(ref.name, ref.target_commit, rows, branches))
    return versions


# -- verify -----------------------------------------------------------------------------------------
@dataclass
class VerifyReport:
    repo_id: str
    revision: str
    commit: str
    files: int
    bytes: int
    rows: dict[str, dict[str, int]]  # config -> split -> rows loaded


def _download_and_check(api: Any, repo_id: str, commit: str, entries: dict[str, dict[str, Any]]) -> list[str]:
    """Fetch every file afresh (a cached copy proves nothing about the server) and compare it."""
    problems = []
    for path, entry in entries.items():
        local = Path(api.hf_hub_download(repo_id, path, repo_type=REPO_TYPE, revision=commit, force_download=True))
        size, digest = local.stat().st_size, sha256_file(local)
        if size != entry["bytes"] or digest != entry["sha256"]:
            problems.append(
                f"{path}: downloaded {size} bytes with sha256 {digest[:16]}..., the manifest says "
                f"{entry['bytes']} bytes with sha256 {entry['sha256'][:16]}..."
            )
    return problems


def _check_listing(remote: dict[str, Any], entries: dict[str, dict[str, Any]]) -> list[str]:
    problems = [f"{p}: in the manifest but not in the repo" for p in entries if p not in remote]
    problems += [
        f"{p}: a data file in the repo that the manifest does not list"
        for p in remote
        if p.endswith(".parquet") and p not in entries
    ]
    for path, entry in entries.items():
        lfs = getattr(remote.get(path), "lfs", None)
        if lfs is not None and lfs.sha256 != entry["sha256"]:
            problems.append(
                f"{path}: the Hub lists sha256 {lfs.sha256[:16]}..., the manifest {entry['sha256'][:16]}..."
            )
    return problems


def _check_against_run(run: RunDir, entries: dict[str, dict[str, Any]]) -> list[str]:
    ours = {e["path"]: e for e in build_manifest(run)["files"] if e["path"].endswith(".parquet")}
    problems = [f"{p}: in the run but not published" for p in ours if p not in entries]
    problems += [
        f"{p}: published sha256 {entries[p]['sha256'][:16]}... differs from the run's {e['sha256'][:16]}..."
        for p, e in ours.items()
        if p in entries and entries[p]["sha256"] != e["sha256"]
    ]
    return problems


def _load_and_count(
    repo_id: str, commit: str, card: dict[str, Any], entries: dict[str, dict[str, Any]], token: str | None
) -> tuple[dict[str, dict[str, int]], list[str]]:
    """load_dataset every config by commit; rows must match the manifest and dataset_info."""
    import datasets

    from synthset.cards.stats import config_data_files

    declared = rows_from_card(card)
    loaded: dict[str, dict[str, int]] = {}
    problems = []
    with tempfile.TemporaryDirectory(prefix="synthset-verify-") as cache_dir:
        for config, splits in config_data_files(card).items():
            try:
                dataset = datasets.load_dataset(
                    repo_id,
                    config,
                    revision=commit,
                    token=token,
                    cache_dir=cache_dir,
                    download_mode="reuse_cache_if_exists",
                )
            except Exception as error:  # noqa: BLE001 - a dataset that does not load fails verification
                problems.append(f"load_dataset({repo_id!r}, {config!r}) failed: {first_line(error)}")
                continue
            loaded[config] = {split: dataset[split].num_rows for split in dataset}
            for split, files in splits.items():
                expected = sum(entries.get(f, {}).get("rows") or 0 for f in files)
                got = loaded[config].get(split)
                if got != expected or declared.get(config, {}).get(split) != expected:
                    problems.append(
                        f"{config}/{split}: load_dataset gives {got} rows, the manifest {expected}, "
                        f"dataset_info {declared.get(config, {}).get(split)}"
                    )
    return loaded, problems


def verify_repo(repo_id: str, revision: str = "main", run_dir: Path | None = None) -> VerifyReport:
    """Check a published revision end to end; any problem is one SynthsetError line (first of N)."""
    from huggingface_hub import DatasetCard
    from huggingface_hub.errors import EntryNotFoundError

    _check_repo_id(repo_id)
    api, token = _client(require_token=False)
    where = f"{repo_id}@{revision}"
    with _hub_errors(where, token, api.endpoint):
        commit = api.dataset_info(repo_id, revision=revision).sha
        try:
            manifest_path = api.hf_hub_download(
                repo_id, MANIFEST_FILE, repo_type=REPO_TYPE, revision=commit, force_download=True
            )
        except EntryNotFoundError:
            raise SynthsetError(f"{where}: no {MANIFEST_FILE}; it was not published by `synthset push`") from None
        entries = {e["path"]: e for e in json.loads(Path(manifest_path).read_text(encoding="utf-8"))["files"]}
        problems = _check_listing(_remote_files(api, repo_id, commit), entries)
        problems += _download_and_check(api, repo_id, commit, entries)
        if run_dir is not None:
            problems += _check_against_run(RunDir.at(run_dir), entries)
        card = DatasetCard.load(
            api.hf_hub_download(repo_id, README, repo_type=REPO_TYPE, revision=commit)
        ).data.to_dict()
    rows: dict[str, dict[str, int]] = {}
    if not problems:  # load only what is known to be intact: a corrupt shard may not even parse
        rows, load_problems = _load_and_count(repo_id, commit, card, entries, token)
        problems += load_problems
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise SynthsetError(f"{where}: verification failed: {problems[0]}{more}")
    size = sum(e["bytes"] for e in entries.values())
    return VerifyReport(repo_id, revision, commit, len(entries), size, rows)
