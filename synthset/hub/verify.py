"""`synthset verify`: check a published version without downloading it.

By default, with disk and memory flat in the number of files (at 6x ImageNet a version is ~12k files and
~700 GB; downloading it and building an Arrow cache of every config would need ~2.3 TB):

1. `manifest.jsonl` is streamed from the Hub (HfFileSystem), folder by folder (its order).
2. For each folder: the Hub's listing of it must hold exactly the manifest's files (an extra Parquet file
   would be read by a `data_files` glob); `get_paths_info`, in pages of `PATHS_INFO_PAGE` (the Hub takes
   1,000 paths per call), gives each file's size and LFS sha256, compared with the manifest; small
   regular files (README, lock) are downloaded and hashed.
3. Every Parquet footer is read with HfFileSystem range requests: its row count must match the manifest
   and its `huggingface` schema metadata the README's Features.
4. Each config's rows, summed over the files its `data_files` globs select, must match `dataset_info`.
5. Every config is loaded with `load_dataset(..., streaming=True)` and its first rows decoded.

`--sample N` also downloads N files chosen at random (reservoir sampling over the stream), checks their
sha256 and decodes every image in them. `--full` downloads every file and loads every config with
`load_dataset` (the Arrow cache goes to a temporary directory, removed afterwards).
"""

from __future__ import annotations

import contextlib
import io
import random
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import groupby, islice
from pathlib import Path
from typing import Any

from synthset.cards.render import README
from synthset.cards.stats import config_patterns
from synthset.errors import HubError, first_line
from synthset.fsutil import sha256_file
from synthset.hub.client import REPO_TYPE, check_repo_id, client, hub_errors, with_retries
from synthset.hub.manifest import MANIFEST_FILE, Entry, read_manifest
from synthset.hub.versions import dataset_infos, rows_from_card
from synthset.run.hub_limits import PATHS_INFO_PAGE
from synthset.run.paths import RunDir
from synthset.run.published import pattern_matches, shard_of
from synthset.run.records import read_record

STREAM_ROWS = 4  # rows decoded per config by the streamed load
FOOTER_THREADS = 8
FOOTER_BATCH = 256
MAX_PROBLEMS = 1000  # enough to report; a broken version is not listed in full


@dataclass
class VerifyReport:
    repo_id: str
    revision: str
    commit: str
    mode: str  # "metadata" (default), "full"
    files: int = 0
    bytes: int = 0
    footers: int = 0
    rows: dict[str, dict[str, int]] = field(default_factory=dict)  # config -> split -> rows checked
    streamed: dict[str, int] = field(default_factory=dict)  # config -> rows decoded by the streamed load
    sampled: list[str] = field(default_factory=list)  # files downloaded and decoded (--sample)
    sampled_images: int = 0


class Checker:
    """The state of one verification: problems found, and counters that stay flat in the file count."""

    def __init__(self, api: Any, fs: Any, repo_id: str, commit: str, report: VerifyReport) -> None:
        self.api, self.fs, self.repo_id, self.commit, self.report = api, fs, repo_id, commit, report
        self.root = f"datasets/{repo_id}@{commit}"
        self.problems: list[str] = []
        self.pattern_rows: dict[str, int] = {}
        self.pattern_files: dict[str, int] = {}
        self.patterns: set[str] = set()  # every config's data_files globs

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)

    # -- 2. listing and paths-info ------------------------------------------------------------------------
    def check_folder_listing(self, folder: str, entries: list[Entry]) -> None:
        """The Hub's listing of `folder` must hold the manifest's files, and no other file that a config's
        `data_files` would load (another writer's notes may sit beside them: `push` leaves those alone)."""
        path = f"{self.root}/{folder}" if folder else self.root
        listing = with_retries(f"listing of {folder or '/'}", lambda: self.fs.ls(path, detail=True, refresh=True))
        names = {item["name"].rsplit("/", 1)[1] for item in listing if item["type"] == "file"}
        ours = {e.path.rsplit("/", 1)[-1] for e in entries}
        extra = sorted(names - ours - ({".gitattributes", MANIFEST_FILE} if not folder else set()))
        for path in (f"{folder}/{name}" if folder else name for name in extra):
            if any(pattern_matches(pattern, path) for pattern in self.patterns):
                self.problem(f"{path}: in the repo but not in the manifest")

    def check_paths_info(self, entries: list[Entry]) -> list[Entry]:
        """Size and LFS sha256 as the Hub reports them; returns the regular (non-LFS) files to hash."""
        regular = []
        for start in range(0, len(entries), PATHS_INFO_PAGE):
            page = entries[start : start + PATHS_INFO_PAGE]
            infos = self.api.get_paths_info(
                self.repo_id, [e.path for e in page], repo_type=REPO_TYPE, revision=self.commit
            )
            found = {info.path: info for info in infos}
            for entry in page:
                info = found.get(entry.path)
                if info is None:
                    self.problem(f"{entry.path}: in the manifest but not in the repo")
                elif info.size != entry.bytes:
                    self.problem(f"{entry.path}: the Hub lists {info.size} bytes, the manifest {entry.bytes}")
                elif info.lfs is None:
                    regular.append(entry)
                elif info.lfs.sha256 != entry.sha256:
                    self.problem(
                        f"{entry.path}: the Hub lists sha256 {info.lfs.sha256[:16]}..., "
                        f"the manifest {entry.sha256[:16]}..."
                    )
        return regular

    def check_download(self, entry: Entry, decode: bool = False) -> int:
        """Download a file afresh (a cached copy proves nothing), compare it; -> images decoded."""
        with tempfile.TemporaryDirectory(prefix="synthset-verify-") as tmp:
            local = Path(
                self.api.hf_hub_download(
                    self.repo_id, entry.path, repo_type=REPO_TYPE, revision=self.commit, local_dir=tmp
                )
            )
            size, digest = local.stat().st_size, sha256_file(local)
            if size != entry.bytes or digest != entry.sha256:
                self.problem(
                    f"{entry.path}: downloaded {size} bytes with sha256 {digest[:16]}..., the manifest says "
                    f"{entry.bytes} bytes with sha256 {entry.sha256[:16]}..."
                )
                return 0
            return decode_all_images(local, entry.path, self) if decode else 0

    # -- 3. footers ---------------------------------------------------------------------------------------
    def footer(self, entry: Entry) -> tuple[Entry, int | None, Any, str | None]:
        """(entry, rows, features, error) from the file's Parquet footer, read with range requests."""
        import pyarrow.parquet as pq
        from datasets import Features

        def read() -> tuple[int, Any]:
            with self.fs.open(f"{self.root}/{entry.path}", "rb") as handle:
                parquet = pq.ParquetFile(handle)
                return parquet.metadata.num_rows, Features.from_arrow_schema(parquet.schema_arrow)

        try:  # HfFileSystem's open asks the Hub about the file first, unretried: retried here
            rows, features = with_retries(f"footer of {entry.path}", read)
            return entry, rows, features, None
        except Exception as error:  # noqa: BLE001 - a footer that cannot be read is a finding
            return entry, None, None, first_line(error)

    def check_footers(self, pool: ThreadPoolExecutor, entries: list[Entry], features: Any) -> None:
        for start in range(0, len(entries), FOOTER_BATCH):  # bounded: results are not left to pile up
            self._check_footer_batch(pool, entries[start : start + FOOTER_BATCH], features)

    def _check_footer_batch(self, pool: ThreadPoolExecutor, entries: list[Entry], features: Any) -> None:
        for entry, rows, found, error in pool.map(self.footer, entries):
            self.report.footers += 1
            if error is not None:
                self.problem(f"{entry.path}: its Parquet footer cannot be read ({error})")
            elif rows != entry.rows:
                self.problem(f"{entry.path}: its footer says {rows} rows, the manifest {entry.rows}")
            elif features is not None and found != features:
                self.problem(f"{entry.path}: its Features differ from the README's dataset_info")


def decode_all_images(path: Path, name: str, checker: Checker) -> int:
    """Decode every image of a downloaded Parquet file (one row group at a time); -> images decoded."""
    import pyarrow.parquet as pq
    from PIL import Image

    decoded = 0
    parquet = pq.ParquetFile(path)
    for group in range(parquet.num_row_groups):
        for image in parquet.read_row_group(group, columns=["image"]).column("image").to_pylist():
            try:
                with Image.open(io.BytesIO(image["bytes"])) as opened:
                    opened.load()
                decoded += 1
            except Exception as error:  # noqa: BLE001 - an undecodable image is a finding
                checker.problem(f"{name}: image {decoded} does not decode ({type(error).__name__})")
    return decoded


def _expected_features(card: dict[str, Any]) -> Any:
    from datasets import Features

    for info in dataset_infos(card):
        if info.get("features"):
            return Features._from_yaml_list(info["features"])
    return None


def _stream_manifest(fs: Any, root: str) -> tuple[dict[str, Any], Iterator[Entry], Any]:
    handle = with_retries(MANIFEST_FILE, lambda: fs.open(f"{root}/{MANIFEST_FILE}", "r", encoding="utf-8"))
    head, entries = read_manifest(iter(handle))
    return head, entries, handle


def _check_against_run(run: RunDir, entry: Entry, unpublished: set[str], checker: Checker) -> None:
    shard = shard_of(entry.path)
    if shard is None:
        return
    unpublished.discard(shard)
    record = read_record(run.record_file(shard))
    if record is None:
        checker.problem(f"{entry.path}: published, but the run has no shard {shard}")
    elif record.sha256 != entry.sha256:
        checker.problem(
            f"{entry.path}: published sha256 {entry.sha256[:16]}... differs from the run's {record.sha256[:16]}..."
        )


def _streamed_sample(repo_id: str, commit: str, card: dict[str, Any], token: str | None, checker: Checker) -> None:
    """`load_dataset(..., streaming=True)` of every config: its first rows decode, with the README's Features."""
    import datasets

    with tempfile.TemporaryDirectory(prefix="synthset-verify-") as cache_dir:
        for config, splits in config_patterns(card).items():
            for split in splits:
                try:
                    stream = datasets.load_dataset(
                        repo_id, config, split=split, revision=commit, streaming=True, token=token, cache_dir=cache_dir
                    )
                    rows = list(islice(stream, STREAM_ROWS))
                    for row in rows:
                        row["image"].load()
                except Exception as error:  # noqa: BLE001 - a config that does not load fails verification
                    checker.problem(
                        f"load_dataset({repo_id!r}, {config!r}, streaming=True) failed: {first_line(error)}"
                    )
                    continue
                checker.report.streamed[config] = checker.report.streamed.get(config, 0) + len(rows)


def _full_load(repo_id: str, commit: str, card: dict[str, Any], token: str | None, checker: Checker) -> None:
    import datasets

    with tempfile.TemporaryDirectory(prefix="synthset-verify-") as cache_dir:
        for config in config_patterns(card):
            try:
                loaded = datasets.load_dataset(repo_id, config, revision=commit, token=token, cache_dir=cache_dir)
            except Exception as error:  # noqa: BLE001
                checker.problem(f"load_dataset({repo_id!r}, {config!r}) failed: {first_line(error)}")
                continue
            for split in loaded:
                expected = checker.report.rows.get(config, {}).get(split)
                if loaded[split].num_rows != expected:
                    checker.problem(
                        f"{config}/{split}: load_dataset gives {loaded[split].num_rows} rows, expected {expected}"
                    )


def verify_repo(
    repo_id: str,
    revision: str = "main",
    run_dir: str | Path | RunDir | None = None,
    sample: int = 0,
    full: bool = False,
    seed: int | None = None,
) -> VerifyReport:
    """Check a published revision (module docstring); any problem is one SynthsetError line (first of N)."""
    from huggingface_hub import DatasetCard, HfFileSystem
    from huggingface_hub.errors import EntryNotFoundError

    check_repo_id(repo_id)
    api, token = client(require_token=False)
    where = f"{repo_id}@{revision}"
    with hub_errors(where, token, api.endpoint):
        commit = api.dataset_info(repo_id, revision=revision).sha
        report = VerifyReport(repo_id, revision, commit, "full" if full else "metadata")
        fs = HfFileSystem(token=token or False)
        checker = Checker(api, fs, repo_id, commit, report)
        card_path = api.hf_hub_download(repo_id, README, repo_type=REPO_TYPE, revision=commit)
        card = DatasetCard.load(card_path).data.to_dict()
        patterns = {p for splits in config_patterns(card).values() for ps in splits.values() for p in ps}
        checker.patterns = patterns
        features = _expected_features(card)
        try:
            _, entries, handle = _stream_manifest(fs, checker.root)
        except (EntryNotFoundError, FileNotFoundError):
            raise HubError(f"no {MANIFEST_FILE}; it was not published by `synthset push`") from None
        run = RunDir.at(run_dir) if run_dir is not None else None
        unpublished = (
            {
                p.relative_to(run.shards_dir).with_suffix("").as_posix()
                for p in run.shards_dir.glob("*/*.json")
                if not p.name.startswith(".")  # a record being written
            }
            if run is not None
            else set()
        )
        rng, chosen, seen_parquet = random.Random(seed), [], 0
        with handle, ThreadPoolExecutor(FOOTER_THREADS, thread_name_prefix="synthset-footer") as pool:
            for folder, group in groupby(entries, key=lambda e: e.folder):
                folder_entries = list(group)  # one folder: at most the Hub's 10k files
                checker.check_folder_listing(folder, folder_entries)
                for entry in checker.check_paths_info(folder_entries):
                    checker.check_download(entry)
                parquet = [e for e in folder_entries if e.path.endswith(".parquet")]
                checker.check_footers(pool, parquet, features)
                for entry in folder_entries:
                    report.files += 1
                    report.bytes += entry.bytes
                    for pattern in patterns:
                        if entry.rows is not None and pattern_matches(pattern, entry.path):
                            checker.pattern_rows[pattern] = checker.pattern_rows.get(pattern, 0) + entry.rows
                            checker.pattern_files[pattern] = checker.pattern_files.get(pattern, 0) + 1
                    if run is not None:
                        _check_against_run(run, entry, unpublished, checker)
                for entry in parquet:  # reservoir sampling: N files uniformly, holding only N
                    seen_parquet += 1
                    if len(chosen) < sample:
                        chosen.append(entry)
                    elif sample and (k := rng.randrange(seen_parquet)) < sample:
                        chosen[k] = entry
                fs.invalidate_cache(f"{checker.root}/{folder}" if folder else checker.root)
        for shard in sorted(unpublished)[:3]:
            checker.problem(f"{shard}: in the run but not published")
        declared = rows_from_card(card)
        for config, splits in config_patterns(card).items():
            for split, split_patterns in splits.items():
                for pattern in split_patterns:
                    if not checker.pattern_files.get(pattern):
                        checker.problem(f"{config}/{split}: data_files {pattern!r} selects no file")
                rows = sum(checker.pattern_rows.get(p, 0) for p in split_patterns)
                report.rows.setdefault(config, {})[split] = rows
                if declared.get(config, {}).get(split) != rows:
                    checker.problem(
                        f"{config}/{split}: its files hold {rows} rows, dataset_info says "
                        f"{declared.get(config, {}).get(split)}"
                    )
        for entry in sorted(chosen, key=lambda e: e.path):
            report.sampled_images += checker.check_download(entry, decode=True)
            report.sampled.append(entry.path)
        if full and not checker.problems:
            with handle_manifest(fs, checker.root) as all_entries:
                for entry in all_entries:
                    checker.check_download(entry)
    if not checker.problems:  # load only what is known to be intact: a corrupt shard may not even parse
        if full:
            _full_load(repo_id, commit, card, token, checker)
        else:
            _streamed_sample(repo_id, commit, card, token, checker)
    if checker.problems:
        more = f" (and {len(checker.problems) - 1} more)" if len(checker.problems) > 1 else ""
        raise HubError(f"{where}: verification failed: {checker.problems[0]}{more}")
    return report


@contextlib.contextmanager
def handle_manifest(fs: Any, root: str) -> Iterator[Iterator[Entry]]:
    """The manifest's entries streamed again (for --full's downloads), closed on exit."""
    _, entries, handle = _stream_manifest(fs, root)
    with handle:
        yield entries
