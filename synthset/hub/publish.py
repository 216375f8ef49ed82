"""`synthset push`: publish `RUN/dataset/` as a new version in many commits that readers never see half-made.

A version of 6x ImageNet is ~12k files and ~700 GB: far more than one commit should carry (the Hub
advises 50-100 files per commit, and a commit request times out after 60 s). So a push is:

1. Stage the files that are specific to the target repo, under `RUN/.publish/<org>--<name>/`: the card
   with this repo's id in it (`cards.card_for_repo`; the run's own README is never rewritten) and
   `manifest.jsonl` (size, sha256 and rows of every file, the README as published included).
2. Diff against the target branch. If it already holds exactly these files, only the tag is missing.
3. Otherwise open a pull request on the branch (`create_commit(create_pr=True)` with the first batch of
   changes, `parent_commit` = the branch head: the base is checked by the server) and add the rest in
   commits of at most `FILES_PER_COMMIT` operations to its ref `refs/pr/N`. Readers of the branch and of
   every tag see none of it. A removed folder is one `deletedFolder` operation.
4. When the pull request holds exactly the manifest's files, and the branch is still at the base it was
   opened on, merge it: the branch moves to the new version in one step. Then create the tag on the
   merged commit. A tag is a version: an existing one is never moved.

Resuming: the pull request's title names the manifest's sha256 and the base commit, so a rerun finds it
and commits only what it lacks. LFS content is addressed by sha256: huggingface_hub's preupload and the
LFS batch API skip what the Hub already stores, so no byte is sent twice. A rerun after the merge finds
the branch at the new version and only tags it. If the branch moved meanwhile (another push), the push
stops with one line; a rerun closes the stale pull request and opens a new one on the new head, again
without re-sending content.

Why a pull request and not a staging branch: it is the Hub's documented way to stage changes and apply
them to a branch in one step (`datasets`' own multi-commit `push_to_hub(create_pr=True)` stages the same
way), and `merge_pull_request` is part of the public API. Moving `main` onto a staging branch needs the
`overwrite` flag of the branch endpoint, which huggingface_hub does not expose and which is not
documented for `main`. What is not documented for merges either, and is therefore checked around it:
whether the Hub squashes or merges (the branch must hold exactly the manifest afterwards, whichever),
and what happens if the branch moved (refused before merging; re-checked after).

A run on an object store keeps its Parquet files there: a commit's files are fetched `FETCH_GROUP` at a
time into the push's staging folder, uploaded (`preupload_lfs_files`, which sends only what the Hub lacks)
and removed before the commit that references them, so scratch never holds more than a few files.

Nothing here depends on whether huggingface_hub moves the bytes through Xet or LFS: the plan compares
sizes and the sha256 that the Hub lists for both (`RepoFile.lfs.sha256`), and commits reference content
by sha256 either way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from synthset.cards.grid import SAMPLES_FILE
from synthset.cards.render import README, card_for_repo, card_marker
from synthset.cards.stats import config_patterns
from synthset.errors import HubError
from synthset.fsutil import write_text_atomic
from synthset.hub.client import NOT_CONFLICTS, REPO_TYPE, check_repo_id, client, hub_errors, with_retries
from synthset.hub.manifest import MANIFEST_FILE, Entry, read_manifest, write_manifest
from synthset.recipe import Recipe
from synthset.run import objects
from synthset.run.hub_limits import FILES_PER_COMMIT, FILES_PER_REPO
from synthset.run.lock import Lock, read_lock
from synthset.run.paths import RunDir
from synthset.run.published import pattern_matches

KEEP_ON_HUB = (".gitattributes",)  # made by the Hub with the repo; never ours to delete
STAGE_DIR = ".publish"
FETCHED_DIR = ".fetched"  # in the stage folder: an object-store run's files, held while they are uploaded
FETCH_GROUP = 8  # files fetched from an object store at once: scratch holds this many data files at most
LAST = (README, MANIFEST_FILE)  # committed last: the staged tree describes itself only once complete

Remote = dict[str, tuple[int, str | None, str]]  # path -> (size, LFS sha256 or None, git blob id)


@dataclass
class PushResult:
    repo_id: str
    branch: str
    commit: str
    tag: str | None
    added: int = 0
    changed: int = 0
    deleted: int = 0
    unchanged: int = 0
    commits: int = 0  # commits made by this run (a resumed push makes only the missing ones)
    pull_request: int | None = None
    already_published: bool = False  # the tag already named exactly these files
    kept: list[str] = field(default_factory=list)  # files on the branch synthset never published: left alone
    deleted_unpublished: list[str] = field(default_factory=list)  # such files deleted (--delete-unpublished)


def git_blob_oid(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def remote_files(api: Any, repo_id: str, revision: str) -> Remote:
    """Every file of a revision, compactly: (size, LFS sha256, git blob id). Pages of the tree listing."""
    from huggingface_hub.hf_api import RepoFile

    tree = api.list_repo_tree(repo_id, repo_type=REPO_TYPE, revision=revision, recursive=True)
    return {
        e.path: (e.size, e.lfs.sha256 if e.lfs is not None else None, e.blob_id)
        for e in tree
        if isinstance(e, RepoFile)
    }


def same_content(remote: tuple[int, str | None, str], entry: Entry, local: Path) -> bool:
    """Whether a remote file holds exactly the local one: by sha256 for LFS (and Xet) files, by git blob
    id for regular ones (those are small: the Hub stores files over 10 MB or binary in LFS)."""
    size, sha256, blob_id = remote
    if size != entry.bytes:
        return False
    if sha256 is not None:
        return sha256 == entry.sha256
    return local.is_file() and blob_id == git_blob_oid(local)  # a file left in the store is LFS: sent again


@dataclass
class Staged:
    """What this push publishes: the manifest's entries and where each file's bytes are."""

    entries: list[Entry]
    local: dict[str, Path]  # the paths staged for this repo (README, manifest); the rest are in dataset/
    dataset_dir: Path
    manifest_sha256: str
    name: str

    run: RunDir | None = None

    def path_of(self, path: str) -> Path:
        return self.local.get(path, self.dataset_dir / path)

    def in_store(self, path: str) -> bool:
        """Whether the file's bytes are in the run's object store (fetched a few at a time to be uploaded)."""
        return self.run is not None and path not in self.local and objects.in_store(self.run, self.path_of(path))

    def fetch(self, paths: list[str]) -> list[Path]:
        """Fetch files from the store into the push's staging folder, at once; `release_fetched` removes them."""
        assert self.run is not None
        targets = [self.local[README].parent / FETCHED_DIR / path for path in paths]
        objects.fetch(self.run, [self.path_of(path) for path in paths], targets)
        return targets


def check_publishable(run: RunDir, lock: Lock) -> None:
    """Only this run's rendered card goes out (never build's stub, nor a card rendered for another lock)."""
    readme = run.dataset_readme
    if not readme.is_file():
        raise HubError(f"{run}: no {run.dataset_dir.name}/; run `synthset build` and `synthset card` first")
    text = readme.read_text(encoding="utf-8")
    if card_marker(lock.provenance) not in text or not (run.dataset_dir / SAMPLES_FILE).is_file():
        raise HubError(f"{readme}: not this run's dataset card; run `synthset card {run}` first")


def check_screened(run: RunDir, recipe: Recipe, allow_unscreened: bool) -> None:
    """Images no NSFW checker saw are published only when the user says so (the card warns in its first lines)."""
    if recipe.screened or allow_unscreened:
        return
    raise HubError(
        f"{run}: its images were never screened for NSFW content (the recipe has no quality.checker); "
        "add a quality section and generate again, or push with --allow-unscreened"
    )


def stage(run: RunDir, lock: Lock, repo_id: str) -> Staged:
    """Write the README as published to `repo_id` and the manifest under RUN/.publish/, and read them back."""
    target = run.root / STAGE_DIR / repo_id.replace("/", "--")
    target.mkdir(parents=True, exist_ok=True)
    readme = target / README
    write_text_atomic(readme, card_for_repo(run.dataset_readme.read_text(encoding="utf-8"), repo_id))
    summary = write_manifest(run, lock, target / MANIFEST_FILE, {README: readme})
    with open(summary.path, encoding="utf-8") as lines:
        head, listed = read_manifest(lines)
        entries = list(listed)
    entries.append(Entry(MANIFEST_FILE, summary.path.stat().st_size, summary.sha256))
    if len(entries) + len(KEEP_ON_HUB) > FILES_PER_REPO:
        raise HubError(
            f"{run.dataset_dir}: {len(entries)} files, more than the Hub's {FILES_PER_REPO} per repo; plan the "
            "run with a larger storage.shard_size"
        )
    local = {README: readme, MANIFEST_FILE: summary.path}
    return Staged(entries, local, run.dataset_dir, summary.sha256, head["name"], run)


class ChangeCounts(TypedDict):
    """Files a push adds, changes, deletes and leaves unchanged (PushResult's fields of the same names)."""

    added: int
    changed: int
    deleted: int
    unchanged: int


def parent_folders(paths: Iterable[str]) -> set[str]:
    return {"/".join(p.split("/")[:i]) for p in paths for i in range(1, p.count("/") + 1)}


def differences(
    remote: Remote, staged: Staged, keep: frozenset[str] = frozenset()
) -> tuple[list[tuple[str, str]], ChangeCounts]:
    """The operations that turn `remote` into the staged files, in commit order, and their counts.

    ("folder", path) deletes a folder none of whose files is published any more (one operation);
    ("delete", path) a file; ("add", path) a new or changed file. Unchanged files are left out, so a
    rerun offers the Hub nothing it already has. The paths in `keep` (files synthset did not publish)
    are never deleted, nor is a folder that holds one.
    """
    wanted = {e.path: e for e in staged.entries}
    folders = parent_folders(wanted) | parent_folders(keep)
    counts: ChangeCounts = {"added": 0, "changed": 0, "deleted": 0, "unchanged": 0}
    removed_folders: set[str] = set()
    deletes: list[tuple[str, str]] = []
    for path in sorted(set(remote) - set(wanted) - set(KEEP_ON_HUB) - keep):
        counts["deleted"] += 1
        parts = path.split("/")
        gone = next(("/".join(parts[:i]) for i in range(1, len(parts)) if "/".join(parts[:i]) not in folders), None)
        if gone is None:
            deletes.append(("delete", path))
        elif gone not in removed_folders:
            removed_folders.add(gone)
            deletes.append(("folder", gone))
    adds = []
    for path, entry in wanted.items():
        if path in remote and same_content(remote[path], entry, staged.path_of(path)):
            counts["unchanged"] += 1
            continue
        if path in remote:
            counts["changed"] += 1
        else:
            counts["added"] += 1
        adds.append(("add", path))
    adds.sort(key=lambda op: (op[1] in LAST, LAST.index(op[1]) if op[1] in LAST else 0, op[1]))
    return [*deletes, *adds], counts


def published_by_synthset(api: Any, repo_id: str, revision: str) -> set[str]:
    """The paths that the `manifest.jsonl` at `revision` lists: what an earlier synthset push published."""
    from huggingface_hub.errors import EntryNotFoundError

    try:
        path = api.hf_hub_download(repo_id, MANIFEST_FILE, repo_type=REPO_TYPE, revision=revision)
    except EntryNotFoundError:
        return set()
    try:
        with open(path, encoding="utf-8") as lines:
            _, entries = read_manifest(lines)
            return {entry.path for entry in entries} | {MANIFEST_FILE}
    except (ValueError, KeyError, TypeError, StopIteration):
        return set()  # not a manifest of ours: nothing on the branch is known to be ours


def unpublished(remote: Remote, staged: Staged, ours: set[str]) -> list[str]:
    """Files on the branch that this push does not publish and no synthset push published: someone else's."""
    wanted = {entry.path for entry in staged.entries}
    return sorted(set(remote) - wanted - ours - set(KEEP_ON_HUB))


def check_not_loaded(kept: list[str], staged: Staged, branch: str) -> None:
    """A kept file that a config's `data_files` glob selects would be loaded as part of the version: refuse."""
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(staged.local[README]).data.to_dict()
    for config, splits in config_patterns(card).items():
        for pattern in (p for patterns in splits.values() for p in patterns):
            for path in kept:
                if pattern_matches(pattern, path):
                    raise HubError(
                        f"{path}: on {branch} but not published by synthset, and config {config}'s data_files "
                        f"{pattern!r} would load it; delete it on the Hub, or push with --delete-unpublished"
                    )


def release_fetched(paths: list[Path]) -> None:
    """Remove files fetched from the store once the Hub has them: scratch holds a few at a time."""
    for path in paths:
        path.unlink(missing_ok=True)


def _operation(kind: str, path: str, staged: Staged, entry: Entry | None, source: Path | None = None) -> Any:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    if kind == "folder":
        return CommitOperationDelete(path_in_repo=path + "/", is_folder=True)
    if kind == "delete" or entry is None:
        return CommitOperationDelete(path_in_repo=path)
    operation = CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(source or staged.path_of(path)))
    operation.upload_info.sha256 = bytes.fromhex(entry.sha256)  # from the manifest: not hashed again
    return operation


class Publisher:
    """One push: the API client, the repo, and what is being published."""

    def __init__(self, api: Any, repo_id: str, branch: str, tag: str | None, staged: Staged) -> None:
        self.api, self.repo_id, self.branch, self.tag, self.staged = api, repo_id, branch, tag, staged
        self.by_path = {e.path: e for e in staged.entries}
        self.keep: Remote = {}  # files on the branch that this push leaves alone, as they were at its base

    # -- the state of the repo ------------------------------------------------------------------------
    def head(self, revision: str) -> str:
        return self.api.repo_info(self.repo_id, repo_type=REPO_TYPE, revision=revision).sha

    def holds_staged(self, revision: str) -> bool:
        """Whether `revision` holds exactly the staged files, and the files left alone exactly as they were
        (a writer racing the merge changed the branch: its commit is not tagged as this version)."""
        remote = remote_files(self.api, self.repo_id, revision)
        operations, _ = differences(remote, self.staged, frozenset(self.keep))
        return not operations and all(remote.get(path) == state for path, state in self.keep.items())

    def differences(self, revision: str) -> tuple[list[tuple[str, str]], ChangeCounts]:
        return differences(remote_files(self.api, self.repo_id, revision), self.staged, frozenset(self.keep))

    def title(self, base: str) -> str:
        version = f" {self.tag}" if self.tag else ""
        name = self.staged.name[:60]
        return f"synthset: publish {name}{version} [manifest {self.staged.manifest_sha256[:12]} on {base[:12]}]"

    def open_pull_requests(self) -> list[Any]:
        """Open (or draft) pull requests that synthset opened for this very manifest, on any base."""
        prefix = self.title("")[: -len(" on ]")]
        found = self.api.get_repo_discussions(self.repo_id, repo_type=REPO_TYPE, discussion_type="pull_request")
        return [d for d in found if d.status in ("open", "draft") and d.title.startswith(prefix)]

    # -- the steps --------------------------------------------------------------------------------------
    def pull_request_for(self, base: str) -> int | None:
        """The open pull request for this manifest on `base`; stale ones (opened on an older head) are closed."""
        current = None
        for pr in self.open_pull_requests():
            if pr.title == self.title(base):
                current = pr.num
            else:
                self.set_status(pr.num, "closed", f"superseded: {self.branch} moved since this pull request was opened")
        return current

    def set_status(self, num: int, status: str, comment: str | None = None) -> None:
        """Open or close pull request `num`; a retry first looks whether the last try already did it."""

        def landed() -> bool | None:
            details = self.api.get_discussion_details(self.repo_id, num, repo_type=REPO_TYPE)
            return True if details.status == status else None

        with_retries(
            f"status of pull request #{num}",
            lambda: self.api.raw.change_discussion_status(
                self.repo_id, num, status, repo_type=REPO_TYPE, comment=comment
            ),
            landed,
        )

    def commit_chunk(
        self, operations: list[tuple[str, str]], ref: str | None, parent: str, message: str, base: str
    ) -> tuple[int, str]:
        """Commit one batch to the pull request `ref` (or open it with this batch); -> (pr number, head).

        On an object-store run the batch's Parquet files are fetched `FETCH_GROUP` at a time, uploaded to the
        Hub's storage (`preupload_lfs_files`) and removed, before the commit that references them.
        """
        held: list[Path] = []
        try:
            ops = self.operations(operations, ref, held)
            return self._commit(ops, operations, ref, parent, message, base)
        finally:
            release_fetched(held)

    def operations(self, operations: list[tuple[str, str]], ref: str | None, held: list[Path]) -> list[Any]:
        """The commit operations; files in the store are fetched and uploaded a group at a time (`held`: the
        fetched files the commit itself still needs: those the Hub keeps as regular files, not LFS)."""
        by_path = {}
        from_store = [path for kind, path in operations if kind == "add" and self.staged.in_store(path)]
        for start in range(0, len(from_store), FETCH_GROUP):
            by_path.update(self.preupload(from_store[start : start + FETCH_GROUP], ref, held))
        return [
            by_path.get(path) or _operation(kind, path, self.staged, self.by_path.get(path))
            for kind, path in operations
        ]

    def preupload(self, paths: list[str], ref: str | None, held: list[Path]) -> dict[str, Any]:
        fetched = self.staged.fetch(paths)
        try:
            ops = [_operation("add", p, self.staged, self.by_path[p], f) for p, f in zip(paths, fetched, strict=True)]
            self.api.preupload_lfs_files(
                self.repo_id, ops, repo_type=REPO_TYPE, revision=ref or self.branch, create_pr=ref is None
            )
        except BaseException:
            release_fetched(fetched)
            raise
        uploaded = [f for f, op in zip(fetched, ops, strict=True) if getattr(op, "_upload_mode", None) == "lfs"]
        held += [f for f in fetched if f not in uploaded]
        release_fetched(uploaded)
        return {op.path_in_repo: op for op in ops}

    def _commit(
        self, ops: list[Any], operations: list[tuple[str, str]], ref: str | None, parent: str, message: str, base: str
    ) -> tuple[int, str]:
        def call() -> tuple[int, str]:
            info = self.api.raw.create_commit(
                self.repo_id,
                ops,
                repo_type=REPO_TYPE,
                revision=ref or self.branch,
                create_pr=ref is None,
                parent_commit=parent,
                commit_message=message,
                commit_description=f"{len(self.staged.entries)} files; manifest sha256 {self.staged.manifest_sha256}",
            )
            return (info.pr_num if ref is None else int(ref.rsplit("/", 1)[1])), info.oid

        def landed() -> tuple[int, str] | None:
            if ref is None:  # the pull request is the proof: its title names the manifest and the base
                num = self.pull_request_for(base)
                return None if num is None else (num, self.head(f"refs/pr/{num}"))
            head = self.head(ref)
            if head == parent:
                return None
            if not self.chunk_present(ref, operations):
                raise HubError(f"{ref} changed under this push (another push to it?); run the push again")
            return int(ref.rsplit("/", 1)[1]), head

        return with_retries(f"commit to {ref or self.branch}", call, landed)

    def chunk_present(self, revision: str, operations: list[tuple[str, str]]) -> bool:
        infos = self.api.get_paths_info(
            self.repo_id, [path for _, path in operations], repo_type=REPO_TYPE, revision=revision
        )
        found = {info.path: info for info in infos}
        for kind, path in operations:
            if kind != "add":
                if path in found:
                    return False
                continue
            info, entry = found.get(path), self.by_path[path]
            lfs = getattr(info, "lfs", None)
            if info is None or info.size != entry.bytes or (lfs is not None and lfs.sha256 != entry.sha256):
                return False
        return True

    def merge(self, num: int, base: str) -> str:
        """Merge pull request `num` into the branch, which must still be at `base`; -> the new head."""
        head = self.head(self.branch)
        if head != base:
            raise HubError(
                f"{self.branch} moved from {base[:12]} to {head[:12]} while publishing (another push?); run the push "
                "again: it opens a new pull request on the new head and sends no file twice"
            )
        details = self.api.get_discussion_details(self.repo_id, num, repo_type=REPO_TYPE)
        if details.status == "draft":  # a draft must be published before it can be merged
            self.set_status(num, "open")

        def landed() -> bool | None:
            merged = self.api.get_discussion_details(self.repo_id, num, repo_type=REPO_TYPE).status == "merged"
            return True if merged else None

        with_retries(
            f"merge of pull request #{num}",
            lambda: self.api.raw.merge_pull_request(
                self.repo_id, num, repo_type=REPO_TYPE, comment="synthset: publish"
            ),
            landed,
        )
        merged = self.head(self.branch)
        if not self.holds_staged(merged):
            raise HubError(
                f"{self.branch} at {merged[:12]} does not hold exactly the published files after merging pull request "
                f"#{num} (someone committed to {self.branch} meanwhile?); check it, then run the push again"
            )
        return merged

    def create_tag(self, commit: str) -> None:
        if self.tag is None:
            return

        def landed() -> bool | None:
            tags = {t.name: t.target_commit for t in self.api.list_repo_refs(self.repo_id, repo_type=REPO_TYPE).tags}
            return True if tags.get(self.tag) == commit else None

        with_retries(
            f"tag {self.tag}",
            lambda: self.api.raw.create_tag(
                self.repo_id, tag=self.tag, revision=commit, repo_type=REPO_TYPE, tag_message=self.tag
            ),
            landed,
            statuses=NOT_CONFLICTS,
        )


def _progress(total_bytes: int) -> Any:
    """The push's one bar: bytes uploaded, with files as its postfix (huggingface_hub's per-file bars are off
    unless `synthset --verbose`); off where stderr is not a terminal."""
    from tqdm.auto import tqdm

    return tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024, desc="push", disable=None)


def _chunk_bytes(chunk: list[tuple[str, str]], by_path: dict[str, Entry]) -> int:
    return sum(by_path[path].bytes for kind, path in chunk if kind == "add" and path in by_path)


def push_dataset(
    run_dir: str | Path | RunDir,
    repo_id: str,
    private: bool = False,
    tag: str | None = None,
    branch: str = "main",
    allow_unscreened: bool = False,
    delete_unpublished: bool = False,
) -> PushResult:
    """Publish `RUN/dataset/` to `branch` of `repo_id` through a pull request, then tag it (module docstring).

    Files on the branch that no synthset push published (another writer's) are left alone and named in
    the result, unless `delete_unpublished`; a push refuses to leave one that a config would load."""
    run = RunDir.at(run_dir)
    check_repo_id(repo_id)
    lock = read_lock(run)
    check_publishable(run, lock)
    check_screened(run, lock.recipe, allow_unscreened)
    api, token = client(require_token=True)
    with hub_errors(repo_id, token, api.endpoint):
        api.whoami()  # a rejected token fails here, before anything is hashed or uploaded
        staged = stage(run, lock, repo_id)
        api.create_repo(repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True)
        info = api.repo_info(repo_id, repo_type=REPO_TYPE)
        if private and not info.private:
            raise HubError("the repo exists and is public; --private cannot hide it (change it on the Hub)")
        if branch != "main":
            api.create_branch(repo_id, branch=branch, repo_type=REPO_TYPE, exist_ok=True)
        publisher = Publisher(api, repo_id, branch, tag, staged)
        base = publisher.head(branch)
        remote = remote_files(api, repo_id, base)
        foreign = unpublished(remote, staged, published_by_synthset(api, repo_id, base))
        if not delete_unpublished:
            check_not_loaded(foreign, staged, branch)
            publisher.keep = {path: remote[path] for path in foreign}
        if tag is not None:
            tags = {t.name: t.target_commit for t in api.list_repo_refs(repo_id, repo_type=REPO_TYPE).tags}
            if tag in tags:
                if publisher.holds_staged(tags[tag]):
                    return PushResult(repo_id, branch, tags[tag], tag, already_published=True)
                raise HubError(
                    f"tag {tag} already names commit {tags[tag][:12]} with other files; "
                    "a published version never changes: push under a new tag"
                )
        operations, counts = differences(remote, staged, frozenset(publisher.keep))
        result = PushResult(repo_id, branch, base, tag, **counts)
        result.kept, result.deleted_unpublished = ([], foreign) if delete_unpublished else (foreign, [])
        if operations:  # else the branch already holds this version (e.g. a rerun after the merge)
            num = publisher.pull_request_for(base)
            if num is not None:  # resume: diff against what the pull request already holds
                operations, _ = publisher.differences(f"refs/pr/{num}")
            chunks = [operations[i : i + FILES_PER_COMMIT] for i in range(0, len(operations), FILES_PER_COMMIT)]
            ref = None if num is None else f"refs/pr/{num}"
            parent = base if ref is None else publisher.head(ref)
            files_done = 0
            with _progress(sum(_chunk_bytes(c, publisher.by_path) for c in chunks)) as bar:
                for i, chunk in enumerate(chunks):
                    message = publisher.title(base) if ref is None else f"synthset: part {i + 1} of {len(chunks)}"
                    num, parent = publisher.commit_chunk(chunk, ref, parent, message, base)
                    ref = f"refs/pr/{num}"
                    result.commits += 1
                    files_done += len(chunk)
                    bar.set_postfix_str(f"{files_done}/{len(operations)} files", refresh=False)
                    bar.update(_chunk_bytes(chunk, publisher.by_path))
            if num is None:
                raise AssertionError("a push with operations always has a pull request")
            if not publisher.holds_staged(f"refs/pr/{num}"):
                raise HubError(f"pull request #{num} does not hold exactly the published files; run the push again")
            result.pull_request = num
            result.commit = publisher.merge(num, base)
        publisher.create_tag(result.commit)
    return result
