"""The shard writer: encodes images and streams rows into Parquet shards on a background thread.

On a GPU an SD image takes ~0.1 s while a 512 px PNG takes ~30 ms to encode on one core, so encoding,
hashing and writing run beside generation, fed through a bounded queue: the GPU never waits on the CPU,
and the queue bound keeps memory flat. A shard is streamed row group by row group into a temp file,
fsynced, hashed, renamed into place, and only then recorded (`synthset.run.records.ShardRecord`). A
filesystem error (a full disk, `ulimit -f`) ends the run with one line naming the file, and leaves no
temp file and no record behind.
"""

from __future__ import annotations

import contextlib
import io
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from synthset.errors import SynthsetError
from synthset.fsutil import describe_os_error, sha256_file, temp_path_for
from synthset.run.paths import RunDir
from synthset.run.records import ShardRecord, write_record

if TYPE_CHECKING:
    from datasets import Features
    from PIL.Image import Image

    from synthset.recipe import StorageSpec

PIL_FORMATS = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}
REJECT_THUMBNAIL_PX = 96  # rejected attempts are kept only as thumbnails, for `synthset review`


def thumbnail_bytes(image: Image, size: int = REJECT_THUMBNAIL_PX, quality: int = 80) -> bytes:
    """A small JPEG of `image` (longer side `size`), as the rejects file stores it."""
    small = image.convert("RGB")
    small.thumbnail((size, size))
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def encode_image(image: Image, storage: StorageSpec) -> bytes:
    """The stored bytes of an image: optionally resized (shorter side to `resize`), then encoded."""
    from PIL import Image as PILImage

    size = storage.stored_size(image.width, image.height)
    if size != image.size:
        image = image.resize(size, PILImage.Resampling.LANCZOS)
    buffer = io.BytesIO()
    if storage.format == "png":
        image.save(buffer, format="PNG")
    else:
        image.save(buffer, format=PIL_FORMATS[storage.format], quality=storage.quality)
    return buffer.getvalue()


@dataclass
class _OpenShard:
    name: str
    sample_ids: list[str]
    plan_digest: str
    tmp: Path
    writer: pq.ParquetWriter
    started: float
    pending: list[dict[str, Any]] = field(default_factory=list)
    written: int = 0
    dropped: list[dict[str, Any]] = field(default_factory=list)  # planned samples the quality gate dropped
    rejects: list[dict[str, Any]] = field(default_factory=list)  # rejected attempts, with their thumbnails


_FINISH = "finish"
_STOP = "stop"


@dataclass(frozen=True)
class WriterIdentity:
    """What a record says about the worker that made it."""

    worker: str
    rank: int
    world_size: int
    device: str = ""  # the torch device type it generated on: cuda, cpu, ...


class ShardWriter:
    """Owns every write of one process's shards; the generation loop only enqueues.

    Callbacks run on the writer thread: `may_publish(shard)` just before a finished shard is renamed into
    place (False: the worker lost the shard's claim, so the file is dropped and `on_shard_discarded` is
    called), `on_shard_done(record)` once the record is on disk. An error on the writer thread is re-raised
    in the generation loop at its next call.
    """

    def __init__(
        self,
        run: RunDir,
        features: Features,
        storage: StorageSpec,
        generation_key: str,
        identity: WriterIdentity,
        max_queued_batches: int = 8,
        may_publish: Callable[[str], bool] | None = None,
        on_shard_done: Callable[[ShardRecord], None] | None = None,
        on_shard_discarded: Callable[[str], None] | None = None,
        rejects_features: Features | None = None,
    ) -> None:
        self.run = run
        self.schema = features.arrow_schema
        self.rejects_schema = rejects_features.arrow_schema if rejects_features is not None else None
        self.storage = storage
        self.generation_key = generation_key
        self.identity = identity
        self.may_publish = may_publish
        self.on_shard_done = on_shard_done
        self.on_shard_discarded = on_shard_discarded
        self._queue: queue.Queue = queue.Queue(maxsize=max_queued_batches)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="synthset-shard-writer", daemon=True)
        self._thread.start()

    # -- called from the generation loop -------------------------------------------------------------
    def start_shard(self, name: str, sample_ids: list[str], plan_digest: str) -> None:
        self._put(("start", name, sample_ids, plan_digest))

    def add_batch(self, rows: list[dict[str, Any]], images: list[Image]) -> None:
        self._put(("batch", rows, images))

    def add_rejected(self, rows: list[dict[str, Any]], images: list[Image]) -> None:
        """Attempts the quality gate turned down: stored as thumbnails in the shard's rejects file."""
        if rows:
            self._put(("rejected", rows, images))

    def add_dropped(self, entries: list[dict[str, Any]]) -> None:
        """Planned samples the quality gate dropped: listed in the shard's record instead of written."""
        if entries:
            self._put(("dropped", entries))

    def finish_shard(self) -> None:
        self._put((_FINISH,))

    def close(self) -> None:
        """Drain the queue, finish writing, and re-raise any writer error."""
        self._put((_STOP,))
        self._thread.join()
        self._raise_if_failed()

    def _put(self, item: tuple) -> None:
        self._raise_if_failed()
        while True:
            try:
                self._queue.put(item, timeout=1.0)
                return
            except queue.Full:
                self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is None:
            return
        if isinstance(self._error, SynthsetError):
            raise SynthsetError(str(self._error)) from None
        raise RuntimeError("shard writer failed") from self._error

    # -- the writer thread -----------------------------------------------------------------------------
    def _run(self) -> None:
        current: _OpenShard | None = None
        name: str | None = None  # the shard being written, for error messages (set before it is opened)
        try:
            while True:
                item = self._queue.get()
                kind = item[0]
                if kind == "start":
                    name = item[1]
                    current = self._open(item[1], item[2], item[3])
                elif kind == "batch":
                    assert current is not None
                    self._add(current, item[1], item[2])
                elif kind == "rejected":
                    assert current is not None
                    for row, image in zip(item[1], item[2], strict=True):
                        current.rejects.append({**row, "thumbnail": {"bytes": thumbnail_bytes(image), "path": None}})
                elif kind == "dropped":
                    assert current is not None
                    current.dropped.extend(item[1])
                elif kind == _FINISH:
                    assert current is not None
                    self._finish(current)
                    current = None
                elif kind == _STOP:
                    if current is not None:  # the loop stopped mid-shard: nothing half-written stays
                        self._drop(current)
                    return
        except BaseException as error:  # noqa: BLE001 - handed to the generation loop
            if isinstance(error, OSError):  # a full disk, `ulimit -f`: name the shard being written
                where = self.run.shard_file(name) if name is not None else error.filename
                error = SynthsetError(describe_os_error(error, where or self.run.shards_dir, shard=name is not None))
            self._error = error
            if current is not None:
                self._drop(current)
            while True:  # unblock a producer waiting on a full queue
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break

    @staticmethod
    def _drop(shard: _OpenShard) -> None:
        with contextlib.suppress(OSError):  # closing flushes; on a full disk that fails too
            shard.writer.close()
        shard.tmp.unlink(missing_ok=True)

    def _open(self, name: str, sample_ids: list[str], plan_digest: str) -> _OpenShard:
        final = self.run.shard_file(name)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_path_for(final)
        try:
            writer = pq.ParquetWriter(tmp, self.schema)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return _OpenShard(name, sample_ids, plan_digest, tmp, writer, time.monotonic())

    def _add(self, shard: _OpenShard, rows: list[dict[str, Any]], images: list[Image]) -> None:
        for row, image in zip(rows, images, strict=True):
            shard.pending.append({**row, "image": {"bytes": encode_image(image, self.storage), "path": None}})
        if len(shard.pending) >= self.storage.row_group_size:
            self._flush(shard)

    def _flush(self, shard: _OpenShard, final: bool = False) -> None:
        size = self.storage.row_group_size
        while shard.pending:
            chunk, shard.pending = shard.pending[:size], shard.pending[size:]
            if len(chunk) < size and not final:
                shard.pending = chunk  # keep a partial row group until the shard ends
                return
            shard.writer.write_table(pa.Table.from_pylist(chunk, schema=self.schema), row_group_size=size)
            shard.written += len(chunk)

    def _write_rejects(self, shard: _OpenShard) -> Path | None:
        """The shard's rejected attempts to a temp file beside their final name (None when there are none)."""
        if not shard.rejects:
            return None
        if self.rejects_schema is None:
            raise RuntimeError(f"shard {shard.name}: rejected attempts but no rejects schema")
        tmp = temp_path_for(self.run.rejects_file(shard.name))
        try:
            pq.write_table(pa.Table.from_pylist(shard.rejects, schema=self.rejects_schema), tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    def _finish(self, shard: _OpenShard) -> None:
        self._flush(shard, final=True)
        shard.writer.close()
        if shard.written + len(shard.dropped) != len(shard.sample_ids):
            raise RuntimeError(
                f"shard {shard.name}: wrote {shard.written} rows and dropped {len(shard.dropped)}, "
                f"planned {len(shard.sample_ids)}"
            )
        with open(shard.tmp, "rb+") as f:
            os.fsync(f.fileno())
        digest, size = sha256_file(shard.tmp), shard.tmp.stat().st_size
        rejects_tmp = self._write_rejects(shard)
        if self.may_publish is not None and not self.may_publish(shard.name):
            shard.tmp.unlink(missing_ok=True)
            if rejects_tmp is not None:
                rejects_tmp.unlink(missing_ok=True)
            if self.on_shard_discarded is not None:
                self.on_shard_discarded(shard.name)
            return
        rejects_digest, rejects_size = "", 0
        rejects_final = self.run.rejects_file(shard.name)
        if rejects_tmp is not None:
            rejects_digest, rejects_size = sha256_file(rejects_tmp), rejects_tmp.stat().st_size
            os.replace(rejects_tmp, rejects_final)  # before the shard: a record never names a missing file
        else:
            rejects_final.unlink(missing_ok=True)  # left by an earlier making of this shard
        final = self.run.shard_file(shard.name)
        os.replace(shard.tmp, final)
        record = ShardRecord(
            shard=shard.name,
            file=final.relative_to(self.run.shards_dir).as_posix(),
            rows=shard.written,
            sample_ids=shard.sample_ids,
            sha256=digest,
            bytes=size,
            generation_key=self.generation_key,
            plan_digest=shard.plan_digest,
            rank=self.identity.rank,
            world_size=self.identity.world_size,
            seconds=round(time.monotonic() - shard.started, 3),
            worker=self.identity.worker,
            device=self.identity.device,
            dropped=shard.dropped,
            rejects_sha256=rejects_digest,
            rejects_bytes=rejects_size,
        )
        write_record(self.run, record)
        if self.on_shard_done is not None:
            self.on_shard_done(record)
