"""plan.parquet: the shards of a run and the plan rows of each.

The plan's rows are in plan order (config, band, class, image index), each shard a contiguous run of
rows, and the file's key-value metadata holds the shard index: every shard's name and row count, in
order. Row groups are sized for reading (`PLAN_ROW_GROUP_ROWS`), not one per shard: a Parquet footer
grows with row groups x columns, and at one row group per shard a 10k-shard plan's footer was 19 MB on
disk and ~190 MB parsed, paid by every process that opened the plan. A shard is read as the row groups
that cover it, sliced, so a worker still holds one shard's rows at a time however large the plan.

Plans written before the index (one row group per shard, shard names in the row-group statistics) are
still read. The plan is written by `synthset.generation.plan` (`PlanWriter`); every stage reads it here.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from synthset.errors import RunStateError
from synthset.run.paths import RunDir

PLAN_ONLY_COLUMNS = ("band", "shard")  # plan bookkeeping, not columns of a generated row
PLAN_ROW_GROUP_ROWS = 8192
# Small data pages, and no dictionary for the columns that differ on every row: a reader that streams the
# plan (`Plan.iter_shards`) then decodes a few pages at a time, not a whole row group's column (measured
# on a 10k-row plan: +7.7 MB of RSS to read its first rows, +14 MB with 1 MB pages and dictionaries).
PLAN_PAGE_BYTES = 32 << 10
PLAN_UNIQUE_COLUMNS = ("sample_id", "shard", "seed", "prompt", "cond_images")
PLAN_STREAM_ROWS = 256  # rows per batch when the plan is streamed in order
SHARD_INDEX_KEY = "synthset_shards"  # key-value metadata: JSON [[name, rows], ...] in plan order


class PlanWriter:
    """Streams plan rows into plan.parquet shard by shard and writes the shard index at the end."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.schema = schema
        dictionary = [name for name in schema.names if name not in PLAN_UNIQUE_COLUMNS]
        self._writer = pq.ParquetWriter(path, schema, data_page_size=PLAN_PAGE_BYTES, use_dictionary=dictionary)
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self.shards: list[tuple[str, int]] = []

    def add_shard(self, name: str, rows: list[dict]) -> None:
        self.shards.append((name, len(rows)))
        self._pending.append(pa.Table.from_pylist(rows, schema=self.schema))
        self._pending_rows += len(rows)
        if self._pending_rows >= PLAN_ROW_GROUP_ROWS:
            self._flush(whole_groups_only=True)

    def _flush(self, whole_groups_only: bool = False) -> None:
        """Write the pending rows as full row groups (and, at the end, the last partial one)."""
        size = PLAN_ROW_GROUP_ROWS
        table = pa.concat_tables(self._pending) if self._pending else None
        if table is None:
            return
        keep = table.num_rows % size if whole_groups_only else 0
        if table.num_rows - keep:
            self._writer.write_table(table.slice(0, table.num_rows - keep), row_group_size=size)
        self._pending = [table.slice(table.num_rows - keep)] if keep else []
        self._pending_rows = keep

    def close(self) -> None:
        self._flush()
        self._writer.add_key_value_metadata({SHARD_INDEX_KEY: json.dumps(self.shards, separators=(",", ":"))})
        self._writer.close()

    def __enter__(self) -> PlanWriter:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        else:
            self._writer.close()


class Plan:
    """An opened plan: its shards' names and sizes, and each shard's rows on demand."""

    def __init__(self, file: pq.ParquetFile) -> None:
        self.file = file
        index = (file.metadata.metadata or {}).get(SHARD_INDEX_KEY.encode())
        if index is not None:
            entries = json.loads(index)
            self.shard_names = [name for name, _ in entries]
            self.shard_rows = [rows for _, rows in entries]
        else:  # a plan from before the index: one row group per shard
            self.shard_names = _names_from_row_group_statistics(file)
            self.shard_rows = [file.metadata.row_group(i).num_rows for i in range(file.metadata.num_row_groups)]
        self._starts = [0, *accumulate(self.shard_rows)]
        groups = [file.metadata.row_group(i).num_rows for i in range(file.metadata.num_row_groups)]
        self._group_starts = [0, *accumulate(groups)]
        self._cached: tuple[tuple[int, int], pa.Table] | None = None

    @property
    def num_rows(self) -> int:
        return self.file.metadata.num_rows

    def shard_table(self, index: int) -> pa.Table:
        """Shard `index`'s plan rows, all columns: the row groups that cover them, sliced."""
        start, stop = self._starts[index], self._starts[index + 1]
        first = bisect.bisect_right(self._group_starts, start) - 1
        last = bisect.bisect_right(self._group_starts, stop - 1) - 1
        if self._cached is None or self._cached[0] != (first, last):
            # Shards are read in plan order almost always: keep the last groups for the next shard.
            self._cached = ((first, last), self.file.read_row_groups(list(range(first, last + 1))))
        return self._cached[1].slice(start - self._group_starts[first], stop - start)

    def iter_batches(self, columns: list[str]):
        return self.file.iter_batches(columns=columns)

    def iter_shards(self) -> Iterator[PlannedShard]:
        """Every shard in plan order, streamed: one batch of rows and one shard's rows held at a time (a
        stage that walks the whole plan; `shard_table` serves random access)."""
        pending: list[pa.Table] = []
        held = index = 0
        for batch in self.file.iter_batches(batch_size=PLAN_STREAM_ROWS, use_threads=False):
            pending.append(pa.Table.from_batches([batch]))
            held += batch.num_rows
            while index < len(self.shard_rows) and held >= self.shard_rows[index]:
                rows = pa.concat_tables(pending)
                size = self.shard_rows[index]
                yield _planned(index, self.shard_names[index], rows.slice(0, size))
                pending, held, index = [rows.slice(size)], held - size, index + 1


def _names_from_row_group_statistics(plan: pq.ParquetFile) -> list[str]:
    """Shard names of a plan with one row group per shard (the layout before the shard index).

    Row-group statistics are indexed by Parquet *leaf* column, not by Arrow field: nested columns (the
    cd_aspects struct, the cond_images list) come before `shard` and shift the leaf index, so it is looked up
    by path (by field index, a plan whose shards each have one `cond_aug` got that string as shard names).
    """
    column = next(j for j in range(plan.metadata.num_columns) if plan.schema.column(j).path == "shard")
    names = []
    for i in range(plan.metadata.num_row_groups):
        stats = plan.metadata.row_group(i).column(column).statistics
        if stats is not None and stats.has_min_max and stats.min == stats.max:
            names.append(stats.min)
        else:
            names.append(plan.read_row_group(i, columns=["shard"]).column(0)[0].as_py())
    return names


def open_plan(run: RunDir) -> Plan:
    """The run's plan; a missing or unreadable plan is one line."""
    try:
        return Plan(pq.ParquetFile(run.plan_file))
    except FileNotFoundError:
        raise RunStateError(f"{run}: no {run.plan_file.name}; run `synthset plan` first") from None
    except (OSError, pa.ArrowInvalid, ValueError) as error:
        raise RunStateError(f"{run.plan_file}: not a readable plan ({error}); run `synthset plan` again") from None


def plan_shard_names(plan: Plan | pq.ParquetFile) -> list[str]:
    """Shard names in plan order."""
    return (plan if isinstance(plan, Plan) else Plan(plan)).shard_names


@dataclass(frozen=True)
class PlannedShard:
    """One shard of the plan: its index (in plan order), name, and plan rows (without the `shard` column)."""

    index: int
    name: str
    rows: pa.Table

    @property
    def sample_ids(self) -> list[str]:
        return self.rows.column("sample_id").to_pylist()

    @functools.cached_property
    def digest(self) -> str:
        """The plan digest of these rows: JSON of every row, so computed once per shard and kept."""
        return plan_digest(self.rows)


def read_planned_shard(plan: Plan, index: int, name: str) -> PlannedShard:
    if plan.shard_names[index] != name:
        raise ValueError(f"shard {index} of the plan is {plan.shard_names[index]!r}, not {name!r}")
    return _planned(index, name, plan.shard_table(index))


def _planned(index: int, name: str, rows: pa.Table) -> PlannedShard:
    return PlannedShard(index, name, rows.drop_columns(list(PLAN_ONLY_COLUMNS)))


def plan_digest(plan_rows: pa.Table) -> str:
    """A hash of a shard's plan rows (prompts, seeds, ids...), stored in its record."""
    return hashlib.sha256(json.dumps(plan_rows.to_pylist(), sort_keys=True).encode()).hexdigest()[:16]
