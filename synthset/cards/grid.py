"""`samples.jpg`: one row of sample images per config, so a reader sees what each config looks like.

Each row takes the first image of as many different classes as it has columns (then repeats classes if
there are fewer), read from the published Parquet files one row group at a time: a grid never decodes
more than it shows, whatever the dataset's size. The images are deterministic (file order), so a rebuilt
card shows the same grid.
"""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image, ImageDraw, ImageFont

from synthset.fsutil import atomic_path

SAMPLES_FILE = "samples.jpg"
LABEL_WIDTH = 110
BACKGROUND = (255, 255, 255)


def pick_images(dataset_dir: Path, files: list[str], count: int) -> list[Image.Image]:
    """Up to `count` images, one per class first, in file order."""
    firsts: list[bytes] = []
    extras: list[bytes] = []
    seen: set[int] = set()
    for relative in files:
        parquet = pq.ParquetFile(dataset_dir / relative)
        for group in range(parquet.num_row_groups):
            table = parquet.read_row_group(group, columns=["image", "label"]).to_pydict()
            for image, label in zip(table["image"], table["label"], strict=True):
                if label not in seen:
                    seen.add(label)
                    firsts.append(image["bytes"])
                elif len(extras) < count:
                    extras.append(image["bytes"])
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
    dataset_dir: Path, data_files: dict[str, dict[str, list[str]]], columns: int = 8, tile: int = 96
) -> Path:
    """Write `dataset/samples.jpg` atomically: the first split of every config, `columns` images each."""
    rows = {}
    for config, splits in data_files.items():
        first_split = next(iter(splits.values()), [])
        rows[config] = pick_images(dataset_dir, first_split, columns)
    path = dataset_dir / SAMPLES_FILE
    with atomic_path(path) as tmp:
        sample_grid(rows, tile=tile, columns=columns).save(tmp, format="JPEG", quality=90)
    return path
