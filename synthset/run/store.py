"""Run directories on an object store (`s3://bucket/prefix`): the store's operations a run needs, one place.

An object store has no rename and no append, so a run there keeps to what it does have:
- **A put is atomic.** Readers see the whole old object or the whole new one, never a half (a multipart
  upload appears only when it completes). So a file is written in local scratch, then put under its final
  key: no temp key, no rename.
- **Conditional puts.** `If-None-Match: *` creates a key only if it does not exist (the claim of a shard,
  like `O_EXCL` on POSIX); `If-Match: <etag>` replaces a key only if nobody replaced it since we read it
  (a claim's heartbeat). S3 has both since 2024, and so does moto's S3 server, which the tests run against.
- **The store's clock.** Leases are measured on the store's `Last-Modified` and `Date` (whole seconds), not
  on any host's clock, so workers on hosts with skewed clocks agree on what has expired.

Everything is reached through fsspec's `s3fs` (its `call_s3` is the S3 API itself), configured the standard
way: credentials and `AWS_ENDPOINT_URL` from the environment or `~/.aws`. Other fsspec protocols (`gs://`,
`az://`) are refused in one line: their conditional writes are not wired in yet, and a run without them
could make a shard twice.
"""

from __future__ import annotations

import base64
import contextlib
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path

from synthset.errors import StoreError, SynthsetError, first_line
from synthset.fsutil import TEMP_PREFIX, owner_token

SUPPORTED_PROTOCOLS = ("s3",)
READ_BLOCK = 64 * 1024  # the least a range read fetches: a small Parquet footer and its neighbours at once
_PRECONDITION_CODES = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}


def is_store_url(path: str | os.PathLike) -> bool:
    """True for `s3://...` and the like; False for a local path (also `file://`)."""
    text = os.fspath(path)
    return "://" in text and not text.startswith("file://")


@dataclass(frozen=True)
class StoredObject:
    key: str  # relative to the run's root, with '/'
    size: int
    etag: str
    modified: float  # the store's Last-Modified, seconds since the epoch


class PreconditionFailed(Exception):
    """A conditional put or delete lost: the key exists (If-None-Match) or changed (If-Match)."""


def _error_code(error: BaseException) -> str:
    """The S3 error code behind s3fs's translated OSError (s3fs keeps botocore's error as the cause)."""
    for candidate in (error, error.__cause__, error.__context__):
        response = getattr(candidate, "response", None)
        if isinstance(response, dict):
            return str(response.get("Error", {}).get("Code", ""))
    return ""


class RunStore:
    """The object-store root of one run: `s3://bucket/prefix`. Keys are given relative to the root."""

    def __init__(self, url: str):
        protocol, _, rest = url.partition("://")
        if protocol not in SUPPORTED_PROTOCOLS:
            raise StoreError(
                f"{url}: run directories on {protocol}:// are not supported (they need conditional writes for "
                f"shard claims; supported: {', '.join(p + '://' for p in SUPPORTED_PROTOCOLS)} and local paths)"
            )
        bucket, _, prefix = rest.strip("/").partition("/")
        if not bucket:
            raise StoreError(f"{url}: no bucket in the run directory's URL (expected s3://bucket/path)")
        self.url = f"{protocol}://{bucket}/{prefix}".rstrip("/")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._fs = None

    def __str__(self) -> str:
        return self.url

    @property
    def fs(self):
        if self._fs is None:
            try:
                import s3fs
            except ImportError as error:
                raise StoreError(f"{self.url}: s3:// run directories need s3fs (pip install s3fs)") from error
            # Few, short retries: an unreachable store should be one clear line in seconds, not minutes.
            self._fs = s3fs.S3FileSystem(
                skip_instance_cache=True,
                config_kwargs={"connect_timeout": 5, "read_timeout": 60, "retries": {"max_attempts": 3}},
            )
        return self._fs

    def key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def _call(self, method: str, what: str, **kwargs):
        """One S3 API call (see `_guarded` for what its failures become)."""
        return self._guarded(lambda: self.fs.call_s3(method, Bucket=self.bucket, **kwargs), what)

    def _guarded(self, action, what: str):
        """Run one store operation. A lost condition raises PreconditionFailed, a missing key
        FileNotFoundError; any other failure becomes one line naming the store, the endpoint and the reason."""
        try:
            return action()
        except SynthsetError:
            raise
        except Exception as error:  # botocore, aiohttp and s3fs raise many types; each becomes one line
            code = _error_code(error)
            if code in _PRECONDITION_CODES or isinstance(error, FileExistsError):
                raise PreconditionFailed(what) from error
            if code != "NoSuchBucket" and (
                code in ("NoSuchKey", "404", "NotFound") or isinstance(error, FileNotFoundError)
            ):
                raise FileNotFoundError(f"{self.url}/{what}") from error
            endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3") or "AWS S3"
            if code == "NoSuchBucket":
                reason = f"bucket {self.bucket!r} does not exist"
            elif code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                reason = f"access denied ({code}); check the AWS credentials"
            else:
                reason = first_line(error)
            raise StoreError(f"{self.url}: object store unusable at {endpoint} ({what}): {reason}") from error

    # -- reading -------------------------------------------------------------------------------------
    def list(self, start: str = "") -> dict[str, StoredObject]:
        """Every object whose path relative to the root starts with `start`, keyed by that path."""
        prefix = self.key(start) if start else (self.prefix + "/" if self.prefix else "")
        found: dict[str, StoredObject] = {}
        token = None
        while True:
            kwargs = {"Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call("list_objects_v2", f"list {start or '/'}", **kwargs)
            for item in page.get("Contents", []):
                rel = item["Key"][len(self.prefix) + 1 :] if self.prefix else item["Key"]
                found[rel] = StoredObject(rel, int(item["Size"]), item["ETag"], item["LastModified"].timestamp())
            if not page.get("IsTruncated"):
                return found
            token = page["NextContinuationToken"]

    def stat(self, rel: str) -> StoredObject | None:
        try:
            head = self._call("head_object", rel, Key=self.key(rel))
        except FileNotFoundError:
            return None
        return StoredObject(rel, int(head["ContentLength"]), head["ETag"], head["LastModified"].timestamp())

    def read(self, rel: str) -> tuple[bytes, StoredObject] | None:
        """A small object's bytes and its metadata (claims, records), or None if it does not exist."""
        try:
            got = self._call("get_object", rel, Key=self.key(rel))
        except FileNotFoundError:
            return None
        body = _read_body(self.fs, got["Body"])
        return body, StoredObject(rel, int(got["ContentLength"]), got["ETag"], got["LastModified"].timestamp())

    def open(self, rel: str, size: int | None = None, block_size: int = READ_BLOCK, etag: str | None = None):
        """A seekable file over the object: each read is a range request of at least `block_size` bytes
        (a Parquet footer, a column chunk), so a reader takes only the parts it needs.

        `size` and `etag` (from a listing) spare a HEAD: s3fs checks every range's ETag against the object's
        (so a file replaced while it is read fails, `FileExpired`) and would HEAD the object for it first.
        """
        path = f"{self.bucket}/{self.key(rel)}"
        file = self._guarded(
            lambda: self.fs.open(path, "rb", size=size, block_size=block_size, cache_type="bytes"), f"open {rel}"
        )
        if size is not None and etag is not None:  # what fsspec's `details` would fetch, from the listing
            file._details = {"name": path, "size": size, "ETag": etag, "type": "file"}
        return file

    def read_whole(self, rel: str) -> bytes:
        """A small object's bytes, in one GET (s3fs would first HEAD it for its size, to read a large object
        in parallel parts: `max_concurrency=1` skips that request, one per shard on a stage's pass)."""
        path = f"{self.bucket}/{self.key(rel)}"
        return self._guarded(lambda: self.fs.cat_file(path, max_concurrency=1), f"get {rel}")

    def sha256(self, rel: str) -> str | None:
        """The object's SHA-256 as the store keeps it (hex), or None where it keeps none for the whole object.

        Objects put with `ChecksumAlgorithm=SHA256` in one request carry the whole object's SHA-256; a
        multipart upload's checksum is one of its parts' checksums (its ETag ends in `-<parts>`), no use here.
        """
        head = self._call("head_object", rel, Key=self.key(rel), ChecksumMode="ENABLED")
        value = head.get("ChecksumSHA256")
        whole = head.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT" and "-" not in head["ETag"]
        return base64.b64decode(value).hex() if value and whole and "-" not in value else None

    def download(self, rel: str, dest: Path) -> None:
        """Fetch `rel` into `dest` through a temp file, so a killed fetch leaves no half file under its name."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = _fetch_temp(dest)
        try:
            self._guarded(lambda: self.fs.get_file(f"{self.bucket}/{self.key(rel)}", str(tmp)), f"get {rel}")
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)

    def download_many(self, pairs: Sequence[tuple[str, Path]]) -> None:
        """Fetch many small objects at once (concurrent requests: a fresh host pulls a run's thousands of
        records in seconds, not one round trip each), each through a temp file like `download`."""
        if not pairs:
            return
        temps = [_fetch_temp(dest) for _, dest in pairs]
        for _, dest in pairs:
            dest.parent.mkdir(parents=True, exist_ok=True)
        remote = [f"{self.bucket}/{self.key(rel)}" for rel, _ in pairs]
        try:
            self._guarded(lambda: self.fs.get(remote, [str(t) for t in temps]), f"get {len(pairs)} files")
            for temp, (_, dest) in zip(temps, pairs, strict=True):
                os.replace(temp, dest)
        finally:
            for temp in temps:
                temp.unlink(missing_ok=True)

    def now(self) -> float:
        """The store's clock: the Date of a response (whole seconds; lease times are far longer)."""
        head = self._call("list_objects_v2", "clock", Prefix=self.key(".clock"), MaxKeys=1)
        date = head["ResponseMetadata"]["HTTPHeaders"].get("date")
        return parsedate_to_datetime(date).timestamp() if date else time.time()

    # -- writing -------------------------------------------------------------------------------------
    def upload(self, src: Path, rel: str) -> StoredObject | None:
        """Put a local file under `rel`: whole or not at all (large files go up as one multipart upload)."""
        target = f"{self.bucket}/{self.key(rel)}"
        self._guarded(lambda: self.fs.put_file(str(src), target, ChecksumAlgorithm="SHA256"), f"put {rel}")
        return self.stat(rel)

    def copy(self, src_rel: str, dst_rel: str) -> None:
        """Copy an object inside the store (no bytes pass through this host): dataset files are shards.

        One CopyObject request (objects up to 5 GB, the Hub's own recommended file size); the copy keeps the
        source's checksum."""
        source = {"Bucket": self.bucket, "Key": self.key(src_rel)}
        self._call("copy_object", f"copy {src_rel} to {dst_rel}", Key=self.key(dst_rel), CopySource=source)

    def put(self, rel: str, data: bytes, *, if_absent: bool = False, if_etag: str | None = None) -> StoredObject:
        """Put small bytes; conditional on the key not existing, or on it still having `if_etag`.

        Raises PreconditionFailed when the condition does not hold (another worker won).
        """
        kwargs = {"Key": self.key(rel), "Body": data}
        if if_absent:
            kwargs["IfNoneMatch"] = "*"
        if if_etag is not None:
            kwargs["IfMatch"] = if_etag
        self._call("put_object", rel, **kwargs)
        stored = self.stat(rel)
        if stored is None:  # deleted between our put and our look: as good as lost
            raise PreconditionFailed(rel)
        return stored

    def delete(self, rel: str, if_etag: str | None = None) -> None:
        kwargs = {"Key": self.key(rel)}
        if if_etag is not None:
            kwargs["IfMatch"] = if_etag
        with contextlib.suppress(FileNotFoundError, PreconditionFailed):  # gone, or replaced: not ours to delete
            self._call("delete_object", rel, **kwargs)


def _fetch_temp(dest: Path) -> Path:
    """A fetch's temp file beside `dest`: named by its owner as `temp_path_for` names one (so
    `remove_dead_temp_files` clears what a killed fetch left), and unique per fetch (threads of one process
    may fetch the same file)."""
    return dest.with_name(f"{TEMP_PREFIX}{owner_token()}-fetch-{uuid.uuid4().hex[:8]}-{dest.name}")


def _read_body(fs, body) -> bytes:
    """Read an aiobotocore streaming body on s3fs's event loop."""
    from fsspec.asyn import sync

    async def read() -> bytes:
        async with body as stream:
            return await stream.read()

    return sync(fs.loop, read)
