"""Shard claims: which live worker is making which shard, so any number of workers can share one run.

A worker makes a shard only while it holds the shard's claim. Claims are files under `shards/.claims/`,
one per shard and *epoch*: `<config>/<split>-b<band>-NNNNN.claim.<epoch>`. Taking a claim is creating
the next epoch's file exclusively (written to a private temp file, then hard-linked to its name: `link`
fails if the name exists, atomically on POSIX and on NFS, and the claim is never seen half-written), so
when several workers race for a shard exactly one wins; the losers move on. The claim of a shard is its
highest epoch. The holder keeps it alive by touching the file (a heartbeat thread does it); a claim
whose file has not been touched for `lease_seconds`, or whose holder is a process of this host that no
longer runs, is *expired*, and any worker may take the shard over by creating the next epoch. A worker
that took a shard over deletes the older epochs; a holder that finishes deletes its own.

Why epochs rather than one file that is replaced: replacing a file only if it still holds what a worker
read has no atomic form on a POSIX filesystem, while creating a name that does not exist yet does. Two
workers that both judged epoch e expired both try to create e + 1, and one of them fails.

Even if a paused holder wakes after its lease was taken over and finishes the same shard, nothing breaks:
a shard's bytes depend only on the plan, and its record is replaced atomically. The claim only stops
live workers from doing the same work twice.

Lease times are measured on the filesystem's clock (the mtime of a file this worker just touched), not
this host's, so hosts with skewed clocks sharing a network filesystem agree on what is expired.

On an object store (`s3://` runs, see run/store.py) the same protocol runs on objects: an epoch is
created by a put with `If-None-Match: *`, a heartbeat is a put with `If-Match: <the claim's ETag>` (it
fails once a taker deleted the epoch), and the store's `Last-Modified` and `Date` are the clock.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from synthset.fsutil import TEMP_PREFIX, owner_token, pid_alive
from synthset.run.paths import CLAIMS_DIR, SHARDS_DIR, RunDir
from synthset.run.store import PreconditionFailed

DEFAULT_LEASE_SECONDS = 300.0  # a holder that misses heartbeats this long is taken to be dead
_EPOCH_MARK = ".claim."


@dataclass(frozen=True)
class Worker:
    """Who holds a claim: enough to find the process (host, pid) and to tell restarts apart (id)."""

    id: str
    host: str
    pid: int

    @classmethod
    def this_process(cls) -> Worker:
        return cls(id=uuid.uuid4().hex[:12], host=socket.gethostname(), pid=os.getpid())

    @property
    def is_local_and_dead(self) -> bool:
        """A process of this host that no longer runs: its claims are expired at once, without waiting."""
        return self.host == socket.gethostname() and not pid_alive(self.pid)


@dataclass(frozen=True)
class Claim:
    shard: str
    epoch: int
    worker: Worker
    since: float  # when the holder took it (filesystem or store clock)
    touched: float  # the claim file's mtime (the object's Last-Modified): the holder's last heartbeat
    key: str  # the claim file's path relative to the run's root (its key on an object store)
    etag: str = ""  # on an object store: the object's ETag, the condition of the holder's heartbeats

    def expired(self, now: float, lease_seconds: float) -> bool:
        return self.worker.is_local_and_dead or now - self.touched > lease_seconds


class ClaimLost(Exception):
    """The claim this worker held was taken over (it missed its heartbeats, e.g. while paused)."""


def _claim_prefix(shard: str) -> str:
    return f"{SHARDS_DIR}/{CLAIMS_DIR}/{shard}{_EPOCH_MARK}"


def _claim_body(worker: Worker, since: float) -> bytes:
    return json.dumps({"worker": worker.id, "host": worker.host, "pid": worker.pid, "since": since}).encode()


def _parse(shard: str, epoch: int, key: str, data: bytes, touched: float, etag: str = "") -> Claim | None:
    try:
        body = json.loads(data)
        worker = Worker(body["worker"], body["host"], int(body["pid"]))
        return Claim(shard, epoch, worker, float(body["since"]), touched, key, etag)
    except (ValueError, KeyError, TypeError):
        return None  # being written (never on a store: puts are whole): treated as no claim at this epoch


class _FileClaims:
    """Claims as files on a POSIX or NFS filesystem: create-exclusive by `link`, heartbeat by `utime`."""

    def __init__(self, run: RunDir):
        self.run = run

    def epochs(self, shard: str) -> list[tuple[int, str]]:
        prefix = _claim_prefix(shard)
        folder = self.run.root / prefix.rsplit("/", 1)[0]
        if not folder.is_dir():
            return []
        stem = prefix.rsplit("/", 1)[1]
        found = []
        for path in folder.iterdir():
            if path.name.startswith(stem) and path.name[len(stem) :].isdigit():
                found.append((int(path.name[len(stem) :]), self.run.rel(path)))
        return sorted(found)

    def read(self, shard: str, epoch: int, key: str) -> Claim | None:
        path = self.run.root / key
        try:
            touched = path.stat().st_mtime
            return _parse(shard, epoch, key, path.read_bytes(), touched)
        except OSError:
            return None  # gone meanwhile

    def create(self, shard: str, epoch: int, body: bytes) -> Claim | None:
        key = f"{_claim_prefix(shard)}{epoch}"
        path = self.run.root / key
        if not _create_exclusive(path, body):
            return None
        return _parse(shard, epoch, key, body, path.stat().st_mtime)

    def touch(self, claim: Claim) -> Claim | None:
        try:
            os.utime(self.run.root / claim.key)
        except FileNotFoundError:
            return None
        return claim

    def exists(self, claim: Claim) -> bool:
        return (self.run.root / claim.key).exists()

    def delete(self, key: str) -> None:
        (self.run.root / key).unlink(missing_ok=True)

    def now(self, worker: Worker) -> float:
        """The filesystem's current time: the mtime of a file this worker touches now."""
        clock = self.run.claims_dir / ".clock" / f"{worker.host}.{worker.pid}.{worker.id}"
        clock.parent.mkdir(parents=True, exist_ok=True)
        clock.touch()
        return clock.stat().st_mtime

    def forget_clock(self, worker: Worker) -> None:
        with contextlib.suppress(OSError):
            (self.run.claims_dir / ".clock" / f"{worker.host}.{worker.pid}.{worker.id}").unlink()

    def shards(self) -> set[str]:
        if not self.run.claims_dir.is_dir():
            return set()
        return {
            path.relative_to(self.run.claims_dir).as_posix().rsplit(_EPOCH_MARK, 1)[0]
            for path in self.run.claims_dir.rglob(f"*{_EPOCH_MARK}*")
            if not path.name.startswith(".")
        }


class _StoreClaims:
    """Claims as objects: create by a put with `If-None-Match: *`, heartbeat by a put with `If-Match`.

    The store's Last-Modified is the heartbeat time and its Date the current time, so leases are measured
    on one clock whatever the hosts' clocks say.
    """

    def __init__(self, run: RunDir):
        assert run.store is not None
        self.run, self.store = run, run.store

    def epochs(self, shard: str) -> list[tuple[int, str]]:
        prefix = _claim_prefix(shard)
        found = []
        for key in self.store.list(prefix):
            tail = key[len(prefix) :]
            if tail.isdigit():
                found.append((int(tail), key))
        return sorted(found)

    def read(self, shard: str, epoch: int, key: str) -> Claim | None:
        got = self.store.read(key)
        if got is None:
            return None
        data, stored = got
        return _parse(shard, epoch, key, data, stored.modified, stored.etag)

    def create(self, shard: str, epoch: int, body: bytes) -> Claim | None:
        key = f"{_claim_prefix(shard)}{epoch}"
        try:
            stored = self.store.put(key, body, if_absent=True)
        except PreconditionFailed:
            return None
        return _parse(shard, epoch, key, body, stored.modified, stored.etag)

    def touch(self, claim: Claim) -> Claim | None:
        try:
            stored = self.store.put(claim.key, _claim_body(claim.worker, claim.since), if_etag=claim.etag)
        except (PreconditionFailed, FileNotFoundError):
            return None  # deleted or replaced by a worker that took the shard over
        return replace(claim, touched=stored.modified, etag=stored.etag)

    def exists(self, claim: Claim) -> bool:
        return self.store.stat(claim.key) is not None

    def delete(self, key: str) -> None:
        self.store.delete(key)

    def now(self, worker: Worker) -> float:
        return self.store.now()

    def forget_clock(self, worker: Worker) -> None:
        pass

    def shards(self) -> set[str]:
        prefix = f"{SHARDS_DIR}/{CLAIMS_DIR}/"
        return {key[len(prefix) :].rsplit(_EPOCH_MARK, 1)[0] for key in self.store.list(prefix) if _EPOCH_MARK in key}


def claim_space(run: RunDir) -> _FileClaims | _StoreClaims:
    """Where the run's claims live: beside its shards, or in its object store."""
    return _StoreClaims(run) if run.store is not None else _FileClaims(run)


def current_claim(run: RunDir, shard: str, space: _FileClaims | _StoreClaims | None = None) -> Claim | None:
    """The shard's claim (its highest epoch), or None when nobody claims it."""
    space = space or claim_space(run)
    for epoch, key in reversed(space.epochs(shard)):
        claim = space.read(shard, epoch, key)
        if claim is not None:
            return claim
    return None


def _create_exclusive(path: Path, data: bytes) -> bool:
    """Create `path` holding `data` only if it does not exist; False when another worker created it first.

    The data is written to a private temp file first and hard-linked to `path` (`link` fails if the name
    exists, atomically, on NFS too), so a claim file is never seen empty or half-written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{TEMP_PREFIX}{owner_token()}-{uuid.uuid4().hex[:8]}-{path.name}")  # unique per call
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True


class ClaimBook:
    """The claims one worker holds, with the heartbeat that keeps them alive."""

    def __init__(self, run: RunDir, worker: Worker | None = None, lease_seconds: float = DEFAULT_LEASE_SECONDS):
        self.run = run
        self.space = claim_space(run)
        self.worker = worker or Worker.this_process()
        self.lease_seconds = lease_seconds
        self._held: dict[str, Claim] = {}
        self._lost: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    # -- taking and giving back ----------------------------------------------------------------------
    def try_claim(self, shard: str) -> Claim | None:
        """Take the shard if nobody holds it or its holder's lease expired; None when a live worker has it."""
        while True:
            current = current_claim(self.run, shard, self.space)
            if current is not None and current.worker == self.worker:
                return current
            now = self.space.now(self.worker)
            if current is not None and not current.expired(now, self.lease_seconds):
                return None
            epoch = current.epoch + 1 if current is not None else 0
            claim = self.space.create(shard, epoch, _claim_body(self.worker, now))
            if claim is None:
                continue  # another worker took this epoch first: look again (it is probably alive)
            for older_epoch, older in self.space.epochs(shard):
                if older_epoch < epoch:
                    self.space.delete(older)  # the expired holders' files: ours to clear now
            with self._lock:
                self._held[shard] = claim
                self._lost.discard(shard)
            self._start_heartbeat()
            return claim

    def release(self, shard: str) -> None:
        """Give the shard back (it is finished, or this worker stops): delete our own epoch file only."""
        with self._lock:
            claim = self._held.pop(shard, None)
        if claim is not None:
            self.space.delete(claim.key)

    def release_all(self) -> None:
        for shard in list(self._held):
            self.release(shard)

    def check_held(self, shard: str) -> None:
        """Raise ClaimLost if another worker took the shard over since we claimed it."""
        with self._lock:
            lost = shard in self._lost
            claim = self._held.get(shard)
        if lost or claim is None or not self.space.exists(claim):
            raise ClaimLost(f"{shard}: its claim was taken over by another worker")

    @property
    def held(self) -> list[str]:
        with self._lock:
            return sorted(self._held)

    # -- the heartbeat -------------------------------------------------------------------------------
    def _start_heartbeat(self) -> None:
        if self._heartbeat is None:
            self._heartbeat = threading.Thread(target=self._beat, name="synthset-claim-heartbeat", daemon=True)
            self._heartbeat.start()

    def heartbeat_once(self) -> None:
        """Touch every held claim; one that vanished was taken over by a worker that thought us dead."""
        with self._lock:
            held = list(self._held.values())
        for claim in held:
            touched = self.space.touch(claim)
            with self._lock:
                if touched is None:
                    self._lost.add(claim.shard)
                elif self._held.get(claim.shard) is claim:
                    self._held[claim.shard] = touched  # its new ETag is the next beat's condition

    def _beat(self) -> None:
        interval = max(0.05, self.lease_seconds / 4)
        while not self._stop.wait(interval):
            self.heartbeat_once()

    def close(self) -> None:
        """Stop the heartbeat and give back every claim still held (e.g. after an error)."""
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        self.release_all()
        self.space.forget_clock(self.worker)


def live_claims(run: RunDir, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> list[Claim]:
    """Every current, unexpired claim of the run (for `synthset status` and for tests)."""
    return [claim for claim in all_claims(run) if not claim.expired(claims_now(run), lease_seconds)]


def all_claims(run: RunDir) -> list[Claim]:
    """Every shard's current claim, expired or not."""
    space = claim_space(run)
    claims = [current_claim(run, shard, space) for shard in sorted(space.shards())]
    return [claim for claim in claims if claim is not None]


def claims_now(run: RunDir) -> float:
    """The clock leases are measured on: this host's for a local run, the store's for an object-store run."""
    return run.store.now() if run.store is not None else time.time()
