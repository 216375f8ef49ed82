"""The fast few-shot probe (`few_shot.protocol: fast`): cached features, a linear head, last-step top-1.

The backbone is frozen and in eval mode, so an image's features never change: they are computed once
(evaluation preprocessing, no augmentation) and cached, and the head trains on cached features. That makes
thousands of head steps per trial cheap and the trials deterministic, but it is not DA-Fusion's protocol
(no augmentation, no BatchNorm adaptation, top-1 after the last step): use it to compare synthetic sets with
each other quickly, and `dafusion` for numbers comparable with the papers. Every draw is a pure function of
(seed, k, trial) (`kshot_indices`).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from synthset.fsutil import write_text_atomic
from synthset.training.config import FewShotSpec, TrainConfig, config_fingerprint
from synthset.training.data import ImageRows, ImageSettings, LoadedSplit, eval_transform, label_space, load_split
from synthset.training.fewshot import (
    SyntheticSets,
    by_class,
    job_path,
    read_job,
    read_real_shots,
    real_shots_config,
    recorded_shot_rows,
    swap_with_synthetic,
    synthetic_pool,
)
from synthset.training.metrics import ClassTally, accuracy_report
from synthset.training.models import build_model

logger = logging.getLogger(__name__)


def kshot_indices(labels: np.ndarray, k: int, seed: int, trial: int) -> np.ndarray:
    """k rows per class (all of a class that has fewer), drawn by (seed, k, trial); sorted row indices."""
    rng = np.random.default_rng([seed, 4, k, trial])
    chosen = [rng.choice(rows, size=min(k, len(rows)), replace=False) for _, rows in sorted(by_class(labels).items())]
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


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
    for _ in range(spec.fast_steps):
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
    return head, swapped_total / (spec.fast_steps * spec.batch_size)


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


def run_fast(config: TrainConfig, accelerator) -> dict[str, Any] | None:
    """Every (k, trial) job of this rank, then (main process) the summary; None on other ranks."""
    spec, fingerprint = config.few_shot, config_fingerprint(config)
    real = load_split(config.real, "real", in_place=False)  # drawn at random: the memory-mapped Arrow cache
    eval_split = load_split(config.eval, "eval", in_place=False)
    synthetic_for = SyntheticSets(config).get
    shots_table = read_real_shots(spec.real_shots) if spec.real_shots is not None else None
    jobs = [(k, trial) for k in spec.shots for trial in range(spec.trials)]
    num_classes, _ = label_space([real, eval_split, *(s for s in [synthetic_for(*jobs[0])] if s is not None)])
    torch.manual_seed(config.seed)
    backbone = build_model(config.model, num_classes=0).to(accelerator.device).eval().requires_grad_(False)
    transform = eval_transform(ImageSettings.for_model(backbone, spec.input_size))
    cache = FeatureCache(backbone, transform, accelerator, spec.feature_batch_size, spec.num_workers)
    mine = [job for i, job in enumerate(jobs) if i % accelerator.num_processes == accelerator.process_index]
    for k, trial in tqdm(mine, desc="few-shot trials", unit="trial", disable=not accelerator.is_main_process):
        path = job_path(config.output_dir, k, trial)
        if read_job(path, fingerprint) is not None:
            continue
        if shots_table is None:
            chosen = kshot_indices(real.labels, k, config.seed, trial)
        else:
            chosen = recorded_shot_rows(shots_table, real_shots_config(config, k, trial), k, real)
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
    records = [read_job(job_path(config.output_dir, k, trial), fingerprint) for k, trial in jobs]
    return {
        "mode": "few_shot",
        "model": config.model.name,
        "fingerprint": fingerprint,
        "num_classes": num_classes,
        "protocol": "fast",
        "metric": "top1",
        "swap_probability": spec.swap_probability,
        "steps": spec.fast_steps,
        "data": {
            "real": {"source": config.real.describe(), "images": len(real)},
            "synthetic": {"source": config.synthetic.describe()} if config.synthetic else None,
            "eval": {"source": config.eval.describe(), "images": len(eval_split)},  # type: ignore[union-attr]
            "real_shots": str(spec.real_shots.path) if spec.real_shots else None,
        },
        "few_shot": summarize([r for r in records if r is not None]),
    }
