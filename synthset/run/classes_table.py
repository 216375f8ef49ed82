"""classes.parquet: the run's label space, which classes it generates, and what LAR chose for each.

One row per class of the whole set (labels stay those of the set), `selected` marks the classes this
run generates, and the `lar_*` columns record Label Ambiguity Resolution: candidates, their CLIP scores,
the chosen meaning and how it was chosen. The key of the LAR settings is kept in the file's metadata so
a re-plan with the same settings reuses the results instead of scoring again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from synthset.errors import SynthsetError
from synthset.fsutil import atomic_path
from synthset.run.paths import RunDir

if TYPE_CHECKING:
    from synthset.classes import ClassInfo

LAR_KEY_METADATA = b"synthset_lar_key"

CLASSES_SCHEMA = pa.schema(
    [
        ("label", pa.int64()),
        ("wnid", pa.string()),
        ("class_name", pa.string()),
        ("label_name", pa.string()),
        ("gloss", pa.string()),
        ("selected", pa.bool_()),
        ("lar_candidates", pa.list_(pa.string())),
        ("lar_scores", pa.list_(pa.float32())),
        ("lar_meaning", pa.string()),
        ("lar_source", pa.string()),
        ("lar_candidate_sources", pa.list_(pa.string())),
        ("lar_meaning_from", pa.string()),
    ]
)


@dataclass(frozen=True)
class LARResult:
    """What Label Ambiguity Resolution decided for one class (see `synthset.generation.lar`)."""

    candidates: list[str]
    scores: list[float] | None
    meaning: str | None
    source: str  # scored | single | no-real-images | no-candidates
    candidate_sources: list[str] | None = None  # per candidate: wordnet | llm | both (listed by each)
    meaning_from: str | None = None  # the winner's: wordnet | llm | both


def write_classes(
    run: RunDir,
    classes: list[ClassInfo],
    selected: list[ClassInfo],
    lar: dict[int, LARResult] | None = None,
    lar_key: str | None = None,
) -> None:
    chosen = {info.label for info in selected}
    lar = lar or {}
    rows = []
    for info in classes:
        result = lar.get(info.label)
        rows.append(
            {
                "label": info.label,
                "wnid": info.wnid,
                "class_name": info.class_name,
                "label_name": info.label_name,
                "gloss": info.gloss,
                "selected": info.label in chosen,
                "lar_candidates": result.candidates if result else None,
                "lar_scores": result.scores if result else None,
                "lar_meaning": result.meaning if result else None,
                "lar_source": result.source if result else None,
                "lar_candidate_sources": result.candidate_sources if result else None,
                "lar_meaning_from": result.meaning_from if result else None,
            }
        )
    schema = CLASSES_SCHEMA.with_metadata({LAR_KEY_METADATA: (lar_key or "").encode()})
    with atomic_path(run.classes_file) as tmp:
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp)


def read_label_names(run: RunDir) -> list[str]:
    """The run's label space in label order (the names of its ClassLabel)."""
    try:
        return pq.read_table(run.classes_file, columns=["label_name"]).column(0).to_pylist()
    except FileNotFoundError:
        raise SynthsetError(f"{run}: no {run.classes_file.name}; run `synthset plan` first") from None


def read_class_infos(run: RunDir) -> list[ClassInfo]:
    """The run's whole class set as the plan recorded it: a later stage never re-reads the user's class list
    (a worker may not have that file, and it may have been edited since)."""
    from synthset.classes import ClassInfo

    columns = ["label", "class_name", "label_name", "wnid", "gloss"]
    return [ClassInfo(**row) for row in read_class_rows(run, columns)]


def read_class_rows(run: RunDir, columns: list[str]) -> list[dict]:
    """Rows of classes.parquet (one per class of the set), restricted to `columns`."""
    return pq.read_table(run.classes_file, columns=columns).to_pylist()


def read_lar_results(run: RunDir, lar_key: str) -> dict[int, LARResult] | None:
    """The LAR results stored by a previous plan with the same settings, or None."""
    path = run.classes_file
    if not path.is_file():
        return None
    table = pq.read_table(path)
    if (table.schema.metadata or {}).get(LAR_KEY_METADATA, b"").decode() != lar_key:
        return None
    return {
        row["label"]: LARResult(
            row["lar_candidates"],
            row["lar_scores"],
            row["lar_meaning"],
            row["lar_source"],
            row.get("lar_candidate_sources"),
            row.get("lar_meaning_from"),
        )
        for row in table.to_pylist()
        if row["lar_source"] is not None
    }
