"""Rows 6a-6c: the read side of training, against PNG files.

The dataset is `synthset build` of an earlier measurement's run (JPEG q95 in Parquet shards). The same
images, decoded once, are written as one PNG per image in `<label>/` folders, as peer scripts store them.
Every side decodes every image to a uint8 HWC tensor in a torch DataLoader with 2 workers, batch size 64.

- 6a: synthset's training reader (`load_split`: the Parquet shards read in place, in the sampler's row-group
  order with a shuffle buffer) + one epoch, against listing the PNG folder + one epoch: the median of 7 fresh
  readers per side, the sides alternating (this machine's load swings); and the bytes written beside the
  dataset while doing so (an Arrow cache would be a second copy). `load_dataset` into an empty
  cache + one epoch, what the harness did before, is measured beside it for reference.
- 6b: further epochs of the same DataLoaders, repeated until each side has run `--read-seconds`.
- 6c: peak RSS of a fresh process reading one epoch (no workers) of a synthesized Parquet set of 8N rows ÷
  of N rows (`--read-rows` N): the reader's memory must not grow with the dataset.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from benchmarks.common import (
    PYTHON,
    REPORT_PREFIX,
    Context,
    Row,
    judged,
    planned_run,
    quiet,
    ratio,
    run_child,
    synthset_generate,
)

COLD_TRIALS = 7  # row 6a: fresh readers per side, alternating; the median first epoch is compared
BUFFER_ROWS = 1024  # the in-place reader's shuffle buffer in these rows (train.shuffle_buffer)

BATCH_SIZE = 64
WORKERS = 2


def _to_tensor(image):
    import numpy as np
    import torch

    return torch.from_numpy(np.array(image.convert("RGB")))


def _hf_transform(batch: dict) -> dict:
    return {"image": [_to_tensor(image) for image in batch["image"]], "label": batch["label"]}


class PngFolder:
    """A map-style dataset over `<root>/<label>/*.png`, the label from the folder name."""

    def __init__(self, root: Path) -> None:
        self.files = sorted(root.glob("*/*.png"))

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        from PIL import Image

        path = self.files[index]
        with Image.open(path) as image:
            return {"image": _to_tensor(image), "label": int(path.parent.name)}


def write_pngs(dataset_dir: Path, out: Path) -> int:
    """Every image of the built dataset, decoded once and saved as `<out>/<label>/<sample>.png`."""
    import io

    import pyarrow.parquet as pq
    from PIL import Image

    count = 0
    for path in sorted(dataset_dir.rglob("*.parquet")):
        table = pq.read_table(path, columns=["image", "label", "sample_id"])
        for row in table.to_pylist():
            folder = out / f"{row['label']:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            with Image.open(io.BytesIO(row["image"]["bytes"])) as image:
                image.save(folder / f"{row['sample_id'].replace('/', '_')}.png")
            count += 1
    return count


def _epoch(loader) -> int:
    seen = 0
    for batch in loader:
        seen += len(batch["label"])
    return seen


def _loader(dataset):
    import torch

    return torch.utils.data.DataLoader(dataset, batch_size=BATCH_SIZE, num_workers=WORKERS, shuffle=True)


class InPlaceImages:
    """The training reader's rows (a `LoadedSplit` read in place) as {image: uint8 tensor, label}."""

    def __init__(self, split) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> dict:
        row = self.split.dataset[index]
        return {"image": _to_tensor(row["image"]), "label": int(self.split.labels[index])}


def in_place_loader(dataset_dir: Path, config: str, seed: int, workers: int = WORKERS):
    """`load_split` of the built dataset and a DataLoader over one pass in the training sampler's order."""
    import torch

    from synthset.training.config import DataSource
    from synthset.training.data import load_split
    from synthset.training.sampler import SYNTHETIC, RowGroupStream

    split = load_split(DataSource(path=str(dataset_dir), name=config), "read")
    if split.row_groups is None:
        raise RuntimeError(f"{dataset_dir} [{config}] was not read in place")
    split.dataset.cache_groups = -(-BUFFER_ROWS // min(split.row_groups)) + 2
    stream = RowGroupStream(split.row_groups, seed, SYNTHETIC, BUFFER_ROWS, 0, 1)
    order = stream.take(0, stream.size)
    batches = [order[i : i + BATCH_SIZE] for i in range(0, len(order), BATCH_SIZE)]
    return torch.utils.data.DataLoader(InPlaceImages(split), batch_sampler=batches, num_workers=workers)


def _cold(open_loader, images: int) -> float:
    """Seconds to open a reader and run its first epoch."""
    import gc

    gc.collect()  # the imports' garbage (a full collection takes ~0.8 s here) is no side's cost: settle it first
    started = time.perf_counter()
    assert _epoch(open_loader()) == images
    return time.perf_counter() - started


def cold_trials(sides: dict, images: int, trials: int) -> dict[str, float]:
    """Median first-epoch seconds of each side over `trials` fresh readers, the sides alternating, so the load
    of this shared machine falls on both alike."""
    import statistics

    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(trials):
        for name, open_loader in sides.items():
            times[name].append(_cold(open_loader, images))
    return {name: statistics.median(values) for name, values in times.items()}


def _side(open_loader, images: int, min_seconds: float) -> dict:
    loader = open_loader()
    cold = _cold(lambda: loader, images)
    epochs, seconds = 0, 0.0
    while epochs == 0 or seconds < min_seconds:
        started = time.perf_counter()
        assert _epoch(loader) == images
        seconds += time.perf_counter() - started
        epochs += 1
    return {
        "cold_s": cold,
        "cold_images_per_s": images / cold,
        "epochs": epochs,
        "epochs_s": seconds,
        "images_per_s": images * epochs / seconds,
    }


def measure(ctx: Context) -> list[Row]:
    import datasets
    import torch

    from synthset.builders.assemble import build_dataset
    from synthset.training.data import load_split  # noqa: F401 - the reader's imports before any clock starts

    run_dir = ctx.runs.get("mp-1x2")
    if run_dir is None:  # row 3 did not run: make the data here
        run_dir = planned_run(ctx.work, "read", ctx.args.mp_images)
        run_child(synthset_generate(run_dir), ctx.work / "logs", "read-generate").check()
    with quiet():
        dataset_dir, splits = build_dataset(run_dir)
    config, images = splits[0].config, sum(s.num_examples for s in splits if s.config == splits[0].config)
    png_dir = ctx.work / "read-png"
    assert write_pngs(dataset_dir, png_dir) == images
    torch.manual_seed(ctx.args.seed)

    def open_load_dataset():
        with quiet():
            ds = datasets.load_dataset(str(dataset_dir), config, split="train", cache_dir=str(ctx.work / "hf-cache"))
        return _loader(ds.select_columns(["image", "label"]).with_transform(_hf_transform))

    half = ctx.args.read_seconds / 2
    watched = [ctx.work, Path(datasets.config.HF_DATASETS_CACHE)]  # the scratch tree and the datasets cache
    before = sum(_tree_bytes(root) for root in watched)
    open_in_place = lambda: in_place_loader(dataset_dir, config, ctx.args.seed)  # noqa: E731
    open_png = lambda: _loader(PngFolder(png_dir))  # noqa: E731
    medians = cold_trials({"in_place": open_in_place, "png": open_png}, images, COLD_TRIALS)
    in_place = _side(open_in_place, images, half)
    beside = sum(_tree_bytes(root) for root in watched) - before
    png = _side(open_png, images, half)
    reference = _side(open_load_dataset, images, half)  # once: a second run would find its cache
    for side, name in ((in_place, "in_place"), (png, "png")):
        side["cold_median_s"] = medians[name]
        side["cold_images_per_s"] = images / medians[name]
    sides = (("in place + DataLoader", in_place), ("PNG files + DataLoader", png), ("load_dataset", reference))
    for name, side in sides:
        ctx.check_long_enough(f"read: {name}", side["cold_s"] + side["epochs_s"])
        print(f"  {name}: cold {images / side['cold_images_per_s']:.2f} s for {images} images; "
              f"{side['epochs']} more epochs at {side['images_per_s']:.0f} img/s", flush=True)  # fmt: skip
    data = {"images": images, "config": config, "batch_size": BATCH_SIZE, "workers": WORKERS,
            "in_place": in_place, "png": png, "load_dataset": reference, "bytes_beside": beside}  # fmt: skip
    cold_ratio = ratio(in_place["cold_images_per_s"], png["cold_images_per_s"])
    reference_ratio = ratio(reference["cold_images_per_s"], png["cold_images_per_s"])
    warm_ratio = ratio(in_place["images_per_s"], png["images_per_s"])
    return [
        Row(
            f"6a. read: in place + 1 epoch, {images} img, 2 workers",
            f"{in_place['cold_images_per_s']:.0f} img/s vs PNG files {png['cold_images_per_s']:.0f} "
            f"({cold_ratio:.2f}x; load_dataset {reference_ratio:.2f}x); {beside} bytes written beside the dataset",
            ">= 1.0x, 0 bytes",
            judged(cold_ratio >= 1.0 and beside == 0),
            {**data, "cold_ratio": cold_ratio, "load_dataset_ratio": reference_ratio},
        ),
        Row(
            "6b. read: further epochs, DataLoader 2 workers",
            f"{in_place['images_per_s']:.0f} img/s vs PNG files {png['images_per_s']:.0f} ({warm_ratio:.2f}x)",
            "-",
            "info",
            {"ratio": warm_ratio},
        ),
        _memory_row(ctx),
    ]


def _tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.is_dir() else 0


def write_rows(root: Path, rows: int, row_group: int = 200, seed: int = 0) -> Path:
    """A Parquet set of `rows` random 64 px JPEGs over 8 labels, in row groups of `row_group`, shards of 2,000."""
    import io

    import numpy as np
    import pyarrow.parquet as pq
    from datasets import ClassLabel, Dataset, Features, Image
    from PIL import Image as PILImage

    rng = np.random.default_rng(seed)
    features = Features({"image": Image(), "label": ClassLabel(num_classes=8)})
    root.mkdir(parents=True)
    for shard, start in enumerate(range(0, rows, 2000)):
        images, labels = [], []
        for n in range(start, min(rows, start + 2000)):
            buffer = io.BytesIO()
            PILImage.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, format="JPEG")
            images.append({"bytes": buffer.getvalue(), "path": None})
            labels.append(n % 8)
        table = Dataset.from_dict({"image": images, "label": labels}, features=features).data.table
        pq.write_table(table, root / f"train-{shard:05d}.parquet", row_group_size=row_group)
    return root


def read_epoch(dataset_dir: Path) -> dict:
    """One pass of the in-place reader in this process (no workers): what row 6c's children run."""
    from benchmarks.rss import peak_rss

    loader = in_place_loader(dataset_dir, None, seed=0, workers=0)
    seen = _epoch(loader)
    return {"rows": seen, "peak_rss_mib": peak_rss() / 2**20}


def _memory_row(ctx: Context) -> Row:
    rows = ctx.args.read_rows
    peaks = {}
    for n in (rows, 8 * rows):
        directory = write_rows(ctx.work / f"read-rss-{n}", n)
        argv = [*PYTHON, "-m", "benchmarks.read", "rss", str(directory)]
        result = run_child(argv, ctx.work / "logs", f"read-rss-{n}").check()
        assert result.report["rows"] == n
        peaks[n] = result.max_rss_mib
    growth = peaks[8 * rows] / peaks[rows]
    return Row(
        f"6c. read: peak RSS of one epoch in place, {8 * rows} rows / {rows} rows",
        f"{growth:.3f} ({peaks[8 * rows]:.0f} / {peaks[rows]:.0f} MiB)",
        "<= 1.10",
        judged(growth <= 1.10),
        {"rows": rows, "peak_rss_mib": peaks, "ratio": growth},
    )


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "rss":
    print(REPORT_PREFIX + json.dumps(read_epoch(Path(sys.argv[2]))), flush=True)
