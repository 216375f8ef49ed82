"""An on-disk cache of LLM answers, so re-running a plan costs no LLM call and a killed run resumes.

Why sqlite: each answer must be durable the moment it arrives (a prompt stage for 1,000 classes x 100
prompts runs for hours against an LLM, and may be killed at any point), lookups must be by key, and the
file must never be half-written. sqlite gives all three in the standard library: one committed
transaction per answer, in WAL mode, survives the process being killed at any instruction (a kill
cannot tear a commit; only power loss could drop the last few, with `synchronous=NORMAL`).

Schema (version 2, in table `meta`):

    completions(key TEXT PRIMARY KEY,   -- sha256 of the canonical JSON of the identity fields below
                backend TEXT, model TEXT, revision TEXT,   -- revision '' when none
                params TEXT,            -- canonical JSON: temperature, top_p, max_new_tokens
                seed,                   -- INTEGER; TEXT for a seed beyond sqlite's signed 64 bits
                prompt TEXT, output TEXT,
                created REAL,           -- unix time, for people reading the file
                endpoint TEXT)          -- the server that answered (openai), '' when not recorded

The key covers everything that decides a request's answer (backend, model, revision, sampling
parameters, prompt, seed) and nothing about how it was executed (batch size, concurrency, device, the
server's URL or port), so a resumed run on another machine or with other batch sizes still hits.
The readable columns let a person audit what the LLM was asked and said with any sqlite client, and
which server said it (`endpoint`, recorded but never part of the key). A version-1 file (no `endpoint`)
is upgraded in place when opened; its rows keep working and read ''.

One cache may serve several threads at once (the plan writes several classes' prompts at a time): every
use of the connection holds a lock, which is never held while waiting for the backend.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synthset.errors import SynthsetError
from synthset.generation.llm.base import LLMBackend, LLMRequest, StreamingBackend, one_line

if TYPE_CHECKING:
    from synthset.recipe import LLMSpec

SCHEMA_VERSION = "2"
_LOOKUP_CHUNK = 500  # keys per SELECT ... IN (...): well under sqlite's bound-parameter limit

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS completions (
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    revision TEXT NOT NULL,
    params TEXT NOT NULL,
    seed NOT NULL,
    prompt TEXT NOT NULL,
    output TEXT NOT NULL,
    created REAL NOT NULL,
    endpoint TEXT NOT NULL DEFAULT ''
);
"""
_COLUMNS = "key, backend, model, revision, params, seed, prompt, output, created, endpoint"


def sampling_params(spec: LLMSpec) -> dict[str, Any]:
    """The spec fields that change what a model answers (part of the cache key)."""
    return {"temperature": spec.temperature, "top_p": spec.top_p, "max_new_tokens": spec.max_new_tokens}


class LLMCache:
    """Answers requests from disk where it can and sends only the misses to `backend`.

    `backend_calls` counts requests actually sent to the backend (identical requests within one call
    are sent once), `hits` counts requests answered from disk; both accumulate over calls. Several
    threads may call `complete` at once (their requests then share the backend), and several processes
    may share the file (sqlite locks it).
    """

    def __init__(self, path: Path, backend: LLMBackend, spec: LLMSpec) -> None:
        self.path = Path(path)
        self.backend = backend
        self.spec = spec
        self.backend_calls = 0
        self.hits = 0
        self._identity = {
            "backend": backend.name,
            "model": backend.model,
            "revision": spec.revision or "",
            "params": sampling_params(spec),
        }
        self._params_json = json.dumps(self._identity["params"], sort_keys=True)
        self._lock = threading.RLock()
        self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # timeout: wait for another process's write lock instead of failing at once.
            # check_same_thread off: several threads use the connection, one at a time under self._lock.
            db = sqlite3.connect(self.path, timeout=60.0, check_same_thread=False)
            # WAL: a commit appends to the log instead of rewriting pages, so one commit per answer is cheap.
            # (Where WAL is refused the default rollback journal is just as safe against a kill, only slower.)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            db.execute("BEGIN IMMEDIATE")  # one process at a time reads the version and upgrades the file
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            (version,) = db.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
            if version == "1":  # the same table without `endpoint`: add it, every old row reads ''
                db.execute("ALTER TABLE completions ADD COLUMN endpoint TEXT NOT NULL DEFAULT ''")
                db.execute("UPDATE meta SET value = ? WHERE name = 'schema'", (SCHEMA_VERSION,))
                version = SCHEMA_VERSION
            db.commit()
        except sqlite3.DatabaseError as error:
            raise SynthsetError(
                f"{self.path}: not a usable LLM cache ({one_line(str(error))}); delete it to start over"
            ) from None
        if version != SCHEMA_VERSION:
            db.close()
            raise SynthsetError(
                f"{self.path}: LLM cache schema {version!r}, this synthset writes {SCHEMA_VERSION!r}; "
                "delete it to start over"
            )
        return db

    def key(self, request: LLMRequest) -> str:
        """The request's cache key: sha256 over its identity as canonical JSON."""
        identity = {**self._identity, "prompt": request.prompt, "seed": request.seed}
        return hashlib.sha256(json.dumps(identity, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def complete(self, requests: list[LLMRequest]) -> list[str]:
        """Outputs in request order: stored ones from disk, the rest from the backend, each stored on arrival.

        If the backend fails part-way the exception propagates, and every answer received before it is
        already on disk: calling again sends only what is still missing.
        """
        keys = [self.key(request) for request in requests]
        with self._lock:
            found = self._lookup(set(keys))
            self.hits += sum(key in found for key in keys)
        missing: dict[str, LLMRequest] = {}
        for key, request in zip(keys, requests, strict=True):
            if key not in found and key not in missing:
                missing[key] = request
        if missing:
            missing_keys = list(missing)
            with self._lock:
                self.backend_calls += len(missing_keys)
            for index, output, endpoint in self._ask_backend(list(missing.values())):
                self._store(missing_keys[index], missing[missing_keys[index]], output, endpoint)
                found[missing_keys[index]] = output
            unanswered = sum(key not in found for key in missing_keys)
            if unanswered:
                raise RuntimeError(f"{self.backend.name} backend left {unanswered} of {len(missing_keys)} unanswered")
        return [found[key] for key in keys]

    def _ask_backend(self, requests: list[LLMRequest]) -> Iterator[tuple[int, str, str]]:
        """`(index, output, endpoint)` as the backend produces them: streamed where it can, else per batch.

        A streaming backend may yield `(index, output)` or `(index, output, the server that answered)`.
        """
        if isinstance(self.backend, StreamingBackend):
            for index, output, *endpoint in self.backend.stream(requests):
                yield index, output, endpoint[0] if endpoint else ""
            return
        step = self.spec.batch_size
        for start in range(0, len(requests), step):
            chunk = requests[start : start + step]
            outputs = self.backend.complete(chunk)
            if len(outputs) != len(chunk):
                raise RuntimeError(f"{self.backend.name} backend returned {len(outputs)} outputs for {len(chunk)}")
            for index, output in enumerate(outputs, start):
                yield index, output, ""

    def _lookup(self, keys: set[str]) -> dict[str, str]:
        ordered = sorted(keys)
        found: dict[str, str] = {}
        for start in range(0, len(ordered), _LOOKUP_CHUNK):
            chunk = ordered[start : start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            found.update(self._db.execute(f"SELECT key, output FROM completions WHERE key IN ({marks})", chunk))
        return found

    def _store(self, key: str, request: LLMRequest, output: str, endpoint: str) -> None:
        if not isinstance(output, str):
            raise TypeError(f"{self.backend.name} backend returned {type(output).__name__}, not str")
        row = (
            key,
            self._identity["backend"],
            self._identity["model"],
            self._identity["revision"],
            self._params_json,
            request.seed if -(2**63) <= request.seed < 2**63 else str(request.seed),
            request.prompt,
            output,
            time.time(),
            endpoint,
        )
        # One transaction per answer: committed (durable against a kill) on leaving the `with self._db` block.
        with self._lock, self._db:
            self._db.execute(f"INSERT OR REPLACE INTO completions ({_COLUMNS}) VALUES ({','.join('?' * 10)})", row)

    @property
    def slots(self) -> int:
        """Requests the backend runs at once when called from several threads (0: one call at a time)."""
        return getattr(self.backend, "slots", 0)

    def status(self) -> str:
        """Short, for a progress bar: what was sent and cached, and the servers' state where there are any."""
        with self._lock:
            text = f"LLM {self.backend_calls:,} sent, {self.hits:,} cached"
        backend_status = getattr(self.backend, "status", None)
        return f"{text}, {backend_status()}" if backend_status is not None else text

    def report(self) -> str:
        """The backend's own summary (the openai backend: each server's share, outages, failovers), or ''."""
        backend_report = getattr(self.backend, "report", None)
        return backend_report() if backend_report is not None else ""

    def __len__(self) -> int:
        """Answers stored in the file (over every backend and model)."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM completions").fetchone()[0]

    def close(self) -> None:
        """Close the file, and the backend's threads where it has any."""
        backend_close = getattr(self.backend, "close", None)
        if backend_close is not None:
            backend_close()
        with self._lock:
            self._db.close()

    def __enter__(self) -> LLMCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
