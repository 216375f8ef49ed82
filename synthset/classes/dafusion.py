"""DA-Fusion's few-shot split (brandontrabucco/da-fusion, `semantic_aug/datasets/*.py`), shared by the plan
stage (which real images a few-shot set is made from) and the few-shot probe (which it trains and scores on).

For one trial: a single `numpy.random.default_rng(trial)` permutes each class's images, classes taken in
label order over the *whole* class set (so the draw of class c does not depend on which classes a run
generates). Caltech101 and Flowers102 have no official split: with `halves`, the first half of each class's
permutation (`numpy.array_split(..., 2)[0]`) is the training split and the second half the validation split.
COCO and PASCAL VOC use their official train and val splits, and the permutation only orders the training
images. The k shots are the first k training ids. Both stages get the same ids from the same inputs, so the
probe can check that a synthetic set was conditioned on exactly its trial's shots.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

Id = TypeVar("Id")


@dataclass(frozen=True)
class ClassSplit(Generic[Id]):
    """One class's images for one trial: the training split in draw order, and the held-out half."""

    train: list[Id]
    val: list[Id]

    def shots(self, k: int) -> list[Id]:
        return self.train[:k]


def dafusion_split(
    ids_by_label: Mapping[int, Sequence[Id]], num_classes: int, trial: int, halves: bool
) -> dict[int, ClassSplit[Id]]:
    """label -> ClassSplit for every label 0..num_classes-1, each class's ids in the source's order."""
    import numpy as np

    rng = np.random.default_rng(trial)
    splits: dict[int, ClassSplit[Id]] = {}
    for label in range(num_classes):
        ids = list(ids_by_label.get(label, ()))
        order = rng.permutation(len(ids))
        train, val = np.array_split(order, 2) if halves else (order, order[:0])
        splits[label] = ClassSplit([ids[i] for i in train], [ids[i] for i in val])
    return splits
