"""`samples.jpg`: one row of sample images per config, one column per class, so a reader compares configs.

Column j shows the same class in every row (its name on top), rows follow the ladder's order (naive, lar,
lar_cd, lar_cd_sd, augcond; a config's scales after it), so the grid reads as the strategies' effect on
each class. Images are read from the published Parquet files one row group at a time, and only until
every column has its image: a grid never decodes more than it shows, whatever the dataset's size. The
images are deterministic (file order), so a rebuilt card shows the same grid.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image, ImageDraw, ImageFont

from synthset.fsutil import atomic_path
from synthset.recipe import STRATEGIES
from synthset.run import objects
from synthset.run.paths import RunDir

SAMPLES_FILE = "samples.jpg"
LABEL_WIDTH = 150
HEADER_HEIGHT = 28
FONT_SIZE = 15
BACKGROUND = (255, 255, 255)


def ladder_order(config: str) -> tuple[int, int, str]:
    """Sort key: the strategy's place on the ladder, then the plain config before its scales 1x, 2x, ..."""
    scale = re.fullmatch(r"(.+)_(\d+)x", config)
    base, k = (scale[1], int(scale[2])) if scale else (config, 0)
    rank = STRATEGIES.index(base) if base in STRATEGIES else len(STRATEGIES)
    return rank, k, config


def first_image_per_class(run: RunDir, files: list[str], labels: list[int] | None, count: int) -> dict:
    """label -> the first image's bytes, for `labels` (or the first `count` labels met), in file order. A row
    group's labels are read first and its images only when it holds one taken (on an object store: range
    requests), so the grid reads no more images than it shows."""
    wanted = set(labels) if labels is not None else None
    found: dict[int, bytes] = {}
    for relative in files:
        with objects.parquet_file(run, run.dataset_dir / relative) as parquet:
            for group in range(parquet.num_row_groups):
                _take_firsts(parquet, group, found, wanted, count)
                if len(found) >= (len(wanted) if wanted is not None else count):
                    return found
    return found


def _take_firsts(parquet: pq.ParquetFile, group: int, found: dict, wanted: set[int] | None, count: int) -> None:
    taken: dict[int, int] = {}  # label -> row
    for row, label in enumerate(parquet.read_row_group(group, columns=["label"]).column("label").to_pylist()):
        new = label not in found and label not in taken
        if new and (label in wanted if wanted is not None else len(found) + len(taken) < count):
            taken[label] = row
    if taken:
        images = parquet.read_row_group(group, columns=["image"]).column("image")
        found.update({label: images[row].as_py()["bytes"] for label, row in taken.items()})


def _font(size: int = FONT_SIZE) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # a scalable font where Pillow has FreeType
    except (TypeError, OSError):  # older Pillow: the small bitmap font
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int) -> str:
    """`text`, shortened with an ellipsis until it fits `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def sample_grid(rows: dict[str, dict[int, Image.Image]], columns: list[tuple[int, str]], tile: int = 96) -> Image.Image:
    """One labelled row per config and one named column per class; each image scaled to a `tile` square."""
    width, height = LABEL_WIDTH + len(columns) * tile, HEADER_HEIGHT + max(len(rows), 1) * tile
    grid = Image.new("RGB", (width, height), BACKGROUND)
    draw, font = ImageDraw.Draw(grid), _font()
    for c, (_, name) in enumerate(columns):
        draw.text((LABEL_WIDTH + c * tile + 3, 6), _fit(draw, name, font, tile - 6), fill=(0, 0, 0), font=font)
    for r, (config, images) in enumerate(rows.items()):
        top = HEADER_HEIGHT + r * tile
        draw.text((6, top + tile // 2 - FONT_SIZE // 2), _fit(draw, config, font, LABEL_WIDTH - 12), fill=(0, 0, 0),
                  font=font)  # fmt: skip
        for c, (label, _) in enumerate(columns):
            if label in images:
                grid.paste(images[label].resize((tile, tile), Image.Resampling.BICUBIC), (LABEL_WIDTH + c * tile, top))
    return grid


def write_sample_grid(
    run: RunDir,
    data_files: dict[str, dict[str, list[str]]],
    label_names: list[str] | None = None,
    columns: int = 8,
    tile: int = 96,
) -> Path:
    """Write `dataset/samples.jpg` atomically: the first split of every config, the same `columns` classes each."""
    configs = sorted(data_files, key=ladder_order)
    first_split = {config: next(iter(data_files[config].values()), []) for config in configs}
    labels = sorted(first_image_per_class(run, first_split[configs[0]], None, columns)) if configs else []
    names = label_names or []
    header = [(label, names[label] if label < len(names) else str(label)) for label in labels]
    rows = {}
    for config in configs:
        found = first_image_per_class(run, first_split[config], labels, columns)
        rows[config] = {label: Image.open(io.BytesIO(data)).convert("RGB") for label, data in found.items()}
    path = run.dataset_dir / SAMPLES_FILE
    with atomic_path(path) as tmp:
        sample_grid(rows, header, tile=tile).save(tmp, format="JPEG", quality=90)
    return path
