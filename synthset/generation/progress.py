"""The progress bar of a generate run: one bar on the main process with the count of the whole run.

The count comes from the shard records of every worker (records are immutable once written, so each is
parsed once and re-read only when its file changes), plus this process's images that are generated but
not yet recorded. A shard being made *again* (its record failed its checksum) still has its old record
on disk: that record is left out of the count until it is replaced, so redone shards are not counted
twice, and the bar never moves backwards.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from synthset.run.paths import RunDir
from synthset.run.records import ShardRecord, read_record

PROGRESS_REFRESH_SECONDS = 5.0


class GlobalProgress:
    def __init__(self, run: RunDir, total: int, generation_key: str, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.run = run
        self.generation_key = generation_key
        self.enabled = enabled
        self._rows_by_record: dict[Path, tuple[float, int]] = {}
        self._stale: dict[Path, float] = {}  # record path -> the mtime of the old record not to count
        self._in_flight: dict[str, int] = {}  # shard -> images generated here, not yet recorded
        self._lock = threading.Lock()
        self._last_refresh = 0.0
        initial = self._recorded_rows() if enabled else 0
        self.bar = tqdm(total=total, initial=initial, unit="img", desc="generate", disable=None if enabled else True)

    def _recorded_rows(self) -> int:
        for path in self.run.shards_dir.glob("*/*.json"):
            if path.name.startswith("."):
                continue
            try:
                mtime = path.stat().st_mtime
            except FileNotFoundError:
                continue
            if self._rows_by_record.get(path, (None, 0))[0] != mtime:
                record = read_record(path)
                if record is None:
                    continue
                rows = record.settled if record.generation_key == self.generation_key else 0
                self._rows_by_record[path] = (mtime, rows)
        with self._lock:
            stale = dict(self._stale)
        return sum(rows for path, (mtime, rows) in self._rows_by_record.items() if stale.get(path) != mtime)

    def redoing(self, shard: str) -> None:
        """`shard` is made again: its current record no longer counts until a new one replaces it."""
        path = self.run.record_file(shard)
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return
        with self._lock:
            self._stale[path] = mtime

    def generated(self, shard: str, count: int) -> None:
        """`count` more planned samples of `shard` are settled here (written, or dropped by the quality gate)."""
        with self._lock:
            self._in_flight[shard] = self._in_flight.get(shard, 0) + count
        self.refresh()

    def recorded(self, record: ShardRecord) -> None:
        with self._lock:
            self._in_flight.pop(record.shard, None)

    def discarded(self, shard: str) -> None:
        """A shard made here but not published (another worker took its claim over)."""
        with self._lock:
            self._in_flight.pop(shard, None)

    def refresh(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last_refresh < PROGRESS_REFRESH_SECONDS:
            self.bar.update(0)
            return
        self._last_refresh = now
        recorded = self._recorded_rows()
        with self._lock:
            in_flight = sum(self._in_flight.values())
        self.bar.update(max(0, recorded + in_flight - self.bar.n))

    def close(self) -> None:
        self.refresh(force=True)
        self.bar.close()
