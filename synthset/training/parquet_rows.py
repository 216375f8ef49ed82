"""Training rows read from a dataset's Parquet shards in place: no Arrow cache, no second copy on disk.

`datasets.load_dataset` converts Parquet shards to an Arrow cache before the first epoch: at paper A's 6x that
is another ~200 GB and hours before the first step. A local dataset whose split is Parquet files (what
`synthset build` writes, and any `datasets` Parquet directory) is instead indexed from the files' footers
alone (row groups and their row counts), its labels read as one column, and its images read a row group at a
time when a DataLoader worker asks for a row of it. Each worker keeps the few row groups it is reading in a
small cache (`cache_groups`), so memory is bounded by the shuffle buffer, not by the dataset.

The order that makes this fast is `RowGroupStream` (train/sampler.py): row groups in a shuffled order, rows
shuffled within a bounded window, so consecutive requests fall in the same few row groups.
"""

from __future__ import annotations

import bisect
import io
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from synthset.errors import SynthsetError


@dataclass(frozen=True)
class RowGroup:
    """One row group of one file, and the row number (over all files, in file order) of its first row."""

    path: str
    index: int
    rows: int
    start: int


def _front_matter(readme: Path) -> dict[str, Any]:
    """The card header's top-level `configs:` block, parsed alone (with libyaml where available): the rest, such
    as a large `dataset_info`, is not needed here and took the pure-Python loader about a second."""
    import yaml

    text = readme.read_text(encoding="utf-8")
    if not text.startswith("---"):
        return {}
    lines = text.split("---", 2)[1].splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("configs:")), None)
    if start is None:
        return {}
    end = next((i for i in range(start + 1, len(lines)) if lines[i][:1] not in ("", " ", "-", "#")), len(lines))
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load("\n".join(lines[start:end]), Loader=loader) or {}  # noqa: S506 - a safe loader


def _config_patterns(directory: Path, name: str | None, split: str) -> list[str] | None:
    """The README `configs:` data_files globs of (config, split), or None when the README names no configs."""
    readme = directory / "README.md"
    configs = _front_matter(readme).get("configs") if readme.is_file() else None
    if not configs:
        return None
    chosen = [c for c in configs if c.get("config_name") == name] if name else [c for c in configs if c.get("default")]
    if not chosen and name is None and len(configs) == 1:
        chosen = configs
    if not chosen:
        return []
    patterns: list[str] = []
    for entry in chosen[0].get("data_files", []):
        if isinstance(entry, dict) and entry.get("split") == split:
            paths = entry.get("path") or []
            patterns += [paths] if isinstance(paths, str) else list(paths)
    return patterns


def parquet_files(directory: Path, name: str | None, split: str) -> list[Path] | None:
    """The Parquet files of a local dataset's (config, split): from the README's `configs`, else
    `<split>-*.parquet` anywhere below; None when the split is not Parquet (an image folder, say)."""
    patterns = _config_patterns(directory, name, split)
    if patterns is None:
        found = sorted(directory.glob(f"**/{split}-*.parquet"))
        return found or None
    files = sorted({path for pattern in patterns for path in directory.glob(pattern)})
    if not files or any(path.suffix != ".parquet" for path in files):
        return None
    return files


def index_row_groups(files: list[Path], limit: int | None = None) -> list[RowGroup]:
    """Every row group of the files in order, from their footers only (no data page is read)."""
    import pyarrow.parquet as pq

    groups: list[RowGroup] = []
    start = 0
    for path in files:
        metadata = pq.ParquetFile(path).metadata
        for index in range(metadata.num_row_groups):
            rows = metadata.row_group(index).num_rows
            if limit is not None:
                rows = min(rows, limit - start)
            if rows <= 0:
                return groups
            groups.append(RowGroup(str(path), index, rows, start))
            start += rows
    return groups


class ParquetRows:
    """Rows of row groups addressed by row number: `rows[i]` is {image column: PIL image, label column: int}.

    Only the image column is read from the data pages (labels are held as an array); decoded row groups are
    kept in a least-recently-used cache of `cache_groups` entries, which a worker's bounded shuffle window fills.
    """

    def __init__(self, groups: list[RowGroup], labels: np.ndarray, image_column: str, label_column: str) -> None:
        self.groups, self.labels = groups, labels
        self.image_column, self.label_column = image_column, label_column
        self.starts = [group.start for group in groups]
        self.cache_groups = 4
        self._cache: OrderedDict[int, Any] = OrderedDict()
        self._files: OrderedDict[str, Any] = OrderedDict()  # open ParquetFiles: the footer is parsed once

    def __len__(self) -> int:
        return len(self.labels)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_cache": OrderedDict(), "_files": OrderedDict()}  # workers start empty

    @property
    def group_sizes(self) -> list[int]:
        return [group.rows for group in self.groups]

    def _group(self, number: int) -> Any:
        if number in self._cache:
            self._cache.move_to_end(number)
            return self._cache[number]

        group = self.groups[number]
        column = self._file(group.path).read_row_group(group.index, columns=[self.image_column]).column(0)
        column = column.slice(0, group.rows).combine_chunks()
        if hasattr(column, "field"):  # a datasets Image struct {bytes, path}: keep the bytes
            column = column.field("bytes")
        self._cache[number] = column.to_pylist()  # one conversion per row group, not one per row
        while len(self._cache) > self.cache_groups:
            self._cache.popitem(last=False)
        return self._cache[number]

    def _file(self, path: str) -> Any:
        import pyarrow.parquet as pq

        if path not in self._files:
            self._files[path] = pq.ParquetFile(path)
            while len(self._files) > self.cache_groups:
                self._files.popitem(last=False)[1].close()
        self._files.move_to_end(path)
        return self._files[path]

    def image_bytes(self, row: int) -> bytes:
        """The stored bytes of row `row`'s image."""
        number = bisect.bisect_right(self.starts, row) - 1
        return self._group(number)[row - self.groups[number].start]

    def __getitem__(self, row: int) -> dict[str, Any]:
        from PIL import Image

        image = Image.open(io.BytesIO(self.image_bytes(int(row))))
        return {self.image_column: image, self.label_column: int(self.labels[row])}


def read_column(groups: list[RowGroup], column: str) -> Any:
    """One column of every indexed row (labels, cond_images) as a pyarrow ChunkedArray: only its pages are read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows_per_file: dict[str, int] = {}
    for group in groups:
        rows_per_file[group.path] = rows_per_file.get(group.path, 0) + group.rows
    chunks = []
    for path, rows in rows_per_file.items():
        chunks += pq.read_table(path, columns=[column]).column(0).slice(0, rows).chunks
    return pa.chunked_array(chunks)


def schema_features(path: Path) -> Any:
    """The `datasets` Features a Parquet file carries in its schema metadata (None without)."""
    import datasets
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    if b"huggingface" not in (schema.metadata or {}):
        return None
    try:
        return datasets.Features.from_arrow_schema(schema)
    except (ValueError, TypeError, KeyError) as error:
        raise SynthsetError(f"{path}: unreadable datasets features in the Parquet metadata: {error}") from None
