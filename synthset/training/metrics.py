"""Top-1 overall and by shot bucket, from per-class tallies.

Everything is tallied per class (correct top-1, correct top-5, seen), because per-class counts add up
exactly across processes and across batches, and every reported number follows from them: overall
top-1 is total correct over total seen; a bucket's accuracy is the mean per-class accuracy over its
classes, as ImageNet-LT papers report it (BALMS `shot_acc`). Buckets follow the *real* training counts:
many > 100 images, few < 20, medium otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

BUCKETS = ("many", "medium", "few")


def class_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)[:num_classes]


def shot_buckets(train_counts: np.ndarray, many_above: int = 100, few_below: int = 20) -> np.ndarray:
    """The bucket name of each class from its real training count."""
    counts = np.asarray(train_counts)
    return np.where(counts > many_above, "many", np.where(counts < few_below, "few", "medium"))


@dataclass
class ClassTally:
    """Per-class correct top-1, correct top-5 and seen counts."""

    correct1: torch.Tensor
    correct5: torch.Tensor
    seen: torch.Tensor

    @classmethod
    def zeros(cls, num_classes: int, device: torch.device | str = "cpu") -> ClassTally:
        def z() -> torch.Tensor:
            return torch.zeros(num_classes, dtype=torch.int64, device=device)

        return cls(z(), z(), z())

    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        num_classes = self.seen.numel()
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        hit1 = (top[:, 0] == targets).long()
        hit5 = (top == targets[:, None]).any(dim=1).long()
        self.seen += torch.bincount(targets, minlength=num_classes)
        self.correct1 += torch.bincount(targets, weights=hit1, minlength=num_classes).long()
        self.correct5 += torch.bincount(targets, weights=hit5, minlength=num_classes).long()

    def stacked(self) -> torch.Tensor:
        """One tensor, for a single sum-reduction across processes."""
        return torch.stack([self.correct1, self.correct5, self.seen])

    @classmethod
    def from_stacked(cls, stacked: torch.Tensor) -> ClassTally:
        return cls(stacked[0], stacked[1], stacked[2])


def accuracy_report(
    tally: ClassTally, train_counts: np.ndarray | None = None, many_above: int = 100, few_below: int = 20
) -> dict[str, Any]:
    """Fractions in [0, 1]: top1, top5, and (given the real training counts) many / medium / few."""
    correct1 = tally.correct1.cpu().numpy()
    correct5 = tally.correct5.cpu().numpy()
    seen = tally.seen.cpu().numpy()
    total = int(seen.sum())
    report: dict[str, Any] = {
        "top1": float(correct1.sum() / total) if total else None,
        "top5": float(correct5.sum() / total) if total else None,
        "images": total,
    }
    if train_counts is not None:
        buckets = shot_buckets(train_counts, many_above, few_below)
        present = seen > 0
        per_class = np.divide(correct1, seen, out=np.zeros(len(seen)), where=present)
        classes = {}
        for bucket in BUCKETS:
            members = present & (buckets == bucket)
            report[bucket] = float(per_class[members].mean()) if members.any() else None
            classes[bucket] = int(members.sum())
        report["classes_per_bucket"] = classes
    return report
