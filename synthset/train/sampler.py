"""Batch composition: every batch holds a fixed number of real rows followed by synthetic rows.

Both papers fix the mix per batch, not per epoch (paper B: every batch half real, half synthetic), and
the auxiliary BatchNorm needs to know which rows are which: so each batch is `real` real rows, then
`synthetic` synthetic rows, always in that order.

Each source is an endless stream: pass p over it is a permutation seeded by (seed, source, p), so the
row at stream position i is a pure function of the seed and i. Global step s of a run with W processes
takes, on rank r, the stream positions [(s*W + r)*n, (s*W + r + 1)*n) of each source. Nothing depends on
what was drawn before, so a resumed run picks up at any step with no sampler state to save, the ranks
draw disjoint rows without talking to each other, and the source that runs out first simply starts its
next (reshuffled) pass mid-epoch.

Every row also gets its own augmentation seed (from seed, step, rank and slot), so random crops do not
depend on how many DataLoader workers there are or whether the run was resumed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

REAL, SYNTHETIC = 0, 1


class Item(NamedTuple):
    """One row of a batch: which source, which row of it, and the seed for its augmentation."""

    source: int
    index: int
    seed: int


class PermutationStream:
    """Row indices of a source of `size` rows, in an endless sequence of seeded permutations."""

    def __init__(self, size: int, seed: int, source: int) -> None:
        if size <= 0:
            raise ValueError("a stream needs at least one row")
        self.size, self.seed, self.source = size, seed, source
        self._cache: dict[int, np.ndarray] = {}

    def permutation(self, pass_number: int) -> np.ndarray:
        if pass_number not in self._cache:
            if len(self._cache) >= 2:  # positions only move forward: keep the current and the next pass
                self._cache.pop(min(self._cache))
            rng = np.random.default_rng([self.seed, self.source, pass_number])
            self._cache[pass_number] = rng.permutation(self.size)
        return self._cache[pass_number]

    def take(self, start: int, count: int) -> list[int]:
        """Row indices at stream positions [start, start + count)."""
        out = []
        for position in range(start, start + count):
            out.append(int(self.permutation(position // self.size)[position % self.size]))
        return out


def steps_per_epoch(
    epoch: str | int, num_real: int, num_synthetic: int, real_per_batch: int, synthetic_per_batch: int
) -> int:
    """Steps of one epoch (`train.epoch`): a pass over the real or the synthetic rows (each at its share of the
    batch), the longer of the two, or a given number of steps."""
    if isinstance(epoch, int):
        return epoch
    if epoch == "longest":
        return default_steps_per_epoch(num_real, num_synthetic, real_per_batch, synthetic_per_batch)
    rows, per_batch = (num_real, real_per_batch) if epoch == "real" else (num_synthetic, synthetic_per_batch)
    if per_batch == 0:
        raise ValueError(f"an epoch of {epoch} rows needs {epoch} rows in every batch")
    return max(1, math.ceil(rows / per_batch))


def default_steps_per_epoch(num_real: int, num_synthetic: int, real_per_batch: int, synthetic_per_batch: int) -> int:
    """Steps for the source that needs the most batches to be seen once; the other one cycles."""
    steps = 0
    if real_per_batch:
        steps = max(steps, math.ceil(num_real / real_per_batch))
    if synthetic_per_batch:
        steps = max(steps, math.ceil(num_synthetic / synthetic_per_batch))
    return max(steps, 1)


class MixedBatchSampler:
    """The batches of one epoch on one rank, as lists of `Item`s: a `batch_sampler` for a DataLoader.

    `real_per_batch` and `synthetic_per_batch` are per process; the global batch is W times that.
    """

    def __init__(
        self,
        num_real: int,
        num_synthetic: int,
        real_per_batch: int,
        synthetic_per_batch: int,
        steps_per_epoch: int,
        epoch: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if real_per_batch and num_real <= 0:
            raise ValueError("real rows requested from an empty real set")
        if synthetic_per_batch and num_synthetic <= 0:
            raise ValueError("synthetic rows requested from an empty synthetic set")
        self.real_per_batch, self.synthetic_per_batch = real_per_batch, synthetic_per_batch
        self.steps_per_epoch, self.epoch, self.seed = steps_per_epoch, epoch, seed
        self.rank, self.world_size = rank, world_size
        self.real = PermutationStream(num_real, seed, REAL) if real_per_batch else None
        self.synthetic = PermutationStream(num_synthetic, seed, SYNTHETIC) if synthetic_per_batch else None

    def __len__(self) -> int:
        return self.steps_per_epoch

    def batch(self, step_in_epoch: int) -> list[Item]:
        global_step = self.epoch * self.steps_per_epoch + step_in_epoch
        slot = global_step * self.world_size + self.rank
        augment_base = int(np.random.default_rng([self.seed, 2, global_step, self.rank]).integers(0, 2**62))
        rows: list[Item] = []
        for source, stream, count in (
            (REAL, self.real, self.real_per_batch),
            (SYNTHETIC, self.synthetic, self.synthetic_per_batch),
        ):
            if stream is None:
                continue
            for index in stream.take(slot * count, count):
                rows.append(Item(source, index, (augment_base + len(rows)) % 2**63))
        return rows

    def __iter__(self) -> Iterator[list[Item]]:
        for step in range(self.steps_per_epoch):
            yield self.batch(step)
