"""Per-config numbers for the card, read from the published Parquet files themselves.

The card must describe the files a user downloads, not what the plan intended, so every figure here is
counted from `dataset/`: rows per split, bytes, images per class (min/median/max), rows per prompt
strategy and a few prompts of each. Only the small columns are read (never `image`), one row group at a
time, so memory stays flat at any dataset size.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

PROMPT_EXAMPLES = 3
SIZE_CATEGORIES: tuple[tuple[int, str], ...] = (
    *((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")),
    *((10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")),
)


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


def resolve_local(dataset_dir: Path, pattern: str) -> list[str]:
    """The files a `data_files` glob selects in a local directory, sorted as `datasets` reads them."""
    found = (p.relative_to(dataset_dir).as_posix() for p in dataset_dir.glob(pattern) if p.is_file())
    return sorted(f for f in found if not any(part.startswith(".") for part in f.split("/")))


def config_data_files(card_data: dict[str, Any], dataset_dir: Path) -> dict[str, dict[str, list[str]]]:
    """config -> split -> files (relative to dataset/), in the order `load_dataset` reads them."""
    return {
        config: {
            split: [f for pattern in patterns for f in resolve_local(dataset_dir, pattern)]
            for split, patterns in splits.items()
        }
        for config, splits in config_patterns(card_data).items()
    }


def _add_file(stats: ConfigStats, path: Path, split: str, seen_examples: set[tuple[str, int]]) -> None:
    parquet = pq.ParquetFile(path)
    wanted = [c for c in ("label", "strategy", "prompt") if c in parquet.schema_arrow.names]
    stats.files += 1
    stats.bytes += path.stat().st_size
    stats.split_rows[split] = stats.split_rows.get(split, 0) + parquet.metadata.num_rows
    for group in range(parquet.num_row_groups):
        table = parquet.read_row_group(group, columns=wanted).to_pydict()
        labels = table.get("label") or [None] * parquet.metadata.row_group(group).num_rows
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


def collect_stats(dataset_dir: Path, data_files: dict[str, dict[str, list[str]]]) -> list[ConfigStats]:
    """Count every config's files (label, strategy and prompt columns only)."""
    result = []
    for config, splits in data_files.items():
        stats, seen = ConfigStats(config), set[Any]()
        for split, files in splits.items():
            for relative in files:
                _add_file(stats, dataset_dir / relative, split, seen)
        result.append(stats)
    return result


def unique_rows(dataset_dir: Path, data_files: dict[str, dict[str, list[str]]]) -> int:
    """Images in the repo, counting a file shared by several configs (a scale band) once."""
    files = {f for splits in data_files.values() for paths in splits.values() for f in paths}
    return sum(pq.ParquetFile(dataset_dir / f).metadata.num_rows for f in files)


def size_category(rows: int) -> str:
    for bound, label in SIZE_CATEGORIES:
        if rows < bound:
            return label
    return "n>1B"
