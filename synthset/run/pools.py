"""conditioning_pool.parquet: the real images each class of an augcond config may be conditioned on.

Written at plan time (`synthset.generation.pools`), read by generation, which refuses any row whose
`cond_images` are not in its class's pool, and published beside the data so a reader can check the claim
without re-running anything: every `cond_images` id of a row is in the pool of its (config, label), and for a
long-tail fill-up each pool id is paired with the train-list entry it was matched to (`list_entries`) and the
train list's sha256, so "conditioned only on ImageNet-LT train images" is a join, not a promise.

Columns: config, label, source (shots | train_split | train_list | real_images), real_ids, list_entries
(train_list pools: the list's image path per real id, else null), list_sha256 (train_list pools, else null).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from synthset.errors import SynthsetError
from synthset.fsutil import atomic_path
from synthset.run.paths import RunDir

POOL_SOURCES = ("shots", "train_split", "train_list", "real_images")

POOL_SCHEMA = pa.schema(
    [
        ("config", pa.string()),
        ("label", pa.int64()),
        ("source", pa.string()),
        ("real_ids", pa.list_(pa.string())),
        ("list_entries", pa.list_(pa.string())),
        ("list_sha256", pa.string()),
    ]
)


@dataclass(frozen=True)
class PoolRow:
    """The conditioning pool of one class of one config."""

    config: str
    label: int
    source: str
    real_ids: list[str]
    list_entries: list[str] | None = None
    list_sha256: str | None = None


def write_pools(run: RunDir, rows: list[PoolRow]) -> None:
    path = run.pool_file
    if not rows:
        path.unlink(missing_ok=True)
        return
    data = [
        {
            "config": r.config,
            "label": r.label,
            "source": r.source,
            "real_ids": r.real_ids,
            "list_entries": r.list_entries,
            "list_sha256": r.list_sha256,
        }
        for r in rows
    ]
    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pylist(data, schema=POOL_SCHEMA), tmp)


def read_pools(run: RunDir) -> dict[str, dict[int, set[str]]]:
    """config -> label -> the real image ids its rows may be conditioned on."""
    path = run.pool_file
    if not path.is_file():
        raise SynthsetError(f"{run}: no {path.name} (planned by an older synthset?); run `synthset plan` again")
    pools: dict[str, dict[int, set[str]]] = {}
    for row in pq.read_table(path, columns=["config", "label", "real_ids"]).to_pylist():
        pools.setdefault(row["config"], {})[row["label"]] = set(row["real_ids"])
    return pools
