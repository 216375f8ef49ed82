"""Training reads Parquet shards in place: every row exactly once per pass on 1 and 2 ranks, a shuffled order
bounded by the shuffle buffer, batches that are pure functions of the step (so a run resumes mid-epoch and
ends with the weights of an uninterrupted one), and no Arrow cache or second copy on disk."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from test_train_runs import _config, _state, one_cpu_thread, squares  # noqa: F401 - fixtures

from synthset.training.config import DataSource, train_config_from_dict
from synthset.training.data import load_split
from synthset.training.parquet_rows import ParquetRows
from synthset.training.sampler import REAL, SYNTHETIC, MixedBatchSampler, RowGroupStream

GROUPS = [37, 37, 37, 12, 50, 50, 3, 37, 40, 37]  # 340 rows over three files, uneven row groups


def _write_rows(root: Path, groups: list[int] = GROUPS) -> Path:
    """A `datasets` Parquet directory whose image bytes name their row (`row-<n>`), in row groups of `groups`."""
    from datasets import ClassLabel, Dataset, Features, Value

    features = Features({"image": {"bytes": Value("binary"), "path": Value("string")}, "label": ClassLabel(4)})
    root.mkdir(parents=True)
    start = 0
    for part, sizes in enumerate((groups[:4], groups[4:7], groups[7:])):
        for size in sizes:
            rows = range(start, start + size)
            table = Dataset.from_dict(
                {"image": [{"bytes": f"row-{n}".encode(), "path": None} for n in rows], "label": [n % 4 for n in rows]},
                features=features,
            ).data.table
            name = root / f"train-{part:05d}-{start:05d}.parquet"
            if size == sizes[0]:
                writer = pq.ParquetWriter(name, table.schema)
            writer.write_table(table, row_group_size=size)
            start += size
        writer.close()
    return root


def _groups_of(rows: list[int], groups: list[int] = GROUPS) -> set[int]:
    ends = np.cumsum(groups)
    return {int(np.searchsorted(ends, row, side="right")) for row in rows}


@pytest.mark.parametrize("world", [1, 2])
def test_every_row_exactly_once_per_pass_on_each_rank_count(world: int):
    total = sum(GROUPS)
    for pass_number in range(3):
        seen: list[int] = []
        for rank in range(world):
            stream = RowGroupStream(GROUPS, seed=5, source=SYNTHETIC, buffer=64, rank=rank, world=world)
            assert stream.size in (total // world, total // world + 1)
            seen += stream.take(pass_number * stream.size, stream.size)
        assert sorted(seen) == list(range(total)), "each row once per pass, over all ranks"
    if world == 2:  # ranks read (nearly) disjoint row groups: at most the one at the boundary is shared
        shares = [RowGroupStream(GROUPS, 5, SYNTHETIC, 64, r, 2) for r in range(2)]
        groups = [_groups_of(s.take(0, s.size)) for s in shares]
        assert len(groups[0] & groups[1]) <= 1


def test_order_is_shuffled_within_a_bounded_window():
    stream = RowGroupStream(GROUPS, seed=5, source=REAL, buffer=64, rank=0, world=1)
    first, second = stream.take(0, stream.size), stream.take(stream.size, stream.size)
    assert first != sorted(first) and first != second, "shuffled, and differently on every pass"
    bound = math.ceil(64 / min(GROUPS)) + 1
    for start in range(0, stream.size, 64):  # a window of the buffer touches only a few row groups
        assert len(_groups_of(first[start : start + 64])) <= bound
    ends = np.cumsum(GROUPS)
    group_order = [int(np.searchsorted(ends, row, side="right")) for row in first]
    assert sorted(dict.fromkeys(group_order)) != list(dict.fromkeys(group_order)), "row groups in a shuffled order"
    again = RowGroupStream(GROUPS, seed=5, source=REAL, buffer=64, rank=0, world=1)
    assert again.take(100, 50) == first[100:150], "a pure function of the position: nothing to resume"


@pytest.mark.parametrize("world", [1, 2])
def test_a_resumed_epoch_draws_the_same_batches(world: int):
    def sampler(rank: int, first_step: int = 0) -> MixedBatchSampler:
        made = MixedBatchSampler(
            60, sum(GROUPS), 4, 8, steps_per_epoch=12, epoch=0, seed=3, rank=rank, world_size=world,
            row_groups=(None, GROUPS), buffer=64,
        )  # fmt: skip
        made.first_step = first_step
        return made

    for rank in range(world):
        whole = list(sampler(rank))
        assert len(whole) == 12 and list(sampler(rank, 7)) == whole[7:]
        assert len(sampler(rank, 7)) == 5
    rows = [i.index for rank in range(world) for b in sampler(rank) for i in b if i.source == SYNTHETIC]
    assert len(set(rows)) == len(rows) == 12 * 8 * world, "ranks draw disjoint synthetic rows within a pass"


def test_local_parquet_is_read_in_place_without_a_cache(tmp_path: Path, monkeypatch):
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    root = _write_rows(tmp_path / "rows")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    split = load_split(DataSource(path=str(root)), "synthetic")
    assert isinstance(split.dataset, ParquetRows) and split.row_groups == GROUPS
    assert split.class_names == ["0", "1", "2", "3"] and split.labels.tolist() == [n % 4 for n in range(340)]
    split.dataset.cache_groups = 3
    for row in np.random.default_rng(0).permutation(340)[:80]:
        assert split.dataset.image_bytes(int(row)) == f"row-{row}".encode()
        assert len(split.dataset._cache) <= 3, "decoded row groups are bounded by the cache"
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before, "nothing written anywhere"
    limited = load_split(DataSource(path=str(root), limit=100), "synthetic")
    assert len(limited) == 100 and limited.dataset.image_bytes(99) == b"row-99"


def test_training_resumes_mid_epoch_with_the_weights_of_an_uninterrupted_run(squares, tmp_path, monkeypatch):  # noqa: F811
    import synthset.training.run as train_run
    from synthset.training.run import run

    changes = {
        "model": {"name": "test_resnet", "kwargs": {"drop_path_rate": 0.1}},
        "train": {"epochs": 2, "augment": "rrc_flip", "checkpoint_every": 2, "shuffle_buffer": 16},
    }
    straight = run(train_config_from_dict(_config(squares, tmp_path / "straight", **changes), "x"))
    config = train_config_from_dict(_config(squares, tmp_path / "resumed", **changes), "x")
    assert straight["steps_per_epoch"] == 11  # ceil(82 real / 8 real per batch)

    class Killed(Exception):
        pass

    saver = train_run.mid_epoch_saver

    epochs_started: list[int] = []

    def killing_saver(every, steps, first_step, save):  # called once per epoch
        epoch, inner = len(epochs_started), saver(every, steps, first_step, save)
        epochs_started.append(epoch)

        def after_step(done: int) -> None:
            inner(done)
            if epoch == 1 and first_step + done == 3:
                raise Killed  # one step past the checkpoint at step 2 of the second epoch

        return after_step

    monkeypatch.setattr(train_run, "mid_epoch_saver", killing_saver)
    with pytest.raises(Killed):
        run(config)
    names = sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir())
    assert names == ["epoch-0001-step-0000002.pt", "epoch-0001.pt"]
    monkeypatch.setattr(train_run, "mid_epoch_saver", saver)
    resumed = run(config)
    assert "6 steps of the next" not in (tmp_path / "resumed" / "train.log").read_text()
    assert "epoch 1 of 2 done, 2 steps of the next" in (tmp_path / "resumed" / "train.log").read_text()
    a, b = _state(tmp_path / "straight", 2), _state(tmp_path / "resumed", 2)
    different = [k for k in a["model"] if not torch.equal(a["model"][k], b["model"][k])]
    assert not different, f"weights differ after a mid-epoch resume: {different[:5]}"
    assert straight["eval"] == resumed["eval"]
    assert sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir()) == ["epoch-0002.pt"]


def test_the_cards_configs_select_the_files(tmp_path: Path):
    """A synthset dataset's README lists each config's globs (one per band folder); only those files are read."""
    from synthset.training.parquet_rows import parquet_files

    root = tmp_path / "dataset"
    for folder in ("lar/b0", "lar/b1", "naive/b0"):
        (root / folder).mkdir(parents=True)
        (root / folder / "train-00000-of-00001.parquet").write_bytes(b"")
    card = (
        "---\nlicense: mit\nconfigs:\n- config_name: naive\n  data_files:\n  - split: train\n    path: naive/b0/train-*"
        ".parquet\n- config_name: lar_1x\n  data_files:\n  - split: train\n    path:\n    - lar/b0/train-*.parquet\n"
        "- config_name: lar\n  default: true\n  data_files:\n  - split: train\n    path:\n"
        "    - lar/b0/train-*.parquet\n    - lar/b1/train-*.parquet\n"
        "dataset_info:\n  features:\n  - name: image\n---\n# A card\n"
    )
    (root / "README.md").write_text(card)
    names = {name: [p.relative_to(root).as_posix() for p in parquet_files(root, name, "train")] for name in
             ("naive", "lar_1x", "lar", None)}  # fmt: skip
    assert names == {
        "naive": ["naive/b0/train-00000-of-00001.parquet"],
        "lar_1x": ["lar/b0/train-00000-of-00001.parquet"],
        "lar": ["lar/b0/train-00000-of-00001.parquet", "lar/b1/train-00000-of-00001.parquet"],
        None: ["lar/b0/train-00000-of-00001.parquet", "lar/b1/train-00000-of-00001.parquet"],
    }
    assert parquet_files(root, "naive", "validation") is None and parquet_files(root, "nope", "train") is None
