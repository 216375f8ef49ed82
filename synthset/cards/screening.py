"""The card's Screening section: what the quality gate checked, what it found, and what it did.

Every number is counted from what was made, not from the recipe: the published Parquet files (`clip_score`,
`nsfw`, `attempt`, `near_duplicate_of`, `rejected`) and the shard records (the samples the gate dropped, with
every attempt's scores). So the card's counts equal the dataset's: published rows = planned - dropped.
Only small columns are read, a row group at a time. `dataset/clip_scores.png` plots the CLIP scores of
the published images per config (drawn with PIL: a histogram needs no plotting library).

A run whose images were never screened for NSFW gets a warning in the card's first lines instead, and
`synthset push` refuses it unless `--allow-unscreened` is given.
"""

from __future__ import annotations

import html
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from synthset.fsutil import atomic_path
from synthset.run import objects
from synthset.run.lock import Lock
from synthset.run.paths import RunDir
from synthset.run.plan import open_plan, plan_shard_names
from synthset.run.published import files_of, published_configs, shard_files
from synthset.run.records import read_records

CLIP_PLOT_FILE = "clip_scores.png"
LOWEST_CLASSES = 10
SCREENED_COLUMNS = ["label", "class_name", "clip_score", "nsfw", "attempt", "near_duplicate_of", "rejected"]
UNSCREENED_WARNING = (
    "**Not screened:** no NSFW checker looked at the images of this dataset (its recipe has no "
    "`quality.checker`; `synthset push` publishes it only with `--allow-unscreened`). Some images may be explicit."
)


@dataclass
class ConfigScreening:
    """The gate's numbers for one published config."""

    config: str
    planned: int = 0
    published: int = 0
    screened: int = 0  # images scored: every attempt, published or not
    flagged: int = 0  # images the checker flagged (any attempt)
    flagged_published: int = 0  # flagged images kept under `nsfw: keep`
    below_min_clip: int = 0  # images scored below min_clip_score (any attempt)
    redrawn: int = 0  # samples drawn more than once
    dropped: Counter = field(default_factory=Counter)  # reason -> samples
    near_duplicates: int = 0  # published rows with a near twin, plus those dropped for one
    clip_scores: list[float] = field(default_factory=list)  # of the published images
    per_class: dict[int, list] = field(default_factory=dict)  # label -> [class name, scores, redrawn, dropped]

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


@dataclass
class Screening:
    """Everything the card's Screening section shows."""

    screened: bool  # an NSFW checker looked at every image
    policy: dict[str, Any]
    checker: dict[str, str] | None
    clip: dict[str, str] | None
    configs: list[ConfigScreening]
    lowest_classes: list[dict[str, Any]]
    plot: str | None = None  # the plot's file name in dataset/


def _class_entry(stats: ConfigScreening, label: int, name: str) -> list:
    return stats.per_class.setdefault(label, [name, [], 0, 0])


def _count_attempt(stats: ConfigScreening, attempt: dict[str, Any], min_clip: float | None) -> None:
    stats.screened += 1
    stats.flagged += bool(attempt.get("nsfw"))
    score = attempt.get("clip_score")
    stats.below_min_clip += min_clip is not None and score is not None and score < min_clip


def _count_published(stats: ConfigScreening, run: RunDir, path: Path, min_clip: float | None) -> None:
    with objects.parquet_file(run, path) as parquet:  # on an object store: these columns by range requests
        for group in range(parquet.num_row_groups):
            _count_rows(stats, parquet.read_row_group(group, columns=SCREENED_COLUMNS), min_clip)


def _count_rows(stats: ConfigScreening, group: pa.Table, min_clip: float | None) -> None:
    for row in group.select(SCREENED_COLUMNS).to_pylist():
        stats.published += 1
        entry = _class_entry(stats, row["label"], row["class_name"])
        for attempt in row["rejected"] or []:
            _count_attempt(stats, attempt, min_clip)
        _count_attempt(stats, row, min_clip)
        stats.flagged_published += bool(row["nsfw"])
        stats.near_duplicates += row["near_duplicate_of"] is not None
        if row["attempt"]:
            stats.redrawn += 1
            entry[2] += 1
        if row["clip_score"] is not None:
            stats.clip_scores.append(row["clip_score"])
            entry[1].append(row["clip_score"])


def _count_dropped(stats: ConfigScreening, dropped: list[dict[str, Any]], names: list[str], min_clip) -> None:
    for entry in dropped:
        stats.dropped[entry["reason"]] += 1
        stats.near_duplicates += entry["reason"] == "near_duplicate"
        stats.redrawn += len(entry["attempts"]) > 1
        entry_of_class = _class_entry(stats, entry["label"], names[entry["label"]])
        entry_of_class[2] += len(entry["attempts"]) > 1
        entry_of_class[3] += 1
        for attempt in entry["attempts"]:
            _count_attempt(stats, attempt, min_clip)


@dataclass
class ScreeningPass:
    """The gate's counts while the card reads each published file once (`collect_stats(also=...)` hands each
    row group here), then `finish_screening` counts the records and any file that pass did not read."""

    run: RunDir
    lock: Lock
    configs: dict[str, ConfigScreening]  # by published config, in the recipe's order
    files: dict[str, dict[str, str]]  # config -> published file (relative to dataset/) -> its shard
    counted: set[tuple[str, str]] = field(default_factory=set)  # (config, file) whose rows were counted

    @property
    def min_clip(self) -> float | None:
        quality = self.lock.recipe.quality
        return quality.min_clip_score if quality is not None else None

    def count_row_group(self, config: str, relative: str, group: pa.Table) -> None:
        """One row group of a published file, as the statistics pass read it."""
        if relative in self.files.get(config, {}):
            self.counted.add((config, relative))
            _count_rows(self.configs[config], group, self.min_clip)


def start_screening(run: RunDir, lock: Lock) -> ScreeningPass:
    """Which files each published config counts (from the plan: what build published)."""
    files = shard_files(lock.recipe, plan_shard_names(open_plan(run)))
    chosen = {
        config.name: {file.published_path: file.shard for file in files_of(config, files)}
        for config in published_configs(lock.recipe)
    }
    return ScreeningPass(run, lock, {name: ConfigScreening(name) for name in chosen}, chosen)


def finish_screening(screening: ScreeningPass) -> Screening:
    """Count each config's records (planned samples, the gate's drops) and the rows of any file the
    statistics pass did not hand over (read here, a file at a time)."""
    from synthset.run.classes_table import read_label_names

    run, recipe = screening.run, screening.lock.recipe
    records, names = read_records(run), read_label_names(run)
    for config, files in screening.files.items():
        stats = screening.configs[config]
        unread = [relative for relative in files if (config, relative) not in screening.counted]
        for path in objects.read_ahead(run, [run.dataset_dir / relative for relative in unread]):
            _count_published(stats, run, path, screening.min_clip)
        for shard in files.values():
            stats.planned += records[shard].settled
            _count_dropped(stats, records[shard].dropped, names, screening.min_clip)
    quality = recipe.quality
    configs = list(screening.configs.values())
    return Screening(
        screened=recipe.screened,
        policy=quality.model_dump(mode="json") if quality is not None else {},
        checker=screening.lock.aux_models.get("safety_checker"),
        clip=screening.lock.aux_models.get("quality_clip"),
        configs=configs,
        lowest_classes=lowest_classes(configs),
    )


def markdown_cell(text: str) -> str:
    """Text from a class list or an LLM, safe inside a Markdown table cell: HTML escaped, pipes escaped."""
    return html.escape(" ".join(str(text).split())).replace("|", "\\|")


def lowest_classes(configs: list[ConfigScreening], count: int = LOWEST_CLASSES) -> list[dict[str, Any]]:
    """The classes with the lowest mean CLIP score of their published images over every config; a class the
    gate left without any image comes first (its mean is None)."""
    rows = []
    for stats in configs:
        for label, (name, scores, redrawn, dropped) in stats.per_class.items():
            if scores or dropped:
                mean = sum(scores) / len(scores) if scores else None
                rows.append({"config": stats.config, "label": label, "class_name": markdown_cell(name), "mean": mean,
                             "images": len(scores), "redrawn": redrawn, "dropped": dropped})  # fmt: skip
    return sorted(rows, key=lambda r: (r["mean"] is not None, r["mean"] or 0.0, r["config"], r["label"]))[:count]


def write_clip_plot(dataset_dir: Path, configs: list[ConfigScreening], min_clip: float | None) -> str | None:
    """`dataset/clip_scores.png`: a histogram of the published images' CLIP scores per config."""
    from PIL import Image, ImageDraw, ImageFont

    shown = [c for c in configs if c.clip_scores]
    if not shown:
        return None
    low = math.floor(min(min(c.clip_scores) for c in shown))
    high = math.ceil(max(max(c.clip_scores) for c in shown))
    if min_clip is not None:
        low, high = min(low, math.floor(min_clip)), max(high, math.ceil(min_clip))
    high = max(high, low + 1)
    bins, width, row_height, left, bottom, header = 30, 640, 110, 110, 16, 22
    plot_width = width - left - 10
    image = Image.new("RGB", (width, header + row_height * len(shown) + bottom), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    title = "CLIP score of the published images"
    if min_clip is not None:
        title += f" (red: min_clip_score {min_clip:g})"
    draw.text((left, 4), title, fill=(0, 0, 0), font=font)
    for r, stats in enumerate(shown):
        top = header + r * row_height
        counts = [0] * bins
        for score in stats.clip_scores:
            counts[min(bins - 1, int((score - low) / (high - low) * bins))] += 1
        tallest = max(counts)
        draw.text((6, top + 40), stats.config, fill=(0, 0, 0), font=font)
        draw.text((6, top + 56), f"n={len(stats.clip_scores)}", fill=(90, 90, 90), font=font)
        base = top + row_height - 8
        for b, n in enumerate(counts):
            x0 = left + b * plot_width / bins
            height = (row_height - 20) * n / tallest if tallest else 0
            draw.rectangle([x0 + 1, base - height, x0 + plot_width / bins - 1, base], fill=(70, 110, 180))
        draw.line([left, base, left + plot_width, base], fill=(0, 0, 0))
        if min_clip is not None:
            x = left + (min_clip - low) / (high - low) * plot_width
            draw.line([x, top + 6, x, base], fill=(200, 30, 30), width=2)
    axis = header + row_height * len(shown)
    for value in (low, (low + high) / 2, high):
        x = left + (value - low) / (high - low) * plot_width
        draw.text((x - 10, axis + 2), f"{value:g}", fill=(0, 0, 0), font=font)
    path = dataset_dir / CLIP_PLOT_FILE
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return CLIP_PLOT_FILE


def screening_section(screening_pass: ScreeningPass) -> Screening:
    """Finish the numbers and write the plot: what `render_card` passes to the template's Screening block."""
    run, screening = screening_pass.run, finish_screening(screening_pass)
    min_clip = screening.policy.get("min_clip_score")
    screening.plot = write_clip_plot(run.dataset_dir, screening.configs, min_clip)
    if screening.plot is None:
        (run.dataset_dir / CLIP_PLOT_FILE).unlink(missing_ok=True)  # a rebuilt card drops a stale plot
    return screening
