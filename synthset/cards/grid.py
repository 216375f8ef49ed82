"""`samples.jpg`: one row of sample images per config, so a reader sees what each config looks like.

Each row takes the first image of as many different classes as it has columns (then repeats classes if
there are fewer), read from the published Parquet files one row group at a time, labels first and a group's images only
when it has a row to show: a grid never reads or decodes more than it shows, whatever the dataset's size
(on an object-store run: by range requests). The images are deterministic (file order), so a rebuilt
card shows the same grid.
"""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image, ImageDraw, ImageFont

from synthset.fsutil import atomic_path
from synthset.run import objects
from synthset.run.paths import RunDir

SAMPLES_FILE = "samples.jpg"
LABEL_WIDTH = 110
BACKGROUND = (255, 255, 255)


def _pick_in_group(parquet: pq.ParquetFile, group: int, seen: set[int], firsts: list, extras: list, count: int) -> None:
    """One row group: its labels first; its images only when one of its rows is picked."""
    labels = parquet.read_row_group(group, columns=["label"]).column("label").to_pylist()
    picked: list[tuple[int, list]] = []
    for row, label in enumerate(labels):
        if label not in seen:
            seen.add(label)
            picked.append((row, firsts))
        elif len(extras) + sum(target is extras for _, target in picked) < count:
            picked.append((row, extras))
    if picked:
        images = parquet.read_row_group(group, columns=["image"]).column("image").to_pylist()
        for row, target in picked:
            target.append(images[row]["bytes"])


def pick_images(run: RunDir, files: list[str], count: int) -> list[Image.Image]:
    """Up to `count` images, one per class first, in file order."""
    firsts: list[bytes] = []
    extras: list[bytes] = []
    seen: set[int] = set()
    for relative in files:
        with objects.parquet_file(run, run.dataset_dir / relative) as parquet:
            for group in range(parquet.num_row_groups):
                _pick_in_group(parquet, group, seen, firsts, extras, count)
                if len(firsts) >= count:
                    break
        if len(firsts) >= count:
            break
    chosen = (firsts + extras)[:count]
    return [Image.open(io.BytesIO(data)).convert("RGB") for data in chosen]


def sample_grid(rows: dict[str, list[Image.Image]], tile: int = 96, columns: int = 8) -> Image.Image:
    """One labelled row per config; each image scaled to a `tile`-pixel square."""
    grid = Image.new("RGB", (LABEL_WIDTH + columns * tile, max(len(rows), 1) * tile), BACKGROUND)
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default()
    for r, (config, images) in enumerate(rows.items()):
        draw.text((6, r * tile + tile // 2 - 6), config, fill=(0, 0, 0), font=font)
        for c, image in enumerate(images[:columns]):
            grid.paste(image.resize((tile, tile), Image.Resampling.BICUBIC), (LABEL_WIDTH + c * tile, r * tile))
    return grid


def write_sample_grid(
    run: RunDir, data_files: dict[str, dict[str, list[str]]], columns: int = 8, tile: int = 96
) -> Path:
    """Write `dataset/samples.jpg` atomically: the first split of every config, `columns` images each."""
    rows = {}
    for config, splits in data_files.items():
        first_split = next(iter(splits.values()), [])
        rows[config] = pick_images(run, first_split, columns)
    path = run.dataset_dir / SAMPLES_FILE
    with atomic_path(path) as tmp:
        sample_grid(rows, tile=tile, columns=columns).save(tmp, format="JPEG", quality=90)
    return path
