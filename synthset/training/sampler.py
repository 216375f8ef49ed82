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

A split read in place from Parquet (train/parquet_rows.py) is streamed by `RowGroupStream` instead: pass p
puts the row groups in a seeded order, gives rank r its contiguous share of those rows (so ranks read
disjoint row groups, bar the one at each boundary, and together see every row exactly once per pass), and
shuffles rows within windows of `buffer` rows. A worker then reads a few row groups at a time, never a random
row of the whole set, and the stream is still a pure function of (seed, pass, rank, position): resuming at
any step needs no reader state.

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


class RowGroupStream:
    """One rank's endless stream of row numbers over row groups of `group_sizes` rows: pass p orders the row
    groups by a seeded permutation, takes this rank's contiguous share [r*N/W, (r+1)*N/W) of the rows in that
    order, and permutes rows within consecutive windows of `buffer` rows (the bounded shuffle buffer)."""

    def __init__(self, group_sizes: list[int], seed: int, source: int, buffer: int, rank: int, world: int) -> None:
        total = sum(group_sizes)
        if total < world:
            raise ValueError(f"{total} rows cannot be shared by {world} processes")
        self.sizes = np.asarray(group_sizes, dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])
        self.seed, self.source, self.buffer, self.rank = seed, source, buffer, rank
        self.low, self.high = rank * total // world, (rank + 1) * total // world
        self._passes: dict[int, np.ndarray] = {}
        self._window: tuple[tuple[int, int], np.ndarray] | None = None

    @property
    def size(self) -> int:
        """Rows of this rank's share of one pass."""
        return self.high - self.low

    def _order(self, pass_number: int) -> np.ndarray:
        """Row numbers of this rank's share of pass `pass_number`, in row-group order (before the window shuffle)."""
        if pass_number not in self._passes:
            if len(self._passes) >= 2:
                self._passes.pop(min(self._passes))
            rng = np.random.default_rng([self.seed, self.source, pass_number])
            groups = rng.permutation(len(self.sizes))
            ends = np.cumsum(self.sizes[groups])
            first = int(np.searchsorted(ends, self.low, side="right"))
            last = int(np.searchsorted(ends, self.high, side="left"))
            rows = np.concatenate(
                [np.arange(self.starts[g], self.starts[g] + self.sizes[g]) for g in groups[first : last + 1]]
            )
            skip = self.low - (int(ends[first - 1]) if first else 0)
            self._passes[pass_number] = rows[skip : skip + self.size]
        return self._passes[pass_number]

    def _shuffled_window(self, pass_number: int, window: int) -> np.ndarray:
        if self._window is None or self._window[0] != (pass_number, window):
            rows = self._order(pass_number)[window * self.buffer : (window + 1) * self.buffer]
            rng = np.random.default_rng([self.seed, self.source, pass_number, self.rank, window])
            self._window = ((pass_number, window), rows[rng.permutation(len(rows))])
        return self._window[1]

    def take(self, start: int, count: int) -> list[int]:
        """Row numbers at this rank's stream positions [start, start + count)."""
        out = []
        for position in range(start, start + count):
            pass_number, offset = divmod(position, self.size)
            window, slot = divmod(offset, self.buffer)
            out.append(int(self._shuffled_window(pass_number, window)[slot]))
        return out


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
        row_groups: tuple[list[int] | None, list[int] | None] = (None, None),
        buffer: int = 16384,
    ) -> None:
        if real_per_batch and num_real <= 0:
            raise ValueError("real rows requested from an empty real set")
        if synthetic_per_batch and num_synthetic <= 0:
            raise ValueError("synthetic rows requested from an empty synthetic set")
        self.real_per_batch, self.synthetic_per_batch = real_per_batch, synthetic_per_batch
        self.steps_per_epoch, self.epoch, self.seed = steps_per_epoch, epoch, seed
        self.rank, self.world_size = rank, world_size
        self.real = self._stream(num_real, row_groups[REAL], REAL, buffer) if real_per_batch else None
        self.synthetic = (
            self._stream(num_synthetic, row_groups[SYNTHETIC], SYNTHETIC, buffer) if synthetic_per_batch else None
        )

    def _stream(
        self, size: int, groups: list[int] | None, source: int, buffer: int
    ) -> PermutationStream | RowGroupStream:
        """A row-group stream for a split read in place (rank-local), else a permutation of all rows (shared)."""
        if groups is None:
            return PermutationStream(size, self.seed, source)
        return RowGroupStream(groups, self.seed, source, buffer, self.rank, self.world_size)

    first_step = 0  # a resumed epoch starts here (set by the loop; batches are pure functions of the step)

    def __len__(self) -> int:
        return self.steps_per_epoch - self.first_step

    def batch(self, step_in_epoch: int) -> list[Item]:
        global_step = self.epoch * self.steps_per_epoch + step_in_epoch
        slot = global_step * self.world_size + self.rank  # a shared permutation: ranks take interleaved slots
        augment_base = int(np.random.default_rng([self.seed, 2, global_step, self.rank]).integers(0, 2**62))
        rows: list[Item] = []
        for source, stream, count in (
            (REAL, self.real, self.real_per_batch),
            (SYNTHETIC, self.synthetic, self.synthetic_per_batch),
        ):
            if stream is None:
                continue
            start = global_step * count if isinstance(stream, RowGroupStream) else slot * count
            for index in stream.take(start, count):
                rows.append(Item(source, index, (augment_base + len(rows)) % 2**63))
        return rows

    def __iter__(self) -> Iterator[list[Item]]:
        for step in range(self.first_step, self.steps_per_epoch):
            yield self.batch(step)
