"""Reading plan.parquet: the shards of a run and the plan rows of each.

The plan has exactly one row group per shard, in plan order (config, band, class, image index), so a
shard's rows are one `read_row_group` and a worker holds one shard's rows at a time however large the
plan. The plan is written by `synthset.generation.plan`; every other stage reads it through here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from synthset.errors import SynthsetError
from synthset.run.paths import RunDir

PLAN_ONLY_COLUMNS = ("band", "shard")  # plan bookkeeping, not columns of a generated row


def open_plan(run: RunDir) -> pq.ParquetFile:
    """The plan as a ParquetFile; a missing or unreadable plan is one line."""
    try:
        return pq.ParquetFile(run.plan_file)
    except FileNotFoundError:
        raise SynthsetError(f"{run}: no {run.plan_file.name}; run `synthset plan` first") from None
    except (OSError, pa.ArrowInvalid) as error:
        raise SynthsetError(f"{run.plan_file}: not a readable plan ({error}); run `synthset plan` again") from None


def plan_shard_names(plan: pq.ParquetFile) -> list[str]:
    """Shard names in plan order: the plan has exactly one row group per shard."""
    # Row-group statistics are per leaf column: struct and list columns before `shard` (cd_aspects,
    # cond_images) add leaves, so its top-level field index would name another column (cond_aug).
    schema = plan.metadata.schema
    column = next(j for j in range(len(schema)) if schema.column(j).path == "shard")
    names = []
    for i in range(plan.metadata.num_row_groups):
        stats = plan.metadata.row_group(i).column(column).statistics
        if stats is not None and stats.has_min_max and stats.min == stats.max:
            names.append(stats.min)
        else:
            names.append(plan.read_row_group(i, columns=["shard"]).column(0)[0].as_py())
    return names


@dataclass(frozen=True)
class PlannedShard:
    """One shard of the plan: its index (= row group), name, and plan rows (without the `shard` column)."""

    index: int
    name: str
    rows: pa.Table

    @property
    def sample_ids(self) -> list[str]:
        return self.rows.column("sample_id").to_pylist()

    @property
    def digest(self) -> str:
        return plan_digest(self.rows)


def read_planned_shard(plan: pq.ParquetFile, index: int, name: str) -> PlannedShard:
    return PlannedShard(index, name, plan.read_row_group(index).drop_columns(list(PLAN_ONLY_COLUMNS)))


def plan_digest(plan_rows: pa.Table) -> str:
    """A hash of a shard's plan rows (prompts, seeds, ids...), stored in its record."""
    return hashlib.sha256(json.dumps(plan_rows.to_pylist(), sort_keys=True).encode()).hexdigest()[:16]
