"""Shard claims: one winner per race, live claims respected, expired ones taken over exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from synthset.run.claims import ClaimBook, ClaimLost, Worker, current_claim, live_claims
from synthset.run.paths import RunDir

SHARD = "naive/train-b0-00003"


@pytest.fixture
def run(tmp_path: Path) -> RunDir:
    return RunDir(tmp_path / "run")


def race(run: RunDir, contenders: int, shard: str = SHARD, lease: float = 60.0) -> list[ClaimBook]:
    """`contenders` workers released at once to claim one shard; returns the books that won.

    The winners' heartbeats are stopped after the race (as a paused worker's would be), so a test goes on
    against claims that age; the local and the S3 claim tests (test_store.py) share this.
    """
    books = [ClaimBook(run, Worker(f"w{i}", "test-host", os.getpid()), lease_seconds=lease) for i in range(contenders)]
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
        book._stop.set()
    return winners


def test_racing_workers_one_wins_the_others_move_on(run: RunDir):
    for round_ in range(20):
        shard = f"naive/train-b0-{round_:05d}"
        winners = race(run, 8, shard)
        assert len(winners) == 1, f"round {round_}: {len(winners)} winners"
        assert current_claim(run, shard).worker == winners[0].worker


def test_a_live_claim_is_left_alone_and_released_claims_are_free_again(run: RunDir):
    first, second = ClaimBook(run, lease_seconds=60), ClaimBook(run, lease_seconds=60)
    assert first.try_claim(SHARD) is not None
    assert second.try_claim(SHARD) is None
    assert [c.shard for c in live_claims(run, 60)] == [SHARD]
    first.release(SHARD)
    assert current_claim(run, SHARD) is None
    assert second.try_claim(SHARD) is not None
    first.close()
    second.close()


def test_an_expired_lease_is_taken_over_exactly_once(run: RunDir):
    # A holder on another host (so it cannot be proven dead) that stopped renewing its lease.
    stale = ClaimBook(run, Worker("gone", "another-host", 1), lease_seconds=0.5)
    assert stale.try_claim(SHARD) is not None
    stale._stop.set()  # no more heartbeats: it is paused or dead
    assert race(run, 6, lease=60.0) == []  # within its lease, nobody takes it
    old = time.time() - 5
    os.utime(run.root / current_claim(run, SHARD).key, (old, old))  # its last heartbeat was 5 s ago
    # 3 s, not 1: a contender judges the claim by its own lease, and under a loaded test run (two xdist
    # workers) one that reached the shard a second after the winner rightly took over a second time
    winners = race(run, 6, lease=3.0)
    assert len(winners) == 1
    claim = current_claim(run, SHARD)
    assert (claim.epoch, claim.worker) == (1, winners[0].worker)
    assert not Path(f"{run.claims_dir / SHARD}.claim.0").exists()  # the taker cleared the expired epoch
    with pytest.raises(ClaimLost):
        stale.check_held(SHARD)  # the paused holder learns it lost the shard before publishing it
    stale.heartbeat_once()
    assert SHARD in stale._lost


def test_a_claim_of_a_dead_process_on_this_host_is_taken_at_once(run: RunDir):
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    dead = Worker("dead", os.uname().nodename, int(child.stdout))
    assert ClaimBook(run, dead, lease_seconds=3600).try_claim(SHARD) is not None
    taker = ClaimBook(run, lease_seconds=3600)
    assert taker.try_claim(SHARD) is not None  # no need to wait an hour for the lease
    taker.close()


def test_the_heartbeat_keeps_a_claim_alive_past_its_lease(run: RunDir):
    holder = ClaimBook(run, lease_seconds=0.4)
    assert holder.try_claim(SHARD) is not None
    time.sleep(1.2)  # three leases: without heartbeats it would have expired
    other = ClaimBook(run, Worker("other", "another-host", 1), lease_seconds=0.4)
    assert other.try_claim(SHARD) is None
    holder.check_held(SHARD)
    holder.close()
    assert current_claim(run, SHARD) is None  # close gives back what is still held


def test_a_claim_file_is_never_seen_half_written(run: RunDir):
    book = ClaimBook(run, lease_seconds=60)
    claim = book.try_claim(SHARD)
    path = run.root / claim.key
    data = json.loads(path.read_text())
    assert set(data) == {"worker", "host", "pid", "since"}
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp-")]
    book.close()
