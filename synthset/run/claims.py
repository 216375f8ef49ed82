"""Shard claims: which live worker is making which shard, so any number of workers can share one run.

A worker makes a shard only while it holds the shard's claim. Claims are files under `shards/.claims/`,
one per shard and *epoch*: `<config>/<split>-b<band>-NNNNN.claim.<epoch>`. Taking a claim is creating
the next epoch's file with create-exclusive (`O_CREAT | O_EXCL`, atomic on POSIX and on NFS v3+), so
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
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from synthset.fsutil import TEMP_PREFIX, owner_token, pid_alive
from synthset.run.paths import RunDir

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
    since: float  # when the holder took it (filesystem clock)
    touched: float  # the claim file's mtime: the holder's last heartbeat
    path: Path

    def expired(self, now: float, lease_seconds: float) -> bool:
        return self.worker.is_local_and_dead or now - self.touched > lease_seconds


class ClaimLost(Exception):
    """The claim this worker held was taken over (it missed its heartbeats, e.g. while paused)."""


def _claim_stem(run: RunDir, shard: str) -> Path:
    return run.claims_dir / shard


def _epoch_files(run: RunDir, shard: str) -> list[tuple[int, Path]]:
    stem = _claim_stem(run, shard)
    if not stem.parent.is_dir():
        return []
    prefix = stem.name + _EPOCH_MARK
    epochs = []
    for path in stem.parent.iterdir():
        if path.name.startswith(prefix) and path.name[len(prefix) :].isdigit():
            epochs.append((int(path.name[len(prefix) :]), path))
    return sorted(epochs)


def _read_claim(shard: str, epoch: int, path: Path) -> Claim | None:
    try:
        touched = path.stat().st_mtime
        data = json.loads(path.read_text(encoding="utf-8"))
        worker = Worker(data["worker"], data["host"], int(data["pid"]))
        return Claim(shard, epoch, worker, float(data["since"]), touched, path)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # gone meanwhile, or being written: treated as no claim at this epoch


def current_claim(run: RunDir, shard: str) -> Claim | None:
    """The shard's claim (its highest epoch), or None when nobody claims it."""
    epochs = _epoch_files(run, shard)
    for epoch, path in reversed(epochs):
        claim = _read_claim(shard, epoch, path)
        if claim is not None:
            return claim
    return None


def filesystem_now(run: RunDir, worker: Worker) -> float:
    """The filesystem's current time: the mtime of a file this worker touches now."""
    clock = run.claims_dir / ".clock" / f"{worker.host}.{worker.pid}.{worker.id}"
    clock.parent.mkdir(parents=True, exist_ok=True)
    clock.touch()
    return clock.stat().st_mtime


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
            current = current_claim(self.run, shard)
            if current is not None and current.worker == self.worker:
                return current
            if current is not None and not current.expired(filesystem_now(self.run, self.worker), self.lease_seconds):
                return None
            epoch = current.epoch + 1 if current is not None else 0
            path = Path(f"{_claim_stem(self.run, shard)}{_EPOCH_MARK}{epoch}")
            now = filesystem_now(self.run, self.worker)
            body = {"worker": self.worker.id, "host": self.worker.host, "pid": self.worker.pid, "since": now}
            if not _create_exclusive(path, json.dumps(body).encode()):
                continue  # another worker took this epoch first: look again (it is probably alive)
            claim = Claim(shard, epoch, self.worker, now, path.stat().st_mtime, path)
            for older_epoch, older in _epoch_files(self.run, shard):
                if older_epoch < epoch:
                    older.unlink(missing_ok=True)  # the expired holders' files: ours to clear now
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
            claim.path.unlink(missing_ok=True)

    def release_all(self) -> None:
        for shard in list(self._held):
            self.release(shard)

    def check_held(self, shard: str) -> None:
        """Raise ClaimLost if another worker took the shard over since we claimed it."""
        with self._lock:
            lost = shard in self._lost
            claim = self._held.get(shard)
        if lost or claim is None or not claim.path.exists():
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
            try:
                os.utime(claim.path)
            except FileNotFoundError:
                with self._lock:
                    self._lost.add(claim.shard)

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
        with contextlib.suppress(OSError):
            (self.run.claims_dir / ".clock" / f"{self.worker.host}.{self.worker.pid}.{self.worker.id}").unlink()


def live_claims(run: RunDir, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> list[Claim]:
    """Every current, unexpired claim of the run (for `synthset status` and for tests)."""
    if not run.claims_dir.is_dir():
        return []
    now = time.time()
    claims = []
    shards = {
        path.relative_to(run.claims_dir).as_posix().rsplit(_EPOCH_MARK, 1)[0]
        for path in run.claims_dir.rglob(f"*{_EPOCH_MARK}*")
        if not path.name.startswith(".")
    }
    for shard in sorted(shards):
        claim = current_claim(run, shard)
        if claim is not None and not claim.expired(now, lease_seconds):
            claims.append(claim)
    return claims
