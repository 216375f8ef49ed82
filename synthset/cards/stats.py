"""Per-config numbers for the card, read from the published Parquet files themselves.

The card must describe the files a user downloads, not what the plan intended, so every figure here is
counted from `dataset/`: rows per split, bytes, images per class (min/median/max), rows per prompt
strategy and a few prompts of each. Only the small columns are read (never `image`), one row group at a
time, so memory stays flat at any dataset size; on an object-store run they are read in the store by range
requests (run/objects.py), so no image byte comes to this host.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from synthset.run import objects
from synthset.run.paths import RunDir
from synthset.run.published import pattern_matches

PROMPT_EXAMPLES = 3
SIZE_CATEGORIES: tuple[tuple[int, str], ...] = (
    *((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")),
    *((10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")),
)
STATS_COLUMNS = ("label", "strategy", "prompt")
# Another count made in the same pass (the card's Screening section): the columns it needs, and what it does
# with one row group of (config, file relative to dataset/) holding them.
RowGroupCount = tuple[Sequence[str], Callable[[str, str, pa.Table], None]]
RowAt = tuple[str, int, int]  # (file relative to dataset/, row group, row)


@dataclass
class ConfigStats:
    """What the card says about one config."""

    config: str
    split_rows: dict[str, int] = field(default_factory=dict)
    files: int = 0
    bytes: int = 0
    per_class: Counter = field(default_factory=Counter)  # label -> images
    strategies: Counter = field(default_factory=Counter)  # strategy -> images
    prompt_examples: dict[str, list[str]] = field(default_factory=dict)  # strategy -> prompts
    file_rows: dict[str, int] = field(default_factory=dict)  # file (relative to dataset/) -> rows
    # split -> label -> where its first image is, in file order, classes in the order met: the sample grid
    # reads those rows' images only, instead of a second pass over the labels
    first_rows: dict[str, dict[int, RowAt]] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(self.split_rows.values())

    @property
    def classes(self) -> int:
        return len(self.per_class)

    @property
    def class_min_median_max(self) -> tuple[int, float, int]:
        counts = list(self.per_class.values()) or [0]
        return min(counts), statistics.median(counts), max(counts)


def config_patterns(card_data: dict[str, Any]) -> dict[str, dict[str, list[str]]]:
    """config -> split -> the `data_files` paths or globs of the README's `configs`."""
    out: dict[str, dict[str, list[str]]] = {}
    for config in card_data.get("configs") or []:
        splits: dict[str, list[str]] = {}
        for item in config.get("data_files") or []:
            paths = item["path"] if isinstance(item["path"], list) else [item["path"]]
            splits.setdefault(item.get("split", "train"), []).extend(paths)
        out[config["config_name"]] = splits
    return out


def config_data_files(card_data: dict[str, Any], files: list[str]) -> dict[str, dict[str, list[str]]]:
    """config -> split -> files (relative to dataset/), in the order `load_dataset` reads them.

    `files` is every file of dataset/ (sorted; on an object-store run, the store's Parquet files too:
    `objects.data_files`), matched as fsspec's glob matches (`published.pattern_matches`).
    """
    return {
        config: {
            split: [f for pattern in patterns for f in files if pattern_matches(pattern, f)]
            for split, patterns in splits.items()
        }
        for config, splits in config_patterns(card_data).items()
    }


def _add_file(
    stats: ConfigStats, run: RunDir, path: Path, split: str, seen: set[tuple[str, int]], also: RowGroupCount | None
) -> None:
    relative = path.relative_to(run.dataset_dir).as_posix()
    with objects.parquet_file(run, path) as parquet:  # on an object store: the footer and small columns by range
        names = parquet.schema_arrow.names
        count_also = also if also is not None and set(also[0]) <= set(names) else None
        columns = [c for c in STATS_COLUMNS if c in names]
        columns += [c for c in count_also[0] if c not in columns] if count_also else []
        for group in range(parquet.num_row_groups):
            table = parquet.read_row_group(group, columns=columns)
            labels = _add_rows(stats, table, seen)
            _note_first_rows(stats.first_rows[split], relative, group, labels)
            if count_also:
                count_also[1](stats.config, relative, table)
    rows = parquet.metadata.num_rows
    stats.files += 1
    stats.bytes += objects.size(run, path) or 0
    stats.split_rows[split] = stats.split_rows.get(split, 0) + rows
    stats.file_rows[relative] = rows


def _note_first_rows(firsts: dict[int, RowAt], relative: str, group: int, labels: list[int | None]) -> None:
    for row, label in enumerate(labels):
        if label is not None and label not in firsts:
            firsts[label] = (relative, group, row)


def _add_rows(stats: ConfigStats, group: pa.Table, seen_examples: set[tuple[str, int]]) -> list[int | None]:
    """Count one row group; -> its labels (None for each row of a file without them), for `_note_first_rows`."""
    table = group.select([c for c in STATS_COLUMNS if c in group.column_names]).to_pydict()
    labels = table.get("label") or [None] * group.num_rows
    strategies = table.get("strategy") or ["unknown"] * len(labels)
    prompts = table.get("prompt") or [None] * len(labels)
    stats.per_class.update(label for label in labels if label is not None)
    stats.strategies.update(strategies)
    for label, strategy, prompt in zip(labels, strategies, prompts, strict=True):
        examples = stats.prompt_examples.setdefault(strategy, [])
        # one example per class first, so the examples show the variety across classes
        if prompt and len(examples) < PROMPT_EXAMPLES and (strategy, label) not in seen_examples:
            seen_examples.add((strategy, label))
            examples.append(prompt)
    return labels


def collect_stats(
    run: RunDir, data_files: dict[str, dict[str, list[str]]], also: RowGroupCount | None = None
) -> list[ConfigStats]:
    """Count every config's files (label, strategy and prompt columns only).

    `also`: another count that reads the same files (columns, and a function given each row group): it is
    made in this pass, so each file is read once; on an object store a second pass is a second set of
    requests per file. A file that lacks one of its columns is left to that count.
    """
    result = []
    for config, splits in data_files.items():
        stats, seen = ConfigStats(config), set[Any]()
        for split, files in splits.items():
            stats.first_rows[split] = {}
            for path in objects.read_ahead(run, [run.dataset_dir / relative for relative in files]):
                _add_file(stats, run, path, split, seen, also)
        result.append(stats)
    return result


def unique_rows(stats: list[ConfigStats]) -> int:
    """Images in the repo, counting a file shared by several configs (a scale band) once.

    From the counts `collect_stats` made, so that a card reads each Parquet file once: on an object store
    a second pass over thousands of files is thousands more requests.
    """
    return sum({file: rows for one in stats for file, rows in one.file_rows.items()}.values())


def size_category(rows: int) -> str:
    for bound, label in SIZE_CATEGORIES:
        if rows < bound:
            return label
    return "n>1B"
