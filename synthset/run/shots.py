"""real_shots.parquet: the k real images per class that a few-shot config (and its training) may use.

Drawn once at plan time (`synthset.generation.draw_shots`) and read from here by augmentation-conditioning
(its only conditioning pool), by `synthset build` (the file travels with the dataset) and by the few-shot
probe (which trains on exactly these images).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from synthset.fsutil import atomic_path
from synthset.run.paths import RunDir

SHOTS_SCHEMA = pa.schema(
    [
        ("config", pa.string()),
        ("label", pa.int64()),
        ("class_name", pa.string()),
        ("seed", pa.int64()),
        ("real_ids", pa.list_(pa.string())),
    ]
)


def write_shots(run: RunDir, rows: list[dict]) -> None:
    path = run.shots_file
    if not rows:
        path.unlink(missing_ok=True)
        return
    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pylist(rows, schema=SHOTS_SCHEMA), tmp)


def read_shots(run: RunDir, config: str) -> dict[int, list[str]]:
    """label -> the k real image ids of a few-shot config."""
    path = run.shots_file
    if not path.is_file():
        return {}
    table = pq.read_table(path, filters=[("config", "=", config)])
    return {row["label"]: row["real_ids"] for row in table.to_pylist()}
