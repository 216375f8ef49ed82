"""The few-shot probe (DA-Fusion's protocol, as paper B reports it).

For each shot count k and trial t: draw k real images per class, train a linear head on a frozen
pretrained backbone, and score the real evaluation split; report mean and std over trials. Synthetic data
enters one way only: each time a real training image is drawn, with probability p it is replaced by a
synthetic image *of the same class* from a fixed pool (16 per class in paper B). So the head sees the
same number of draws with or without synthetic data, and the baseline is the same run with p = 0.

The backbone is frozen and in eval mode, so an image's features never change: they are computed once
(evaluation preprocessing, no augmentation) and cached, and the head trains on cached features. That
makes thousands of head steps per trial cheap, and the trials deterministic.

Every draw is a pure function of (seed, k, trial) (`kshot_indices`). A synthetic set made by synthset for
few-shot conditions only on the k real images per class it drew at plan time (paper B warns against
conditioning on the full train split) and ships that draw as real_shots.parquet; with `few_shot.real_shots`
the probe trains on exactly those images (`recorded_shot_rows`) instead of a draw of its own, so the head
never sees a real image the synthetic set was not made from. Each finished (k, trial) is written to its own
file with the real rows it used, so a killed probe resumes by skipping them, and several processes split
the (k, trial) jobs between them without talking.
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
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from synthset.errors import SynthsetError
from synthset.fsutil import write_text_atomic
from synthset.run.paths import SHOTS_FILE
from synthset.train.config import FewShotSpec, RealShotsSpec, TrainConfig, config_fingerprint
from synthset.train.data import ImageRows, ImageSettings, LoadedSplit, eval_transform, label_space, load_split
from synthset.train.metrics import ClassTally, accuracy_report
from synthset.train.models import build_model

logger = logging.getLogger(__name__)

FEWSHOT_DIR = "few_shot"


def _by_class(labels: np.ndarray) -> dict[int, np.ndarray]:
    """Class -> its row indices in ascending order, in one sort (not one scan per class)."""
    order = np.argsort(labels, kind="stable")
    classes, starts = np.unique(labels[order], return_index=True)
    groups = np.split(order, starts[1:])
    return {int(c): g for c, g in zip(classes, groups, strict=True)}


def kshot_indices(labels: np.ndarray, k: int, seed: int, trial: int) -> np.ndarray:
    """k rows per class (all of a class that has fewer), drawn by (seed, k, trial); sorted row indices."""
    rng = np.random.default_rng([seed, 4, k, trial])
    chosen = [rng.choice(rows, size=min(k, len(rows)), replace=False) for _, rows in sorted(_by_class(labels).items())]
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def read_real_shots(spec: RealShotsSpec) -> pa.Table:
    path = spec.path / SHOTS_FILE if spec.path.is_dir() else spec.path
    if not path.is_file():
        raise SynthsetError(f"few_shot.real_shots.path: no {SHOTS_FILE} at {str(spec.path)!r}")
    return pq.read_table(path, columns=["config", "label", "real_ids"])


def recorded_shot_rows(shots: pa.Table, config_name: str, k: int, real: LoadedSplit) -> np.ndarray:
    """Rows of `real` that config `config_name` drew (k per class), checked against real's labels; sorted.

    A recorded id is `<dataset>:<split>:<row>` (real_images from a `datasets` source); its label must be
    the row's label in `real`, which catches a probe pointed at another dataset, split or label order.
    """
    where = f"few_shot.real_shots: config {config_name!r}"
    rows = shots.filter(pc.equal(shots["config"], config_name)).to_pylist()
    if not rows:
        known = ", ".join(sorted(set(shots.column("config").to_pylist())))
        raise SynthsetError(f"{where} is not in {SHOTS_FILE} (it has: {known})")
    chosen = []
    for row in rows:
        if len(row["real_ids"]) != k:
            raise SynthsetError(f"{where} drew {len(row['real_ids'])} images of class {row['label']}, not k={k}")
        for real_id in row["real_ids"]:
            parts = real_id.rsplit(":", 2)
            if len(parts) != 3 or not parts[2].isdigit():
                raise SynthsetError(
                    f"{where}: {real_id!r} is an image file (a real_images folder); the probe can only match "
                    "rows of a `datasets` source, `<dataset>:<split>:<row>`"
                )
            if parts[1] != real.source.split:
                raise SynthsetError(f"{where}: {real_id!r} is from split {parts[1]!r}, real is {real.source.split!r}")
            index = int(parts[2])
            if index >= len(real) or int(real.labels[index]) != row["label"]:
                found = "past the end" if index >= len(real) else f"label {int(real.labels[index])}"
                raise SynthsetError(
                    f"{where}: {real_id!r} is class {row['label']} but row {index} of real is {found}: "
                    "is `real` the recipe's real_images dataset and split?"
                )
            chosen.append(index)
    return np.sort(np.array(chosen, dtype=np.int64))


def synthetic_pool(labels: np.ndarray, per_class: int | None, seed: int, trial: int) -> dict[int, np.ndarray]:
    """Class -> the synthetic rows a trial may swap in: `per_class` of each class drawn by (seed, trial), or all."""
    rng = np.random.default_rng([seed, 5, trial])
    pool = {}
    for c, rows in sorted(_by_class(labels).items()):
        pool[c] = rows if per_class is None or len(rows) <= per_class else np.sort(rng.choice(rows, per_class, False))
    return pool


def swap_with_synthetic(
    real_labels: np.ndarray, pool: dict[int, np.ndarray], p: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """For each drawn real row: swap it (with probability p) for a uniform pick from its class's pool.

    Returns (swapped mask, synthetic row per position or -1). A class with an empty pool is never swapped.
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


def train_linear_head(
    real_features: torch.Tensor,
    real_labels: np.ndarray,
    synthetic_features: torch.Tensor | None,
    pool: dict[int, np.ndarray],
    num_classes: int,
    spec: FewShotSpec,
    seed: tuple[int, ...],
) -> tuple[nn.Linear, float]:
    """Adam on a linear head over cached features; `pool` holds row positions in `synthetic_features`.

    Each step draws `batch_size` real rows uniformly (with replacement) and swaps each with p. Returns the
    head and the fraction of draws that were swapped (p, up to sampling noise and classes without a pool).
    """
    rng = np.random.default_rng([*seed, 6])
    generator = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
    head = nn.Linear(real_features.shape[1], num_classes)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=generator) * 0.01)
        head.bias.zero_()
    head = head.to(real_features.device)
    optimizer = torch.optim.Adam(head.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    targets_all = torch.as_tensor(real_labels, device=real_features.device)
    use_synthetic = synthetic_features is not None and spec.swap_probability > 0
    swapped_total = 0
    for _ in range(spec.steps):
        positions = rng.integers(0, len(real_labels), spec.batch_size)
        x = real_features[positions]
        if use_synthetic:
            swapped, rows = swap_with_synthetic(real_labels[positions], pool, spec.swap_probability, rng)
            if swapped.any():
                x = x.clone()
                x[torch.as_tensor(swapped)] = synthetic_features[rows[swapped]]
            swapped_total += int(swapped.sum())
        loss = F.cross_entropy(head(x), targets_all[positions])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return head, swapped_total / (spec.steps * spec.batch_size)


class FeatureCache:
    """Pooled backbone features per (split, row), computed once in batches and reused by every trial."""

    def __init__(self, backbone: nn.Module, transform, accelerator, batch_size: int, num_workers: int) -> None:
        self.backbone, self.transform, self.accelerator = backbone, transform, accelerator
        self.batch_size, self.num_workers = batch_size, num_workers
        self._store: dict[str, dict[int, torch.Tensor]] = {}

    def get(self, split: LoadedSplit, indices: np.ndarray, desc: str = "features") -> torch.Tensor:
        store = self._store.setdefault(f"{split.field}:{split.source.describe()}", {})
        missing = np.array(sorted({int(i) for i in indices} - store.keys()), dtype=np.int64)
        if len(missing):
            loader = torch.utils.data.DataLoader(
                ImageRows(split, self.transform, missing), batch_size=self.batch_size, num_workers=self.num_workers
            )
            done = 0
            with torch.no_grad(), self.accelerator.autocast():
                for images, _ in tqdm(loader, desc=desc, leave=False, disable=not self.accelerator.is_main_process):
                    features = self.backbone(images.to(self.accelerator.device)).float()
                    for row, feature in zip(missing[done : done + len(features)], features, strict=True):
                        store[int(row)] = feature
                    done += len(features)
        return torch.stack([store[int(i)] for i in indices])


def _job_path(output_dir: Path, k: int, trial: int) -> Path:
    return output_dir / FEWSHOT_DIR / f"k{k:03d}-trial{trial:02d}.json"


def _read_job(path: Path, fingerprint: str) -> dict[str, Any] | None:
    if not path.exists():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    if record.get("fingerprint") != fingerprint:
        raise SynthsetError(
            f"{path}: made with another training config; restore that config or choose a new output_dir"
        )
    return record


def summarize(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per shot count: mean and std (ddof=1; 0 for one trial) of top-1 over trials."""
    out: dict[str, dict[str, Any]] = {}
    for k in sorted({r["k"] for r in records}):
        trials = sorted((r for r in records if r["k"] == k), key=lambda r: r["trial"])
        top1 = np.array([r["top1"] for r in trials])
        out[str(k)] = {
            "mean": float(top1.mean()),
            "std": float(top1.std(ddof=1)) if len(top1) > 1 else 0.0,
            "trials": [float(x) for x in top1],
            "swapped_fraction": float(np.mean([r["swapped_fraction"] for r in trials])),
            "real_images": int(trials[0]["real_images"]),
        }
    return out


def run_few_shot(config: TrainConfig, accelerator) -> dict[str, Any] | None:
    """Every (k, trial) job of this rank, then (main process) the summary; None on other ranks."""
    spec, fingerprint = config.few_shot, config_fingerprint(config)
    real = load_split(config.real, "real")
    eval_split = load_split(config.eval, "eval")
    synthetic_splits: dict[str, LoadedSplit] = {}

    def synthetic_for(k: int, trial: int) -> LoadedSplit | None:
        if config.synthetic is None or spec.swap_probability == 0:
            return None
        name = config.synthetic.name.format(k=k, trial=trial) if config.synthetic.name else None
        if name not in synthetic_splits:
            synthetic_splits[name] = load_split(config.synthetic.model_copy(update={"name": name}), "synthetic")
        return synthetic_splits[name]

    recorded_shots = read_real_shots(spec.real_shots) if spec.real_shots is not None else None
    jobs = [(k, trial) for k in spec.shots for trial in range(spec.trials)]
    num_classes, _ = label_space([real, eval_split, *(s for s in [synthetic_for(*jobs[0])] if s is not None)])
    torch.manual_seed(config.seed)
    backbone = build_model(config.model, num_classes=0).to(accelerator.device).eval().requires_grad_(False)
    transform = eval_transform(ImageSettings.for_model(backbone, spec.image_size))
    cache = FeatureCache(backbone, transform, accelerator, spec.feature_batch_size, spec.num_workers)
    mine = [job for i, job in enumerate(jobs) if i % accelerator.num_processes == accelerator.process_index]
    for k, trial in tqdm(mine, desc="few-shot trials", unit="trial", disable=not accelerator.is_main_process):
        path = _job_path(config.output_dir, k, trial)
        if _read_job(path, fingerprint) is not None:
            continue
        if recorded_shots is None:
            chosen = kshot_indices(real.labels, k, config.seed, trial)
        else:
            name = spec.real_shots.config or config.synthetic.name
            chosen = recorded_shot_rows(recorded_shots, name.format(k=k, trial=trial), k, real)
        real_features = cache.get(real, chosen, desc=f"features real k={k}")
        synthetic = synthetic_for(k, trial)
        synthetic_features, pool = None, {}
        if synthetic is not None:
            label_space([real, synthetic])
            pool_rows = synthetic_pool(synthetic.labels, spec.synthetic_per_class, config.seed, trial)
            flat = np.concatenate(list(pool_rows.values()))
            synthetic_features = cache.get(synthetic, flat, desc="features synthetic")
            start, pool = 0, {}
            for c, rows in pool_rows.items():  # class -> positions in synthetic_features
                pool[c] = np.arange(start, start + len(rows))
                start += len(rows)
            missing = sorted(set(np.unique(real.labels[chosen]).tolist()) - set(pool))
            if missing:
                logger.warning(
                    "k=%d trial %d: %d classes have no synthetic image, never swapped", k, trial, len(missing)
                )
        head, swapped = train_linear_head(
            real_features, real.labels[chosen], synthetic_features, pool, num_classes, spec, (config.seed, k, trial)
        )
        eval_features = cache.get(eval_split, np.arange(len(eval_split)), desc="features eval")
        tally = ClassTally.zeros(num_classes)
        with torch.no_grad():
            tally.update(head(eval_features).float().cpu(), torch.from_numpy(eval_split.labels.copy()))
        report = accuracy_report(tally)
        record = {
            "k": k,
            "trial": trial,
            "top1": report["top1"],
            "top5": report["top5"],
            "swapped_fraction": swapped,
            "real_images": len(chosen),
            "real_rows": chosen.tolist(),  # which real images the head saw: the trial can be redone from this
            "eval_images": report["images"],
            "fingerprint": fingerprint,
        }
        write_text_atomic(path, json.dumps(record, indent=2))
        logger.info("few-shot k=%d trial %d: top-1 %.4f (swapped %.3f)", k, trial, report["top1"], swapped)
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return None
    records = [_read_job(_job_path(config.output_dir, k, trial), fingerprint) for k, trial in jobs]
    return {
        "mode": "few_shot",
        "model": config.model.name,
        "fingerprint": fingerprint,
        "num_classes": num_classes,
        "swap_probability": spec.swap_probability,
        "steps": spec.steps,
        "data": {
            "real": {"source": config.real.describe(), "images": len(real)},
            "synthetic": {"source": config.synthetic.describe()} if config.synthetic else None,
            "eval": {"source": config.eval.describe(), "images": len(eval_split)},
            "real_shots": str(spec.real_shots.path) if spec.real_shots else None,
        },
        "few_shot": summarize([r for r in records if r is not None]),
    }
