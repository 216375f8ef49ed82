"""DA-Fusion's few-shot probe (`few_shot.protocol: dafusion`), as brandontrabucco/da-fusion's
`train_classifier.py` runs it and paper B's `fine_tune.py` copies it.

Per (k, trial):
- split: DA-Fusion's draw with numpy seed `seed + trial` (`synthset.classes.dafusion`): the first k ids of each
  class's training split; validation is the other half of `real` (`halves`, Caltech101 and Flowers102) or the
  `eval` split (COCO, PASCAL VOC: their official val);
- model: the pretrained timm backbone (torchvision's ResNet-50, `resnet50.tv2_in1k`, in the shipped configs)
  without its classifier, frozen (no gradient), plus a fresh linear head; the backbone starts every trial
  from its pretrained weights, since
- BatchNorm mode: the whole model is in training mode while the head trains, so BatchNorm normalizes with
  batch statistics and updates its running statistics (DA-Fusion computes features under no_grad, which
  does not stop that), and in eval mode for validation;
- input: resized to image_size x image_size (256, aspect not kept), random horizontal flip and rotation by
  up to 15 degrees for training, normalized with mean = std = 0.5;
- optimizer: Adam, lr 1e-4, no weight decay or schedule; epochs x iterations_per_epoch steps of batch_size
  draws, each drawn uniformly with replacement from the k x classes real images;
- synthetic data: each draw is replaced, with probability p, by a synthetic image made from that real
  image (per_real: rows whose first cond_images id is it, up to synthetic_per_real) or of its class
  (per_class, paper B's 16 per class);
- metric: after every epoch, the mean over classes of per-class accuracy on eval_draws validation images
  drawn with replacement (a class never drawn counts as 0, as DA-Fusion's clamp does); the reported number
  per k is the epoch whose mean over trials is highest, and the trials' values at that epoch (DA-Fusion's
  plot.py).

Every random draw (shots aside) comes from (seed, k, trial) and every image's augmentation from its own seed,
so a trial is reproducible on one process or many.

`few_shot.protocol: paper_b_code` runs the same probe with the three quirks of paper B's authors' fine_tune.py
(JiahuiKChen/LT-classification, the code behind their published few-shot numbers; docs/papers.md cites the
lines): validation draws are swapped for synthetic images of their class with the training p
(`validation_items`), every trial trains on the seed-0 shots (`shot_seed`), and each trial's own best epoch
is averaged (`per_trial_best_summary`). Only for comparing with those numbers: the first quirk scores partly
synthetic images, the third picks the best epoch per trial on the scored set.
"""

from __future__ import annotations

import copy
import json
import logging
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import v2
from tqdm.auto import tqdm

from synthset.classes.dafusion import ClassSplit, dafusion_split
from synthset.errors import SynthsetError
from synthset.fsutil import write_text_atomic
from synthset.training.config import TrainConfig, config_fingerprint
from synthset.training.data import LoadedSplit, MixedRows, label_space, load_split
from synthset.training.fewshot import (
    SyntheticSets,
    job_path,
    parse_real_id,
    read_job,
    read_real_shots,
    real_shots_config,
    recorded_shots,
    swap_with_synthetic,
    synthetic_pool,
)
from synthset.training.models import build_model
from synthset.training.sampler import REAL, SYNTHETIC, Item

logger = logging.getLogger(__name__)

MEAN = STD = (0.5, 0.5, 0.5)
ROTATION_DEGREES = 15.0
METRICS = {
    "dafusion": "mean per-class accuracy at the best epoch",
    "paper_b_code": "mean over trials of each trial's best-epoch mean per-class accuracy, validation draws swapped "
    "for synthetic images with the training p (paper B's fine_tune.py)",
}
EvalSwap = tuple[LoadedSplit | None, dict[int, np.ndarray]]  # (synthetic split, class pool) validation draws use


def train_transform(size: int) -> v2.Compose:
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize((size, size), antialias=True),
            v2.RandomHorizontalFlip(p=0.5),
            v2.RandomRotation(degrees=ROTATION_DEGREES),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(MEAN, STD),
        ]
    )


def eval_transform(size: int) -> v2.Compose:
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize((size, size), antialias=True),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(MEAN, STD),
        ]
    )


def trial_split(real: LoadedSplit, num_classes: int, seed: int, halves: bool) -> dict[int, ClassSplit[int]]:
    """DA-Fusion's split of `real` for one trial, as source row numbers (each class's rows in source order)."""
    rows = real.rows()
    ids: dict[int, list[int]] = {}
    for position, label in enumerate(real.labels):
        ids.setdefault(int(label), []).append(int(rows[position]))
    return dafusion_split(ids, num_classes, seed, halves)


def check_recorded(recorded: dict[int, list[int]], shots: dict[int, list[int]], name: str, trial_seed: int) -> None:
    """The recorded shots (positions) must be the probe's own DA-Fusion shots, or validation could hold them."""
    for label, positions in sorted(recorded.items()):
        if sorted(positions) != sorted(shots.get(label, [])):
            raise SynthsetError(
                f"few_shot.real_shots: config {name!r} class {label}: the recorded shots are not DA-Fusion's shots "
                f"for numpy seed {trial_seed}; make the dataset with shot_draw: {{trial: {trial_seed}}} (and the "
                "same halves), or use protocol: fast"
            )


def per_real_pool(
    synthetic: LoadedSplit, real: LoadedSplit, positions: np.ndarray, cap: int | None, rng: np.random.Generator
) -> dict[int, np.ndarray]:
    """Real position -> synthetic rows made from that real image (their first cond_images id), up to `cap`."""
    if synthetic.first_cond_images is None:
        raise SynthsetError(
            "few_shot.synthetic_pool: per_real needs a synthetic set whose rows record cond_images (augcond); "
            "use synthetic_pool: per_class"
        )
    rows = real.rows()
    wanted = {(real.source.split, int(rows[p])): int(p) for p in positions}
    made_from: dict[int, list[int]] = {}
    for synthetic_row, real_id in enumerate(synthetic.first_cond_images):
        parsed = parse_real_id(real_id) if real_id else None
        if parsed in wanted:
            made_from.setdefault(wanted[parsed], []).append(synthetic_row)
    pool = {}
    for position, made in sorted(made_from.items()):
        chosen = np.array(made, dtype=np.int64)
        if cap is not None and len(chosen) > cap:
            chosen = np.sort(rng.choice(chosen, cap, replace=False))
        pool[position] = chosen
    return pool


def shot_seed(config: TrainConfig, trial: int) -> int:
    """The numpy seed of a trial's shots: `seed + trial`, or (paper_b_code) `seed` for every trial, as the authors'
    fine_tune.py builds its train set with the dataset's default seed 0 (its validation set gets the trial's)."""
    return config.seed if config.few_shot.protocol == "paper_b_code" else config.seed + trial


def validation_items(
    labels: np.ndarray, positions: np.ndarray, pool: dict[int, np.ndarray], p: float, rng: np.random.Generator
) -> tuple[list[Item], int]:
    """The validation draws as `Item`s (real positions of the eval split) and how many were swapped: with a class
    pool (paper_b_code), each draw is replaced with probability p by a synthetic image of its class."""
    if not pool or p == 0:
        return [Item(REAL, int(position), 0) for position in positions], 0
    swapped, synthetic_rows = swap_with_synthetic(labels[positions], pool, p, rng)
    items = [
        Item(SYNTHETIC, int(synthetic_rows[i]), 0) if swapped[i] else Item(REAL, int(position), 0)
        for i, position in enumerate(positions)
    ]
    return items, int(swapped.sum())


def mean_per_class_accuracy(correct: np.ndarray, seen: np.ndarray) -> float:
    """DA-Fusion's validation metric: the mean over all classes of correct / max(seen, 1)."""
    return float((np.asarray(correct, dtype=np.float64) / np.maximum(np.asarray(seen), 1)).mean())


def best_epoch_summary(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per k: the epoch with the highest mean over trials (DA-Fusion's plot.py), and every trial's value there."""
    out: dict[str, dict[str, Any]] = {}
    for k in sorted({r["k"] for r in records}):
        trials = sorted((r for r in records if r["k"] == k), key=lambda r: r["trial"])
        curves = np.array([r["epoch_accuracy"] for r in trials])  # trials x epochs
        best = int(curves.mean(axis=0).argmax())
        values = curves[:, best]
        out[str(k)] = {
            "mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "best_epoch": best + 1,
            "trials": [float(v) for v in values],
            "swapped_fraction": float(np.mean([r["swapped_fraction"] for r in trials])),
            "real_images": int(trials[0]["real_images"]),
        }
    return out


def per_trial_best_summary(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per k (paper_b_code): every trial's own best epoch, and their mean (the authors' FineTuneResults.ipynb takes
    `val_accs.max()` per trial, then the mean over trials), which is at least the best-mean-epoch number."""
    out: dict[str, dict[str, Any]] = {}
    for k in sorted({r["k"] for r in records}):
        trials = sorted((r for r in records if r["k"] == k), key=lambda r: r["trial"])
        values = np.array([max(r["epoch_accuracy"]) for r in trials])
        out[str(k)] = {
            "mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "best_epoch": [int(np.argmax(r["epoch_accuracy"])) + 1 for r in trials],
            "trials": [float(v) for v in values],
            "swapped_fraction": float(np.mean([r["swapped_fraction"] for r in trials])),
            "eval_swapped_fraction": float(np.mean([r["eval_swapped_fraction"] for r in trials])),
            "real_images": int(trials[0]["real_images"]),
        }
    return out


class Trial:
    """One (k, trial): the shots, the synthetic pool, the head, and the per-epoch validation accuracy."""

    def __init__(self, config: TrainConfig, accelerator, backbone: nn.Module, num_classes: int, k: int, trial: int):
        self.config, self.spec = config, config.few_shot
        self.accelerator, self.backbone, self.num_classes = accelerator, backbone, num_classes
        self.k, self.trial = k, trial
        self.rng = np.random.default_rng([config.seed, 7, k, trial])

    def draw_epoch(
        self, shots: np.ndarray, keys: np.ndarray, pool: dict[int, np.ndarray]
    ) -> tuple[list[list[Item]], int]:
        """The epoch's batches of Items (real shot or its synthetic swap), and how many were swapped."""
        spec = self.spec
        n = spec.iterations_per_epoch * spec.batch_size
        drawn = self.rng.integers(0, len(shots), n)  # RandomSampler(replacement=True)
        swapped, synthetic_rows = swap_with_synthetic(keys[drawn], pool, spec.swap_probability, self.rng)
        seeds = self.rng.integers(0, 2**62, n)
        items = [
            Item(SYNTHETIC, int(synthetic_rows[i]), int(seeds[i]))
            if swapped[i]
            else Item(REAL, int(shots[drawn[i]]), int(seeds[i]))
            for i in range(n)
        ]
        batches = [items[i : i + spec.batch_size] for i in range(0, n, spec.batch_size)]
        return batches, int(swapped.sum())

    def validate(
        self, head: nn.Module, eval_split: LoadedSplit, positions: np.ndarray, epoch: int, swap: EvalSwap
    ) -> tuple[float, int]:
        """Mean per-class accuracy over this epoch's validation draws, and how many of them were synthetic."""
        spec, accelerator = self.spec, self.accelerator
        rng = np.random.default_rng([self.config.seed, 8, self.k, self.trial, epoch])
        if spec.eval_draws is not None:
            positions = positions[rng.integers(0, len(positions), spec.eval_draws)]
        synthetic, pool = swap
        items, swapped = validation_items(eval_split.labels, positions, pool, spec.swap_probability, rng)
        loader = torch.utils.data.DataLoader(
            MixedRows(eval_split, synthetic, eval_transform(spec.input_size)),
            batch_sampler=[items[i : i + spec.batch_size] for i in range(0, len(items), spec.batch_size)],
            num_workers=spec.num_workers,
        )
        correct = np.zeros(self.num_classes)
        seen = np.zeros(self.num_classes)
        self.backbone.eval()
        with torch.no_grad(), accelerator.autocast():
            for images, labels, _ in loader:
                predicted = head(self.backbone(images.to(accelerator.device)).float()).argmax(1).cpu().numpy()
                labels = labels.numpy()
                np.add.at(seen, labels, 1)
                np.add.at(correct, labels, predicted == labels)
        return mean_per_class_accuracy(correct, seen), swapped

    def run(
        self,
        real: LoadedSplit,
        synthetic: LoadedSplit | None,
        shots: np.ndarray,
        keys: np.ndarray,
        pool: dict[int, np.ndarray],
        eval_split: LoadedSplit,
        eval_positions: np.ndarray,
    ) -> tuple[list[float], float, float]:
        """The trial's per-epoch validation accuracy, and the swapped share of training and validation draws."""
        spec, accelerator = self.spec, self.accelerator
        generator = torch.Generator().manual_seed(int(self.rng.integers(0, 2**62)))
        head = nn.Linear(self.backbone.num_features, self.num_classes)
        with torch.no_grad():  # nn.Linear's own initialisation, from the trial's generator
            bound = 1 / head.in_features**0.5
            head.weight.copy_(torch.empty_like(head.weight).uniform_(-bound, bound, generator=generator))
            head.bias.copy_(torch.empty_like(head.bias).uniform_(-bound, bound, generator=generator))
        head = head.to(accelerator.device)
        optimizer = torch.optim.Adam(head.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
        rows = MixedRows(real, synthetic, train_transform(spec.input_size))
        curve, swapped_total, eval_swapped, eval_drawn = [], 0, 0, 0
        swap: EvalSwap = (synthetic, pool if self.spec.protocol == "paper_b_code" else {})
        for epoch in range(spec.epochs):
            batches, swapped = self.draw_epoch(shots, keys, pool)
            swapped_total += swapped
            loader = torch.utils.data.DataLoader(rows, batch_sampler=batches, num_workers=spec.num_workers)
            self.backbone.train()  # batch statistics, running statistics updated: DA-Fusion's model.train()
            head.train()
            for images, labels, _ in loader:
                with torch.no_grad(), accelerator.autocast():
                    features = self.backbone(images.to(accelerator.device)).float()
                loss = F.cross_entropy(head(features), labels.to(accelerator.device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            accuracy, swapped_in_eval = self.validate(head, eval_split, eval_positions, epoch, swap)
            curve.append(accuracy)
            eval_swapped += swapped_in_eval
            eval_drawn += spec.eval_draws or len(eval_positions)
        drawn = spec.epochs * spec.iterations_per_epoch * spec.batch_size
        return curve, swapped_total / drawn, eval_swapped / eval_drawn


def run_dafusion(config: TrainConfig, accelerator) -> dict[str, Any] | None:
    """Every (k, trial) job of this rank, then (main process) the best-epoch summary; None on other ranks."""
    spec, fingerprint = config.few_shot, config_fingerprint(config)
    real = load_split(config.real, "real", in_place=False)  # drawn at random: the memory-mapped Arrow cache
    eval_split = real if spec.halves else load_split(config.eval, "eval", in_place=False)  # type: ignore[arg-type]
    synthetic_sets = SyntheticSets(config)
    shots_table = read_real_shots(spec.real_shots) if spec.real_shots is not None else None
    jobs = [(k, trial) for k in spec.shots for trial in range(spec.trials)]
    first_synthetic = synthetic_sets.get(*jobs[0])
    num_classes, _ = label_space([s for s in (real, eval_split, first_synthetic) if s is not None])
    torch.manual_seed(config.seed)
    backbone = build_model(config.model, num_classes=0).requires_grad_(False)
    pretrained = copy.deepcopy(backbone.state_dict())
    backbone = backbone.to(accelerator.device)
    position_of = real.position_of()
    mine = [job for i, job in enumerate(jobs) if i % accelerator.num_processes == accelerator.process_index]
    for k, trial in tqdm(mine, desc="few-shot trials", unit="trial", disable=not accelerator.is_main_process):
        path = job_path(config.output_dir, k, trial)
        if read_job(path, fingerprint) is not None:
            continue
        trial_seed, shots_seed = config.seed + trial, shot_seed(config, trial)
        split = trial_split(real, num_classes, trial_seed, spec.halves)  # validation: the trial's half
        shot_split = split if shots_seed == trial_seed else trial_split(real, num_classes, shots_seed, spec.halves)
        own = {label: [position_of[r] for r in s.shots(k)] for label, s in shot_split.items() if s.train}
        if shots_table is not None:
            name = real_shots_config(config, k, trial)
            check_recorded(recorded_shots(shots_table, name, k, real), own, name, shots_seed)
        shots = np.array(sorted(p for positions in own.values() for p in positions), dtype=np.int64)
        if spec.halves:
            eval_positions = np.array(sorted(position_of[r] for s in split.values() for r in s.val), dtype=np.int64)
        else:
            eval_positions = np.arange(len(eval_split))
        synthetic = synthetic_sets.get(k, trial)
        keys, pool = real.labels[shots], {}
        if synthetic is not None:
            label_space([real, synthetic])
            pool_rng = np.random.default_rng([config.seed, 5, k, trial])
            if spec.pool_kind == "per_real":
                keys = shots
                pool = per_real_pool(synthetic, real, shots, spec.synthetic_per_real, pool_rng)
            else:
                pool = synthetic_pool(synthetic.labels, spec.synthetic_per_class, config.seed, trial)
            if not pool:
                logger.warning("k=%d trial %d: no synthetic image fits these shots: nothing is swapped", k, trial)
        backbone.load_state_dict(pretrained)  # every trial adapts BatchNorm from the pretrained statistics
        curve, swapped, eval_swapped = Trial(config, accelerator, backbone, num_classes, k, trial).run(
            real, synthetic, shots, keys, pool, eval_split, eval_positions
        )
        record = {
            "k": k,
            "trial": trial,
            "trial_seed": trial_seed,
            "shot_seed": shots_seed,
            "epoch_accuracy": curve,
            "swapped_fraction": swapped,
            "eval_swapped_fraction": eval_swapped,
            "real_images": len(shots),
            "real_rows": real.rows()[shots].tolist(),  # source rows the head saw: the trial can be redone
            "eval_images": len(eval_positions),
            "fingerprint": fingerprint,
        }
        write_text_atomic(path, json.dumps(record, indent=2))
        logger.info("few-shot k=%d trial %d: best epoch accuracy %.4f (swapped %.3f)", k, trial, max(curve), swapped)
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return None
    records = [read_job(job_path(config.output_dir, k, trial), fingerprint) for k, trial in jobs]
    authors = spec.protocol == "paper_b_code"
    summarize = per_trial_best_summary if authors else best_epoch_summary
    return {
        "mode": "few_shot",
        "protocol": spec.protocol,
        "metric": METRICS[spec.protocol],
        "model": config.model.name,
        "fingerprint": fingerprint,
        "num_classes": num_classes,
        "swap_probability": spec.swap_probability,
        "synthetic_pool": spec.pool_kind,
        "epochs": spec.epochs,
        "iterations_per_epoch": spec.iterations_per_epoch,
        "data": {
            "real": {"source": config.real.describe(), "images": len(real)},
            "synthetic": {"source": config.synthetic.describe()} if config.synthetic else None,
            "eval": {"source": "second half of real" if spec.halves else config.eval.describe()},  # type: ignore[union-attr]
            "real_shots": str(spec.real_shots.path) if spec.real_shots else None,
        },
        "few_shot": summarize([r for r in records if r is not None]),
    }
