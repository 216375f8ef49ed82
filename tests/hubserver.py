"""A loopback Hugging Face Hub for tests: real HTTP, real commits, no network.

The machines that run the tests cannot reach huggingface.co, and mocking `HfApi` would test our calls
against our own idea of the protocol. So this is a small server that speaks the Hub endpoints which
`huggingface_hub` (2.x, Xet disabled) and `datasets` (5.x) really use, read off their source:

  GET  /api/whoami-v2                                         who the token belongs to
  POST /api/repos/create                                      create a repo (409 if it exists)
  GET  /api/{type}s/{repo}[/revision/{rev}]                   repo info: sha, siblings, cardData
  GET  /api/{type}s/{repo}/tree/{rev}[/{path}]                listing (recursive, expand, Link pagination)
  POST /api/{type}s/{repo}/paths-info/{rev}                   info on given paths (form-encoded)
  GET  /api/{type}s/{repo}/commits/{rev}                      history (first parent)
  GET  /api/{type}s/{repo}/refs                               branches and tags
  POST /api/{type}s/{repo}/preupload/{rev}                    lfs or regular, and the remote oid
  POST /api/{type}s/{repo}/commit/{rev}[?create_pr=1]         NDJSON commit (file, lfsFile, deletedFile,
                                                              deletedFolder; parentCommit checked); to a
                                                              branch or a pull request's refs/pr/N
  GET|POST /api/{type}s/{repo}/discussions                    list (paged, 50) / open a pull request (draft)
  GET  /api/{type}s/{repo}/discussions/{n}                    details (status, base, mergeCommitId)
  POST /api/{type}s/{repo}/discussions/{n}/status|merge       publish / close / merge a pull request
  POST|DELETE /api/{type}s/{repo}/branch/{branch}             create (startingPoint) / delete a branch
  POST /api/{type}s/{repo}/tag/{rev}, DELETE .../tag/{tag}    create / delete a tag
  POST /api/validate-yaml                                     README metadata check
  POST /{prefix}{repo}.git/info/lfs/objects/batch             LFS batch API, basic transfer
  PUT  /lfs-upload/{oid}?sig=...                              the "presigned" upload URL it hands out
  HEAD|GET /{prefix}{repo}/resolve/{rev}/{path}               download: X-Repo-Commit, ETag, X-Linked-Etag,
                                                              X-Linked-Size, Content-Length, Range (206)

State is kept as real commits: each commit is a full snapshot `path -> Blob`, refs map branch and tag
names to commit ids, and LFS content lives in one store keyed by sha256 (as on the Hub, an object
uploaded once is never asked for again). A commit swaps its branch head under a lock only after the whole
new snapshot is built, so a reader sees the old commit or the new one.

It enforces what the real Hub enforces (`HubLimits`, each with its source in synthset/run/hub_limits.py,
written again here so that a wrong number there is caught here): at most 10k entries in a folder and
100k files in a repo (the commit that would exceed either is refused), at most 100 operations per commit
(the Hub's advice is 50-100; its real bound is a 60 s timeout), 256 files per preupload call and per LFS
batch, 1,000 paths per paths-info call (413 otherwise, as huggingface_hub#1503 reports), a README of at
most 1 MB at /api/validate-yaml (the real bound is not documented; large cards meet 413 there), tree
pages of 1,000 entries. Reads of a public repo need no token (tree, paths-info, resolve, refs,
discussions); writes need a member's token. A pull request opened through the API is a draft and must be
set `open` before it can be merged (as on the Hub: "publish it to be able to merge"); one opened by a
commit with `create_pr=1` is open. A merge puts the pull request's changes onto the branch as one new
commit (a three-way apply: a path changed on both sides since the base is a 409 conflict).

Tests count what crosses the wire (`state.uploads`, `state.put_bytes`, `state.requests`, `state.timeline`)
and inject faults on every endpoint (`ENDPOINTS`, named by `endpoint_of`): `inject("commit", 409)` (or a
429 with the Hub's rate-limit headers, or any 5xx) answers the next request(s) to an endpoint with that
status, before or (`after=True`) after doing the work, as a Hub whose answer is lost does;
`fail_next("commit")` is a 500; `before_commit` lets a racing writer commit first; `before_merge` likewise;
`hold_uploads_after(n)` and `hold_commits_after(n)` let n uploads / commits through and park the next
(never applied) until `release_held()`, for a client to be killed there;
`tamper()` changes the stored bytes of a file behind the metadata's back.
Use it as a context manager; `stop()` shuts it down.

Running it by hand (e.g. to try `synthset push` against it):
    python -c "import sys,time; sys.path.insert(0,'tests'); from hubserver import HubServer; \
s=HubServer().start(); print(s.url, flush=True); time.sleep(3600)"
then, in another shell: HF_ENDPOINT=<url> HF_HUB_DISABLE_XET=1 HF_TOKEN=hf_test_token synthset push ...
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml


@dataclass(frozen=True)
class HubLimits:
    files_per_folder: int = 10_000
    files_per_repo: int = 100_000
    operations_per_commit: int = 100
    preupload_per_call: int = 256
    lfs_batch_per_call: int = 256
    paths_info_per_call: int = 1_000
    readme_bytes: int = 1_000_000


LFS_PATTERNS = ("*.parquet", "*.arrow", "*.jpg", "*.jpeg", "*.png", "*.webp", "*.bin", "*.safetensors", "*.zip")
GITATTRIBUTES = "".join(f"{pattern} filter=lfs diff=lfs merge=lfs -text\n" for pattern in LFS_PATTERNS).encode()
REGULAR_MAX_BYTES = 10 * 1024 * 1024
TYPE_PREFIX = {"dataset": "datasets/", "model": "", "space": "spaces/"}


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(oid: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass(frozen=True)
class Blob:
    """A file in a snapshot: inline bytes (regular) or a pointer to the LFS store (lfs_oid = sha256)."""

    size: int
    git_oid: str
    data: bytes | None = None
    lfs_oid: str | None = None

    @classmethod
    def regular(cls, data: bytes) -> Blob:
        return cls(size=len(data), git_oid=git_blob_oid(data), data=data)

    @classmethod
    def lfs(cls, oid: str, size: int) -> Blob:
        return cls(size=size, git_oid=git_blob_oid(lfs_pointer(oid, size)), lfs_oid=oid)

    @property
    def etag(self) -> str:
        return self.lfs_oid or self.git_oid


@dataclass(frozen=True)
class Commit:
    oid: str
    parent: str | None
    title: str
    message: str
    date: str
    files: dict[str, Blob]


@dataclass
class PullRequest:
    num: int
    title: str
    description: str
    status: str  # draft | open | closed | merged
    target: str  # the branch it merges into
    base: str  # the target's head when it was opened
    head: str  # the commit refs/pr/<num> points at
    author: str
    created: str
    merge_commit: str | None = None


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    created: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    pulls: dict[int, PullRequest] = field(default_factory=dict)

    def pull_of(self, revision: str) -> PullRequest | None:
        if revision.startswith("refs/pr/") and revision[8:].isdigit():
            return self.pulls.get(int(revision[8:]))
        return None

    def resolve(self, revision: str) -> Commit | None:
        """Branch, tag, refs/pr/N, or full commit id (as the Hub accepts), else None."""
        pull = self.pull_of(revision)
        oid = pull.head if pull else self.branches.get(revision) or self.tags.get(revision)
        if oid is None and revision in self.commits:
            oid = revision
        return self.commits.get(oid) if oid else None

    def last_commit_of(self, commit: Commit, path: str) -> Commit:
        """The newest commit on `commit`'s first-parent line that changed `path` (file or folder prefix)."""

        def view(c: Commit) -> dict[str, str]:
            return {p: b.git_oid for p, b in c.files.items() if p == path or p.startswith(path + "/")}

        current = commit
        while current.parent is not None:
            parent = self.commits[current.parent]
            if view(parent) != view(current):
                return current
            current = parent
        return current


class HttpError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


class HubState:
    """Everything the server knows, plus the counters and fault switches the tests use."""

    def __init__(
        self, users: dict[str, str], orgs: dict[str, set[str]], tree_page_size: int, limits: HubLimits
    ) -> None:
        self.lock = threading.RLock()
        self.tokens = dict(users)  # token -> user name
        self.orgs = orgs  # org -> members
        self.tree_page_size = tree_page_size
        self.limits = limits
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.upload_sigs: dict[str, str] = {}  # oid -> signature handed out by the batch API
        self.uploads: list[tuple[str, int]] = []  # LFS objects stored: (oid, size)
        self.put_bytes = 0  # every byte received by the upload URL, stored or not
        self.requests: list[tuple[str, str, int]] = []  # (method, path with query, status)
        self.timeline: list[tuple[float, str, str, int]] = []  # (monotonic time, method, path, status)
        self.commit_counter = 0
        self.commits_applied = 0  # commits (to any ref) and merges this server has applied
        self._faults: dict[str, list[tuple[int, dict[str, str], bool]]] = {}
        self._fault_skips: dict[str, int] = {}  # requests to an endpoint let through before its faults
        self._hold_after: int | None = None
        self._hold_commits_after: int | None = None
        self.before_commit: Callable[[Repo], None] | None = None  # runs as a commit arrives: a racing writer
        self.before_merge: Callable[[Repo], None] | None = None
        self.upload_parked = threading.Event()
        self.commit_parked = threading.Event()
        self._release = threading.Event()

    # -- fault injection -------------------------------------------------------------------------
    def inject(
        self,
        endpoint: str,
        status: int,
        times: int = 1,
        retry_after: int | None = None,
        after: bool = False,
        skip: int = 0,
    ) -> None:
        """Answer the next `times` requests to `endpoint` (one of ENDPOINTS) with `status`, after letting
        `skip` of them through (a fault on a listing's third page, on the tenth footer read).

        A 429 is the Hub's rate limit as its docs (https://huggingface.co/docs/hub/rate-limits) and
        huggingface_hub's `parse_ratelimit_headers` describe it: `RateLimit: "api";r=0;t=<seconds>` with
        its `RateLimit-Policy`, and `Retry-After` (1 s unless `retry_after` says). With `after`, the request
        is carried out first and its answer replaced: a write that landed although its reply was lost."""
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        if status == 429:
            wait = 1 if retry_after is None else retry_after
            headers = {
                "Retry-After": str(wait),
                "RateLimit": f'"api";r=0;t={wait}',
                "RateLimit-Policy": '"fixed window";"api";q=500;w=300',
            }
        with self.lock:
            self._faults.setdefault(endpoint, []).extend([(status, headers, after)] * times)
            self._fault_skips[endpoint] = skip

    def pending_faults(self) -> dict[str, int]:
        """Faults injected and not yet served, per endpoint (a test asserts its fault was met)."""
        with self.lock:
            return {endpoint: len(queue) for endpoint, queue in self._faults.items() if queue}

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()
            self._fault_skips.clear()

    def fail_next(self, endpoint: str, times: int = 1) -> None:
        """Answer the next `times` requests to `endpoint` with a 500."""
        self.inject(endpoint, 500, times)

    def fault(self, endpoint: str, after: bool = False) -> HttpError | None:
        """The injected error for this request to `endpoint` at this point (before or after the work), if any."""
        with self.lock:
            queue = self._faults.get(endpoint) or []
            if queue and not after and self._fault_skips.get(endpoint):
                self._fault_skips[endpoint] -= 1  # a request let through before the fault
                return None
            if queue and queue[0][2] == after:
                status, headers, _ = queue.pop(0)
                return HttpError(status, f"injected {status} on {endpoint}", headers=headers)
            return None

    def hold_commits_after(self, count: int) -> None:
        """Let commits be applied until `count` in all; park every later one (never applied) until released."""
        self._release.clear()
        self.commit_parked.clear()
        self._hold_commits_after = count

    def hold_uploads_after(self, count: int) -> None:
        """Let `count` LFS uploads be stored; park every later one (never stored) until `release_held()`."""
        self._release.clear()
        self.upload_parked.clear()
        self._hold_after = count

    def release_held(self) -> None:
        self._hold_after = None
        self._hold_commits_after = None
        self._release.set()

    # -- repo helpers ------------------------------------------------------------------------------
    def user_for(self, headers: Any) -> str | None:
        auth = headers.get("Authorization", "")
        if not auth:
            return None
        token = auth.removeprefix("Bearer ").strip()
        if token not in self.tokens:
            raise HttpError(401, "Invalid credentials in Authorization header")
        return self.tokens[token]

    def can_write(self, user: str | None, namespace: str) -> bool:
        return user is not None and (user == namespace or user in self.orgs.get(namespace, set()))

    def repo(self, repo_type: str, repo_id: str, user: str | None) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and not self.can_write(user, repo_id.split("/")[0])):
            raise HttpError(404, "Repository not found", "RepoNotFound")
        return repo

    def commit(self, repo: Repo, revision: str) -> Commit:
        found = repo.resolve(revision)
        if found is None:
            raise HttpError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return found

    def new_commit(self, repo: Repo, parent: str | None, title: str, message: str, files: dict[str, Blob]) -> Commit:
        with self.lock:
            self.commit_counter += 1
            seed = json.dumps([repo.repo_id, parent, title, sorted((p, b.git_oid) for p, b in files.items())])
            oid = hashlib.sha1(f"{self.commit_counter}:{seed}".encode()).hexdigest()
            commit = Commit(oid, parent, title, message, now_iso(), dict(files))
            repo.commits[oid] = commit
            return commit

    def content(self, blob: Blob) -> bytes:
        return blob.data if blob.data is not None else self.lfs[blob.lfs_oid]

    def tamper(self, repo_type: str, repo_id: str, path: str, revision: str = "main") -> None:
        """Flip bytes in the middle of a stored file, keeping its size and every piece of metadata."""
        with self.lock:
            repo = self.repos[(repo_type, repo_id)]
            blob = self.commit(repo, revision).files[path]
            data = bytearray(self.content(blob))
            middle = len(data) // 2
            for i in range(middle, min(middle + 16, len(data))):
                data[i] ^= 0xFF
            if blob.lfs_oid is None:
                raise ValueError("tamper() is for LFS files")
            self.lfs[blob.lfs_oid] = bytes(data)


def _entry(repo: Repo, commit: Commit, path: str, blob: Blob | None, expand: bool) -> dict[str, Any]:
    """A tree / paths-info entry as the Hub returns it (RepoFile / RepoFolder parse these keys)."""
    if blob is None:
        entry: dict[str, Any] = {
            "type": "directory",
            "oid": hashlib.sha1(f"{commit.oid}:{path}".encode()).hexdigest(),
            "size": 0,
            "path": path,
        }
    else:
        entry = {"type": "file", "oid": blob.git_oid, "size": blob.size, "path": path}
        if blob.lfs_oid is not None:
            entry["lfs"] = {"oid": blob.lfs_oid, "size": blob.size, "pointerSize": len(lfs_pointer(blob.lfs_oid, 0))}
    if expand:
        last = repo.last_commit_of(commit, path)
        entry["lastCommit"] = {"id": last.oid, "title": last.title, "date": last.date}
    return entry


def _children(commit: Commit, prefix: str, recursive: bool) -> list[tuple[str, Blob | None]]:
    """Entries under `prefix` (folders as None), sorted like the Hub: folders implied by file paths."""
    base = prefix.rstrip("/") + "/" if prefix else ""
    found: dict[str, Blob | None] = {}
    for path, blob in commit.files.items():
        if not path.startswith(base):
            continue
        parts = path[len(base) :].split("/")
        for depth in range(1, len(parts)):
            if recursive or depth == 1:
                found.setdefault(base + "/".join(parts[:depth]), None)
        if recursive or len(parts) == 1:
            found[path] = blob
    return sorted(found.items(), key=lambda item: item[0])


def _card_data(commit: Commit, state: HubState) -> dict[str, Any] | None:
    readme = commit.files.get("README.md")
    if readme is None:
        return None
    text = state.content(readme).decode("utf-8", "replace")
    if not text.startswith("---"):
        return None
    try:
        data = yaml.safe_load(text.split("---", 2)[1])
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


def _apply(state: HubState, files: dict[str, Blob], operations: list[dict[str, Any]]) -> dict[str, Blob]:
    """A commit's operations applied to a snapshot (a copy)."""
    for item in operations:
        key, value = item["key"], item["value"]
        path = value.get("path", "").strip("/")
        if key == "file":
            files[path] = Blob.regular(base64.b64decode(value["content"]))
        elif key == "lfsFile":
            if value["oid"] not in state.lfs:
                raise HttpError(400, f"LFS object {value['oid']} for {path} was never uploaded")
            files[path] = Blob.lfs(value["oid"], value.get("size", len(state.lfs[value["oid"]])))
        elif key == "deletedFile":
            if path not in files:
                raise HttpError(404, "A file with this name doesn't exist", "EntryNotFound")
            del files[path]
        elif key == "deletedFolder":
            files = {p: b for p, b in files.items() if not p.startswith(path + "/")}
        else:
            raise HttpError(400, f"unknown commit operation {key!r}")
    return files


def _check_limits(files: dict[str, Blob], limits: HubLimits) -> None:
    """Refuse a snapshot over the Hub's files-per-repo or entries-per-folder limit."""
    if len(files) > limits.files_per_repo:
        raise HttpError(400, f"Too many files in the repository: {len(files)} > {limits.files_per_repo}")
    entries: dict[str, set[str]] = {}
    for path in files:
        folder, _, name = path.rpartition("/")
        entries.setdefault(folder, set()).add(name)
        while folder:  # a sub-folder is an entry of its parent
            parent, _, child = folder.rpartition("/")
            if child in entries.setdefault(parent, set()):
                break
            entries[parent].add(child)
            folder = parent
    for folder, names in entries.items():
        if len(names) >= limits.files_per_folder:  # the docs' table: entries per folder "< 10k"
            raise HttpError(400, f"Too many files in folder {folder or '/'}: {len(names)} >= {limits.files_per_folder}")


REPO_ENDPOINTS = {  # /api/{type}s/{repo}/<kind>/...: the endpoint names of `inject`
    "": "repo-info",
    "revision": "repo-info",
    "tree": "tree",
    "paths-info": "paths-info",
    "commits": "commits",
    "refs": "refs",
    "preupload": "preupload",
    "commit": "commit",
    "branch": "branch",
    "tag": "tag",
}


def endpoint_of(method: str, parts: list[str]) -> str:
    """The name `inject` uses for the endpoint of a request (see ENDPOINTS)."""
    if parts[:1] == ["lfs-upload"]:
        return "upload"
    if parts[:2] == ["api", "whoami-v2"]:
        return "whoami"
    if parts[:3] == ["api", "repos", "create"]:
        return "create-repo"
    if parts[:2] == ["api", "validate-yaml"]:
        return "validate-yaml"
    if parts[:1] == ["api"] and len(parts) >= 4 and parts[1] in ("datasets", "models", "spaces"):
        kind = parts[4] if len(parts) > 4 else ""
        if kind == "discussions":
            return _discussion_endpoint(method, parts[5:])
        return REPO_ENDPOINTS.get(kind, kind)
    if parts[-4:] == ["info", "lfs", "objects", "batch"]:
        return "batch"
    return "resolve" if "resolve" in parts else "other"


def _discussion_endpoint(method: str, rest: list[str]) -> str:
    if not rest:
        return "discussions" if method == "GET" else "open-pull-request"
    action = rest[1] if len(rest) > 1 else ""
    return {"": "discussion", "status": "discussion-status", "merge": "merge"}.get(action, "discussion")


ENDPOINTS = (
    *sorted(set(REPO_ENDPOINTS.values())),
    *("whoami", "create-repo", "validate-yaml", "upload", "batch", "resolve"),
    *("discussions", "open-pull-request", "discussion", "discussion-status", "merge"),
)


class _Handler(BaseHTTPRequestHandler):
    server_version = "loopback-hub/1.0"
    state: HubState  # set on the subclass made per server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    # -- plumbing ----------------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _body(self) -> bytes:
        return self._request_body

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        if status < 400 and (error := self.state.fault(self._endpoint, after=True)):
            return self._error(error)  # the work is done, its answer is lost: a write that landed unseen
        self.send_response(status)
        headers = {"Content-Length": str(len(body)), **(headers or {})}
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)
        self.state.requests.append((self.command, self.path, status))
        self.state.timeline.append((time.monotonic(), self.command, self.path, status))

    def _json(self, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), {"Content-Type": "application/json", **(headers or {})})

    def _error(self, error: HttpError, extra: dict[str, str] | None = None) -> None:
        headers = {"X-Error-Message": error.message, **error.headers, **(extra or {})}
        if error.code:
            headers["X-Error-Code"] = error.code
        self._json({"error": error.message}, error.status, headers)

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/")[1:]]
        query = parse_qs(url.query)
        self._request_body = self._read_body()  # read first: a fault answers a request that was sent whole
        self._endpoint = endpoint_of(self.command, parts)
        if self._endpoint == "upload":
            with self.state.lock:
                self.state.put_bytes += len(self._request_body)
        try:
            if error := self.state.fault(self._endpoint):
                raise error
            self._route(parts, query)
        except HttpError as error:
            self._error(error)
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _dispatch  # noqa: N815 - stdlib naming

    # -- routing -----------------------------------------------------------------------------------
    def _route(self, parts: list[str], query: dict[str, list[str]]) -> None:
        if parts[:1] == ["lfs-upload"] and self.command == "PUT":
            return self._lfs_put(parts[1], query)
        user = self.state.user_for(self.headers)
        if parts[:2] == ["api", "agent-harnesses"]:  # huggingface_hub's user-agent lookup: nothing to report
            return self._json({"standardEnvVars": [], "harnesses": {}})
        if parts[:2] == ["api", "whoami-v2"]:
            if user is None:
                raise HttpError(401, "You must be authenticated")
            orgs = [{"name": org, "type": "org"} for org, members in self.state.orgs.items() if user in members]
            return self._json({"type": "user", "name": user, "orgs": orgs, "auth": {"accessToken": {"role": "write"}}})
        if parts[:3] == ["api", "repos", "create"]:
            return self._create_repo(user, json.loads(self._body() or b"{}"))
        if parts[:2] == ["api", "validate-yaml"]:
            return self._validate_yaml(json.loads(self._body() or b"{}"))
        if parts[:1] == ["api"] and len(parts) >= 4 and parts[1] in ("datasets", "models", "spaces"):
            repo_type = parts[1][:-1]
            repo = self.state.repo(repo_type, f"{parts[2]}/{parts[3]}", user)
            return self._repo_api(repo, user, parts[4:], query)
        # /{prefix}{ns}/{name}.git/info/lfs/objects/batch and /{prefix}{ns}/{name}/resolve/{rev}/{path}
        repo_type = "dataset" if parts[:1] == ["datasets"] else "space" if parts[:1] == ["spaces"] else "model"
        rest = parts[1:] if repo_type != "model" else parts
        if len(rest) >= 2 and rest[1].endswith(".git") and rest[2:] == ["info", "lfs", "objects", "batch"]:
            repo = self.state.repo(repo_type, f"{rest[0]}/{rest[1][:-4]}", user)
            return self._lfs_batch(repo, user)
        if len(rest) >= 5 and rest[2] == "resolve":
            repo = self.state.repo(repo_type, f"{rest[0]}/{rest[1]}", user)
            return self._resolve(repo, rest[3], "/".join(rest[4:]))
        raise HttpError(404, f"loopback hub: no route for {self.command} {self.path}")

    def _repo_api(self, repo: Repo, user: str | None, parts: list[str], query: dict[str, list[str]]) -> None:
        state = self.state
        kind = parts[0] if parts else ""
        write = self.command in ("POST", "DELETE") and kind != "paths-info"  # paths-info is a read sent as POST
        if write and not state.can_write(user, repo.repo_id.split("/")[0]):
            raise HttpError(403, "You don't have the rights to write to this repo")
        if kind == "" or kind == "revision":
            commit = state.commit(repo, parts[1] if kind == "revision" else "main")
            return self._json(
                {
                    "id": repo.repo_id,
                    "author": repo.repo_id.split("/")[0],
                    "sha": commit.oid,
                    "private": repo.private,
                    "gated": False,
                    "disabled": False,
                    "createdAt": repo.created,
                    "lastModified": commit.date,
                    "tags": [],
                    "downloads": 0,
                    "likes": 0,
                    "cardData": _card_data(commit, state),
                    "siblings": [{"rfilename": path} for path in sorted(commit.files)],
                }
            )
        if kind == "tree":
            return self._tree(repo, parts[1], "/".join(parts[2:]), query)
        if kind == "discussions":
            return self._discussions(repo, user, parts[1:], query)
        if kind == "paths-info":
            form = parse_qs(self._body().decode())
            if len(form.get("paths", [])) > state.limits.paths_info_per_call:
                raise HttpError(413, "Payload Too Large: too many parameters")
            commit = state.commit(repo, parts[1])
            expand = form.get("expand", ["False"])[0].lower() == "true"
            out = []
            for path in form.get("paths", []):
                path = path.strip("/")
                if path in commit.files:
                    out.append(_entry(repo, commit, path, commit.files[path], expand))
                elif any(p.startswith(path + "/") for p in commit.files):
                    out.append(_entry(repo, commit, path, None, expand))
            return self._json(out)
        if kind == "commits":
            commit, history = state.commit(repo, parts[1]), []
            while commit is not None:
                history.append(
                    {
                        "id": commit.oid,
                        "title": commit.title,
                        "message": commit.message,
                        "date": commit.date,
                        "authors": [{"user": repo.repo_id.split("/")[0]}],
                    }
                )
                commit = repo.commits.get(commit.parent) if commit.parent else None
            return self._json(history)
        if kind == "refs":

            def refs(names: dict[str, str], prefix: str) -> list[dict[str, str]]:
                return [
                    {"name": n, "ref": f"refs/{prefix}/{n}", "targetCommit": oid} for n, oid in sorted(names.items())
                ]

            pulls = [
                {"name": f"refs/pr/{n}", "ref": f"refs/pr/{n}", "targetCommit": pr.head}
                for n, pr in sorted(repo.pulls.items())
            ]
            return self._json(
                {
                    "branches": refs(repo.branches, "heads"),
                    "tags": refs(repo.tags, "tags"),
                    "converts": [],
                    "pullRequests": pulls if query.get("include_prs") else [],
                }
            )
        if kind == "preupload":
            return self._preupload(repo, parts[1])
        if kind == "commit":
            return self._commit(repo, parts[1], query, user)
        if kind == "branch":
            return self._branch(repo, parts[1])
        if kind == "tag":
            return self._tag(repo, parts[1])
        raise HttpError(404, f"loopback hub: no route for {self.command} {self.path}")

    # -- endpoints ---------------------------------------------------------------------------------
    def _create_repo(self, user: str | None, payload: dict[str, Any]) -> None:
        state = self.state
        namespace = payload.get("organization") or user
        if user is None:
            raise HttpError(401, "You must be authenticated")
        if not state.can_write(user, namespace):
            raise HttpError(403, f"You don't have the rights to create a repo under {namespace}")
        repo_type = payload.get("type") or "model"
        repo_id = f"{namespace}/{payload['name']}"
        url = f"http://{self.headers['Host']}/{TYPE_PREFIX[repo_type]}{repo_id}"
        with state.lock:
            if (repo_type, repo_id) in state.repos:  # the Hub's 409 names the existing repo's url
                return self._json({"error": "You already created this repo", "url": url}, 409)
            private = bool(payload.get("private")) or payload.get("visibility") == "private"
            repo = Repo(repo_type, repo_id, private, now_iso())
            first = state.new_commit(repo, None, "initial commit", "", {".gitattributes": Blob.regular(GITATTRIBUTES)})
            repo.branches["main"] = first.oid
            state.repos[(repo_type, repo_id)] = repo
        self._json({"url": url, "name": repo_id, "id": repo_id})

    def _validate_yaml(self, payload: dict[str, Any]) -> None:
        content = payload.get("content", "")
        if len(content.encode()) > self.state.limits.readme_bytes:
            raise HttpError(413, "Payload Too Large")
        errors = []
        if content.startswith("---"):
            try:
                data = yaml.safe_load(content.split("---", 2)[1])
                if data is not None and not isinstance(data, dict):
                    errors.append({"message": "metadata must be a mapping"})
            except yaml.YAMLError as error:
                errors.append({"message": f"invalid YAML: {error}"})
        if errors:
            return self._json({"errors": errors}, 400)
        return self._json({"errors": [], "warnings": []})

    def _tree(self, repo: Repo, revision: str, path: str, query: dict[str, list[str]]) -> None:
        commit = self.state.commit(repo, revision)
        recursive = query.get("recursive", ["False"])[0].lower() == "true"
        expand = query.get("expand", ["False"])[0].lower() == "true"
        path = path.strip("/")
        if path and path not in commit.files and not any(p.startswith(path + "/") for p in commit.files):
            raise HttpError(404, f"{path} does not exist at {revision}", "EntryNotFound")
        items = _children(commit, path, recursive)
        start = int(query.get("cursor", ["0"])[0])
        size = self.state.tree_page_size
        page = [_entry(repo, commit, p, blob, expand) for p, blob in items[start : start + size]]
        headers = {}
        if start + size < len(items):
            args = f"recursive={recursive}&expand={expand}&cursor={start + size}"
            next_url = f"http://{self.headers['Host']}{urlsplit(self.path).path}?{args}"
            headers["Link"] = f'<{next_url}>; rel="next"'
        self._json(page, headers=headers)

    def _preupload(self, repo: Repo, revision: str) -> None:
        payload = json.loads(self._body())
        if len(payload["files"]) > self.state.limits.preupload_per_call:
            raise HttpError(413, f"at most {self.state.limits.preupload_per_call} files per preupload call")
        commit = self.state.commit(repo, revision)
        gitattributes = commit.files.get(".gitattributes")
        patterns = list(LFS_PATTERNS)
        if gitattributes is not None:
            text = self.state.content(gitattributes).decode()
            patterns = [line.split()[0] for line in text.splitlines() if "filter=lfs" in line]
        files = []
        for item in payload["files"]:
            path, size = item["path"], item["size"]
            sample = base64.b64decode(item["sample"])
            lfs = size > REGULAR_MAX_BYTES or b"\0" in sample or any(fnmatch.fnmatch(path, p) for p in patterns)
            remote = commit.files.get(path)
            oid = None if remote is None else (remote.lfs_oid if lfs else remote.git_oid)
            files.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        self._json({"files": files, "commitOid": commit.oid})

    def _lfs_batch(self, repo: Repo, user: str | None) -> None:
        state = self.state
        if not state.can_write(user, repo.repo_id.split("/")[0]):
            raise HttpError(403, "You don't have the rights to write to this repo")
        payload = json.loads(self._body())
        if len(payload["objects"]) > state.limits.lfs_batch_per_call:
            raise HttpError(413, f"at most {state.limits.lfs_batch_per_call} objects per LFS batch call")
        objects = []
        for obj in payload["objects"]:
            oid, size = obj["oid"], obj["size"]
            item: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            with state.lock:
                present = oid in state.lfs
                if not present:
                    sig = state.upload_sigs.setdefault(oid, secrets.token_hex(8))
            if not present:
                href = f"http://{self.headers['Host']}/lfs-upload/{oid}?size={size}&sig={sig}"
                item["actions"] = {"upload": {"href": href, "header": {}}}
            objects.append(item)
        self._send(
            200,
            json.dumps({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}).encode(),
            {"Content-Type": "application/vnd.git-lfs+json"},
        )

    def _lfs_put(self, oid: str, query: dict[str, list[str]]) -> None:
        state = self.state
        if state.upload_sigs.get(oid) != query.get("sig", [None])[0]:
            raise HttpError(403, "bad upload signature")
        data = self._body()
        if hashlib.sha256(data).hexdigest() != oid or len(data) != int(query.get("size", ["-1"])[0]):
            raise HttpError(400, "uploaded content does not match its oid or size")
        with state.lock:  # decide and store in one step, so concurrent uploads cannot all slip under the limit
            park = state._hold_after is not None and len(state.uploads) >= state._hold_after
            if not park and oid not in state.lfs:
                state.lfs[oid] = data
                state.uploads.append((oid, len(data)))
        if park:  # an interrupted transfer: the bytes arrived but are never stored
            state.upload_parked.set()
            state._release.wait(timeout=60)
            raise HttpError(500, "upload interrupted")
        self._send(200)

    def _commit(self, repo: Repo, revision: str, query: dict[str, list[str]], user: str | None) -> None:
        state = self.state
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        if state.before_commit is not None:
            state.before_commit(repo)
        with state.lock:
            park = state._hold_commits_after is not None and state.commits_applied >= state._hold_commits_after
        if park:  # an interrupted commit: it arrived, it is never applied
            state.commit_parked.set()
            state._release.wait(timeout=60)
            raise HttpError(500, "commit interrupted")
        operations = [item for item in lines if item["key"] != "header"]
        if len(operations) > state.limits.operations_per_commit:
            raise HttpError(
                413, f"{len(operations)} operations in one commit; at most {state.limits.operations_per_commit}"
            )
        create_pr = bool(query.get("create_pr"))
        with state.lock:
            pull = repo.pull_of(revision)
            if pull is not None:
                if create_pr or pull.status not in ("open", "draft"):
                    raise HttpError(400, f"Pull request #{pull.num} is {pull.status}; it cannot take commits")
                head = repo.commits[pull.head]
            elif revision in repo.branches:
                head = repo.commits[repo.branches[revision]]
            else:
                raise HttpError(
                    400 if repo.resolve(revision) else 404, f"Invalid rev id: {revision}", "RevisionNotFound"
                )
            header = next((item["value"] for item in lines if item["key"] == "header"), {})
            parent = header.get("parentCommit")
            if parent is not None and parent != head.oid:
                raise HttpError(412, "A commit has happened since. Please refresh and try again.")
            files = _apply(state, dict(head.files), operations)
            _check_limits(files, state.limits)
            commit = state.new_commit(repo, head.oid, header.get("summary", ""), header.get("description", ""), files)
            if create_pr:
                num = max([0, *repo.pulls]) + 1
                pull = PullRequest(
                    num, header.get("summary", ""), header.get("description", ""), "open", revision, head.oid,
                    commit.oid, user or "", now_iso(),
                )  # fmt: skip
                repo.pulls[num] = pull
            elif pull is not None:
                pull.head = commit.oid
            else:
                repo.branches[revision] = commit.oid  # the one moment readers switch to the new snapshot
            state.commits_applied += 1
        base = f"http://{self.headers['Host']}/{TYPE_PREFIX[repo.repo_type]}{repo.repo_id}"
        answer = {"success": True, "commitOid": commit.oid, "commitUrl": f"{base}/commit/{commit.oid}"}
        if create_pr:
            answer["pullRequestUrl"] = f"{base}/discussions/{pull.num}"
        self._json(answer)

    # -- pull requests ---------------------------------------------------------------------------------
    def _discussion_json(self, repo: Repo, pull: PullRequest) -> dict[str, Any]:
        return {
            "num": pull.num,
            "title": pull.title,
            "status": pull.status,
            "createdAt": pull.created,
            "isPullRequest": True,
            "author": {"name": pull.author},
            "repo": {"name": repo.repo_id, "type": repo.repo_type},
        }

    def _discussions(self, repo: Repo, user: str | None, parts: list[str], query: dict[str, list[str]]) -> None:
        state = self.state
        if not parts:
            if self.command == "POST":
                payload = json.loads(self._body() or b"{}")
                if not payload.get("pullRequest"):
                    raise HttpError(400, "loopback hub: only pull requests are implemented")
                with state.lock:
                    num = max([0, *repo.pulls]) + 1
                    head = repo.branches["main"]
                    repo.pulls[num] = PullRequest(
                        num, payload["title"], payload.get("description", ""), "draft", "main", head, head,
                        user or "", now_iso(),
                    )  # fmt: skip
                return self._json({"num": num, "url": f"/discussions/{num}"})
            status, page = query.get("status", ["all"])[0], int(query.get("p", ["0"])[0])
            wanted = {"open": ("open", "draft"), "closed": ("closed", "merged")}.get(status)
            pulls = [p for _, p in sorted(repo.pulls.items(), reverse=True) if wanted is None or p.status in wanted]
            size = 50
            return self._json(
                {
                    "discussions": [self._discussion_json(repo, p) for p in pulls[page * size : (page + 1) * size]],
                    "count": len(pulls),
                    "start": page * size,
                    "numClosedDiscussions": sum(p.status in ("closed", "merged") for p in repo.pulls.values()),
                }
            )
        pull = repo.pulls.get(int(parts[0])) if parts[0].isdigit() else None
        if pull is None:
            raise HttpError(404, "Discussion not found")
        action = parts[1] if len(parts) > 1 else ""
        if action == "" and self.command == "GET":
            details = self._discussion_json(repo, pull)
            changes = {"base": f"refs/heads/{pull.target}"}
            if pull.merge_commit:
                changes["mergeCommitId"] = pull.merge_commit
            return self._json({**details, "events": [], "changes": changes, "filesWithConflicts": []})
        if action == "status":
            payload = json.loads(self._body() or b"{}")
            with state.lock:
                if pull.status == "merged" or payload.get("status") not in ("open", "closed"):
                    raise HttpError(400, f"cannot change the status of a {pull.status} pull request")
                pull.status = payload["status"]
            event = {
                "id": secrets.token_hex(12),
                "type": "status-change",
                "createdAt": now_iso(),
                "author": {"name": user or ""},
                "data": {"status": pull.status},
            }
            return self._json({"newStatus": event})
        if action == "merge":
            return self._merge(repo, pull)
        raise HttpError(404, f"loopback hub: no route for {self.command} {self.path}")

    def _merge(self, repo: Repo, pull: PullRequest) -> None:
        state = self.state
        if state.before_merge is not None:
            state.before_merge(repo)
        with state.lock:
            park = state._hold_commits_after is not None and state.commits_applied >= state._hold_commits_after
        if park:  # held like a commit: an interrupted merge is never applied
            state.commit_parked.set()
            state._release.wait(timeout=60)
            raise HttpError(500, "merge interrupted")
        with state.lock:
            if pull.status == "draft":
                raise HttpError(400, "This branch is in draft mode, publish it to be able to merge.")
            if pull.status != "open":
                raise HttpError(400, f"Pull request #{pull.num} is {pull.status}")
            target = repo.commits[repo.branches[pull.target]]
            base, theirs = repo.commits[pull.base], repo.commits[pull.head]
            if target.oid == base.oid:
                files = dict(theirs.files)
            else:  # three-way: the pull request's changes since its base, onto the branch as it is now
                ours = {p for p in set(base.files) | set(theirs.files) if base.files.get(p) != theirs.files.get(p)}
                moved = {p for p in set(base.files) | set(target.files) if base.files.get(p) != target.files.get(p)}
                conflicts = sorted(p for p in ours & moved if theirs.files.get(p) != target.files.get(p))
                if conflicts:
                    raise HttpError(409, f"Merge conflict in {len(conflicts)} files, e.g. {conflicts[0]}")
                files = dict(target.files)
                for path in ours:
                    if path in theirs.files:
                        files[path] = theirs.files[path]
                    else:
                        files.pop(path, None)
            _check_limits(files, state.limits)
            commit = state.new_commit(repo, target.oid, f"{pull.title} (#{pull.num})", pull.description, files)
            repo.branches[pull.target] = commit.oid
            pull.status, pull.merge_commit = "merged", commit.oid
            state.commits_applied += 1
        self._json({})

    def _branch(self, repo: Repo, branch: str) -> None:
        with self.state.lock:
            if self.command == "DELETE":
                if branch not in repo.branches:
                    raise HttpError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
                if branch == "main":
                    raise HttpError(403, "Cannot delete the main branch")
                del repo.branches[branch]
                return self._json({})
            payload = json.loads(self._body() or b"{}")
            if branch in repo.branches:
                raise HttpError(409, f"Reference already exists: refs/heads/{branch}")
            start = self.state.commit(repo, payload.get("startingPoint") or "main")
            repo.branches[branch] = start.oid
        self._json({})

    def _tag(self, repo: Repo, name: str) -> None:
        with self.state.lock:
            if self.command == "DELETE":
                if name not in repo.tags:
                    raise HttpError(404, f"Invalid rev id: {name}", "RevisionNotFound")
                del repo.tags[name]
                return self._json({})
            payload = json.loads(self._body() or b"{}")
            tag = payload["tag"]
            if tag in repo.tags:
                raise HttpError(409, f"Reference already exists: refs/tags/{tag}")
            repo.tags[tag] = self.state.commit(repo, name).oid
        self._json({})

    def _resolve(self, repo: Repo, revision: str, path: str) -> None:
        commit = self.state.commit(repo, revision)
        blob = commit.files.get(path)
        if blob is None:
            error = HttpError(404, "Entry not found", "EntryNotFound")
            return self._error(error, {"X-Repo-Commit": commit.oid})
        data = self.state.content(blob)
        headers = {
            "X-Repo-Commit": commit.oid,
            "ETag": f'"{blob.etag}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if blob.lfs_oid is not None:
            headers.update({"X-Linked-Etag": f'"{blob.lfs_oid}"', "X-Linked-Size": str(blob.size)})
        status, body = 200, data
        range_header = self.headers.get("Range")
        if range_header and range_header.startswith("bytes="):
            first, _, last = range_header[len("bytes=") :].split(",")[0].partition("-")
            if first == "":  # suffix range: the last N bytes
                start, end = max(len(data) - int(last), 0), len(data) - 1
            else:
                start, end = int(first), min(int(last), len(data) - 1) if last else len(data) - 1
            if start >= len(data):
                return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
            status, body = 206, data[start : end + 1]
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        self._send(status, body, {**headers, "Content-Length": str(len(body))})


class HubServer:
    """A running loopback Hub. `url` goes in HF_ENDPOINT; `state` is for assertions and fault injection."""

    def __init__(
        self,
        users: dict[str, str] | None = None,
        orgs: dict[str, set[str]] | None = None,
        tree_page_size: int = 1_000,
        limits: HubLimits | None = None,
    ) -> None:
        self.state = HubState(
            users or {"hf_test_token": "alice"}, orgs or {"org": {"alice"}}, tree_page_size, limits or HubLimits()
        )
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="loopback-hub", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.state.release_held()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "dataset") -> dict[str, bytes]:
        """path -> bytes of a snapshot, straight from the store (what a correct client must read back)."""
        with self.state.lock:
            repo = self.state.repos[(repo_type, repo_id)]
            commit = self.state.commit(repo, revision)
            return {path: self.state.content(blob) for path, blob in commit.files.items()}
