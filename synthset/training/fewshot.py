"""The few-shot probe: what both protocols share (the dispatch on `few_shot.protocol` is `fewshot_protocols`).

For each shot count k and trial t the probe trains a linear head on a frozen pretrained backbone with k real
images per class and scores a real validation split; the numbers are summarized over trials. Synthetic data
enters one way only: each time a real training image is drawn, with probability p it is replaced by a
synthetic image (made from that very real image, or of its class). So the head sees the same number of draws
with or without synthetic data, and the baseline is the same run with p = 0.

- `dafusion` (default, `synthset.training.fewshot_dafusion`): DA-Fusion's classifier as DA-Fusion runs it, the
  sound protocol.
- `paper_b_code` (same module): that classifier with the three quirks of paper B's authors' fine_tune.py, the
  code behind paper B's published few-shot numbers (docs/papers.md); for comparing with those only.
- `fast` (`synthset.training.fewshot_fast`): cached eval-mode features and last-step top-1; quick, but not
  comparable with those tables.

A synthetic set made by synthset for few-shot conditions only on the k real images per class it drew at
plan time and ships that draw as real_shots.parquet; with `few_shot.real_shots` the probe trains on exactly
those images (`recorded_shot_rows`). Each finished (k, trial) is written to its own file with the real rows
it used, so a killed probe resumes by skipping them, and several processes split the jobs without talking.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from synthset.errors import SynthsetError
from synthset.run.paths import SHOTS_FILE
from synthset.training.config import RealShotsSpec, TrainConfig
from synthset.training.data import LoadedSplit, load_split

logger = logging.getLogger(__name__)

FEWSHOT_DIR = "few_shot"


def by_class(labels: np.ndarray) -> dict[int, np.ndarray]:
    """Class -> its row indices in ascending order, in one sort (not one scan per class)."""
    order = np.argsort(labels, kind="stable")
    classes, starts = np.unique(labels[order], return_index=True)
    groups = np.split(order, starts[1:])
    return {int(c): g for c, g in zip(classes, groups, strict=True)}


def read_real_shots(spec: RealShotsSpec) -> pa.Table:
    path = spec.path / SHOTS_FILE if spec.path.is_dir() else spec.path
    if not path.is_file():
        raise SynthsetError(f"few_shot.real_shots.path: no {SHOTS_FILE} at {str(spec.path)!r}")
    return pq.read_table(path, columns=["config", "label", "real_ids"])


def parse_real_id(real_id: str) -> tuple[str, int] | None:
    """(split, row) of a `<dataset>:<split>:<row>` id; None for an image-folder path."""
    parts = real_id.rsplit(":", 2)
    if len(parts) != 3 or not parts[2].isdigit():
        return None
    return parts[1], int(parts[2])


def recorded_shots(shots: pa.Table, config_name: str, k: int, real: LoadedSplit) -> dict[int, list[int]]:
    """label -> positions in `real` of the k images config `config_name` drew, in recorded order, checked.

    A recorded id is `<dataset>:<split>:<row>` (real_images from a `datasets` source); its label must be
    the row's label in `real`, which catches a probe pointed at another dataset, split or label order.
    """
    where = f"few_shot.real_shots: config {config_name!r}"
    rows = shots.filter(pc.equal(shots["config"], config_name)).to_pylist()
    if not rows:
        known = ", ".join(sorted(set(shots.column("config").to_pylist())))
        raise SynthsetError(f"{where} is not in {SHOTS_FILE} (it has: {known})")
    position_of = real.position_of()
    chosen: dict[int, list[int]] = {}
    for row in rows:
        if len(row["real_ids"]) != k:
            raise SynthsetError(f"{where} drew {len(row['real_ids'])} images of class {row['label']}, not k={k}")
        for real_id in row["real_ids"]:
            parsed = parse_real_id(real_id)
            if parsed is None:
                raise SynthsetError(
                    f"{where}: {real_id!r} is an image file (a real_images folder); the probe can only match "
                    "rows of a `datasets` source, `<dataset>:<split>:<row>`"
                )
            split, index = parsed
            if split != real.source.split:
                raise SynthsetError(f"{where}: {real_id!r} is from split {split!r}, real is {real.source.split!r}")
            position = position_of.get(index)
            if position is None or int(real.labels[position]) != row["label"]:
                found = "not a row with a class" if position is None else f"label {int(real.labels[position])}"
                raise SynthsetError(
                    f"{where}: {real_id!r} is class {row['label']} but row {index} of real is {found}: "
                    "is `real` the recipe's real_images dataset and split?"
                )
            chosen.setdefault(row["label"], []).append(position)
    return chosen


def recorded_shot_rows(shots: pa.Table, config_name: str, k: int, real: LoadedSplit) -> np.ndarray:
    """Positions in `real` of every recorded shot of a config (k per class), sorted."""
    chosen = recorded_shots(shots, config_name, k, real)
    return np.sort(np.array([p for positions in chosen.values() for p in positions], dtype=np.int64))


def synthetic_pool(labels: np.ndarray, per_class: int | None, seed: int, trial: int) -> dict[int, np.ndarray]:
    """Class -> the synthetic rows a trial may swap in: `per_class` of each class drawn by (seed, trial), or all."""
    rng = np.random.default_rng([seed, 5, trial])
    pool = {}
    for c, rows in sorted(by_class(labels).items()):
        pool[c] = rows if per_class is None or len(rows) <= per_class else np.sort(rng.choice(rows, per_class, False))
    return pool


def swap_with_synthetic(
    real_labels: np.ndarray, pool: dict[int, np.ndarray], p: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """For each drawn real row: swap it (with probability p) for a uniform pick from its key's pool.

    The key is the row's class (a pool per class) or the real row itself (a pool per real image, DA-Fusion).
    Returns (swapped mask, synthetic row per position or -1). A key with an empty pool is never swapped.
    """
    n = len(real_labels)
    coin = rng.random(n) < p
    picks = rng.random(n)  # drawn for every position, so the swap pattern does not shift the stream
    synthetic = np.full(n, -1, dtype=np.int64)
    for i in np.flatnonzero(coin):
        options = pool.get(int(real_labels[i]))
        if options is not None and len(options):
            synthetic[i] = options[min(int(picks[i] * len(options)), len(options) - 1)]
    return synthetic >= 0, synthetic


def job_path(output_dir: Path, k: int, trial: int) -> Path:
    return output_dir / FEWSHOT_DIR / f"k{k:03d}-trial{trial:02d}.json"


def read_job(path: Path, fingerprint: str) -> dict[str, Any] | None:
    if not path.exists():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    if record.get("fingerprint") != fingerprint:
        raise SynthsetError(
            f"{path}: made with another training config; restore that config or choose a new output_dir"
        )
    return record


class SyntheticSets:
    """The synthetic split of each (k, trial), loaded once per distinct name ({k}/{trial} placeholders)."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self._loaded: dict[str | None, LoadedSplit] = {}

    def get(self, k: int, trial: int) -> LoadedSplit | None:
        source = self.config.synthetic
        if source is None or self.config.few_shot.swap_probability == 0:
            return None
        name = source.name.format(k=k, trial=trial) if source.name else None
        if name not in self._loaded:
            self._loaded[name] = load_split(source.model_copy(update={"name": name}), "synthetic", in_place=False)
        return self._loaded[name]


def real_shots_config(config: TrainConfig, k: int, trial: int) -> str:
    spec = config.few_shot
    name = spec.real_shots.config or config.synthetic.name  # type: ignore[union-attr]
    return name.format(k=k, trial=trial)
