"""`samples.jpg`: one row of sample images per config, one column per class, so a reader compares configs.

Column j shows the same class in every row (its name on top), rows follow the ladder's order (naive, lar,
lar_cd, lar_cd_sd, augcond; a config's scales after it), so the grid reads as the strategies' effect on
each class. Each column's image is the class's first row in file order, found by the card's statistics'
pass; only the row groups holding a shown image are read: a grid never decodes more than it shows, whatever
the dataset's size. The images are deterministic (file order), so a rebuilt card shows the same grid.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from synthset.cards.stats import ConfigStats, RowAt
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


def images_at(run: RunDir, places: dict[int, RowAt]) -> dict[int, bytes]:
    """label -> the image bytes at its place (file, row group, row): each file opened once, each row group's
    image column read once (on an object store: range requests, or the small file read whole)."""
    by_file: dict[str, dict[tuple[int, int], int]] = {}
    for label, (relative, group, row) in places.items():
        by_file.setdefault(relative, {})[(group, row)] = label
    found: dict[int, bytes] = {}
    for relative, rows in by_file.items():
        with objects.parquet_file(run, run.dataset_dir / relative) as parquet:
            for group in sorted({group for group, _ in rows}):
                images = parquet.read_row_group(group, columns=["image"]).column("image")
                found.update({label: images[row].as_py()["bytes"] for (g, row), label in rows.items() if g == group})
    return found


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
    run: RunDir, stats: list[ConfigStats], label_names: list[str] | None = None, columns: int = 8, tile: int = 96
) -> Path:
    """Write `dataset/samples.jpg` atomically: the first split of every config, the same `columns` classes each
    (the first met in the first config's files), each class's first image in file order.

    Where those images are comes from the statistics' pass (`ConfigStats.first_rows`), which reads every
    label already: the grid reads only the row groups holding a shown image, not the labels a second time.
    """
    by_config = {one.config: one for one in stats}
    configs = sorted(by_config, key=ladder_order)
    firsts = {config: next(iter(by_config[config].first_rows.values()), {}) for config in configs}
    labels = sorted(list(firsts[configs[0]])[:columns]) if configs else []
    names = label_names or []
    header = [(label, names[label] if label < len(names) else str(label)) for label in labels]
    rows = {}
    for config in configs:
        found = images_at(run, {label: firsts[config][label] for label in labels if label in firsts[config]})
        rows[config] = {label: Image.open(io.BytesIO(data)).convert("RGB") for label, data in found.items()}
    path = run.dataset_dir / SAMPLES_FILE
    with atomic_path(path) as tmp:
        sample_grid(rows, header, tile=tile).save(tmp, format="JPEG", quality=90)
    return path
