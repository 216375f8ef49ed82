"""Row 6: the read side: the built dataset through `load_dataset` and a DataLoader, against PNG files.

The dataset is `synthset build` of an earlier measurement's run (JPEG q95 in Parquet shards). The same
images, decoded once, are written as one PNG per image in `<label>/` folders, as peer scripts store them.
Both sides decode every image to a uint8 HWC tensor in a torch DataLoader with 2 workers, batch size 64.

- cold: `load_dataset` into an empty cache (it prepares an Arrow copy) + one epoch, against listing the
  PNG folder + one epoch;
- epochs: further epochs of the same DataLoader (workers restart every epoch, as by default), repeated
  until each side has run `--read-seconds`; images/s over all of them.
"""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.common import Context, Row, planned_run, quiet, ratio, run_child, synthset_generate

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


def _side(open_dataset, images: int, min_seconds: float) -> dict:
    started = time.perf_counter()
    loader = _loader(open_dataset())
    assert _epoch(loader) == images
    cold = time.perf_counter() - started
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

    def open_parquet():
        cache = ctx.work / "hf-cache"
        with quiet():
            ds = datasets.load_dataset(str(dataset_dir), config, split="train", cache_dir=str(cache))
        return ds.select_columns(["image", "label"]).with_transform(_hf_transform)

    half = ctx.args.read_seconds / 2
    parquet = _side(open_parquet, images, half)
    png = _side(lambda: PngFolder(png_dir), images, half)
    for name, side in (("load_dataset + DataLoader", parquet), ("PNG files + DataLoader", png)):
        ctx.check_long_enough(f"read: {name}", side["cold_s"] + side["epochs_s"])
        print(f"  {name}: cold {side['cold_s']:.2f} s for {images} images; "
              f"{side['epochs']} more epochs at {side['images_per_s']:.0f} img/s", flush=True)  # fmt: skip
    data = {"images": images, "config": config, "batch_size": BATCH_SIZE, "workers": WORKERS,
            "parquet": parquet, "png": png}  # fmt: skip
    cold_ratio = ratio(parquet["cold_images_per_s"], png["cold_images_per_s"])
    warm_ratio = ratio(parquet["images_per_s"], png["images_per_s"])
    return [
        Row(
            f"6a. read: load_dataset + 1 epoch, {images} img, 2 workers",
            f"{parquet['cold_images_per_s']:.0f} img/s vs PNG files {png['cold_images_per_s']:.0f} ({cold_ratio:.2f}x)",
            "-",
            "info",
            {**data, "cold_ratio": cold_ratio},
        ),
        Row(
            "6b. read: further epochs, DataLoader 2 workers",
            f"{parquet['images_per_s']:.0f} img/s vs PNG files {png['images_per_s']:.0f} ({warm_ratio:.2f}x)",
            "-",
            "info",
            {"ratio": warm_ratio},
        ),
    ]
