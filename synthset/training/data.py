"""Real and synthetic splits through `datasets`, and the torchvision v2 transforms that feed the model.

A split is named the way a user names it anywhere else (a local directory or a Hub id, a config, a
revision, a split). A local split stored as Parquet (a synthset dataset, any `datasets` Parquet directory)
is read in place (`synthset.training.parquet_rows`: no Arrow cache, no second copy on disk); anything else
(a Hub id, an image folder, a split relabelled by `classes` or `label_from`) goes through
`datasets.load_dataset`. Only the image and label columns are kept. The labels are read once as one
column (never by decoding rows): they give class frequencies, few-shot draws and shot buckets without
touching an image.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.transforms import v2

from synthset.errors import SynthsetError
from synthset.training.config import DataSource
from synthset.training.sampler import SYNTHETIC, Item

logger = logging.getLogger(__name__)


@dataclass
class LoadedSplit:
    """A split with just its image and label columns, its labels as an array, and its class names if known.

    `source_rows[i]` is row i's number in the source split (rows left out by `classes` or `label_from` shift
    positions; recorded real ids `<dataset>:<split>:<row>` name source rows). `first_cond_images` holds each
    row's first conditioning image id when the split is a synthset augcond set (for per-real swaps).
    """

    field: str  # the config key it came from, for error messages
    source: DataSource
    dataset: Any  # datasets.Dataset, or ParquetRows (read in place; its row groups drive the sampler's order)
    labels: np.ndarray
    class_names: list[str] | None
    source_rows: np.ndarray | None = None
    first_cond_images: list[str | None] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int | None:
        return len(self.class_names) if self.class_names is not None else None

    def rows(self) -> np.ndarray:
        """The source row number of every position."""
        return self.source_rows if self.source_rows is not None else np.arange(len(self.labels))

    @property
    def row_groups(self) -> list[int] | None:
        """Row counts of the row groups the split is read by (in file order), None for a `datasets` split."""
        from synthset.training.parquet_rows import ParquetRows

        return self.dataset.group_sizes if isinstance(self.dataset, ParquetRows) else None

    def position_of(self) -> dict[int, int]:
        """Source row number -> position in this split."""
        return {int(row): i for i, row in enumerate(self.rows())}


def is_local_path(path: str) -> bool:
    """Local when it exists, or looks like a path rather than `name` / `org/name` (a Hub id)."""
    return Path(path).expanduser().exists() or path.startswith(("/", ".", "~")) or path.count("/") > 1


def _checked_labels(labels: np.ndarray, source: DataSource, field: str) -> np.ndarray:
    if len(labels) == 0:
        raise SynthsetError(f"{field}: {source.describe()} has no rows")
    if labels.min() < 0:
        raise SynthsetError(f"{field}.label_column: negative label {labels.min()} in {source.describe()}")
    return labels


def _class_names(feature: Any, source: DataSource, field: str) -> list[str] | None:
    """A ClassLabel's names, None for a plain integer column; anything else is not a class label."""
    import datasets

    class_names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else None
    if class_names is None and getattr(feature, "dtype", "").rstrip("0123456789") not in ("int", "uint"):
        raise SynthsetError(f"{field}.label_column: {source.label_column!r} is {feature}, not a class label")
    return class_names


def load_parquet_split(source: DataSource, field: str, directory: Path) -> LoadedSplit | None:
    """A local Parquet split read in place (see the module docstring), or None when it is not one."""
    import datasets

    from synthset.training.parquet_rows import (
        ParquetRows,
        index_row_groups,
        parquet_files,
        read_column,
        schema_features,
    )

    if source.classes is not None or source.label_from is not None:
        return None
    files = parquet_files(directory, source.name, source.split)
    if files is None:
        return None
    features = schema_features(files[0])
    if features is None:
        import pyarrow.parquet as pq

        features = datasets.Features.from_arrow_schema(pq.read_schema(files[0]))
    for key, column in (("image_column", source.image_column), ("label_column", source.label_column)):
        if column not in features:
            columns = ", ".join(features)
            raise SynthsetError(f"{field}.{key}: no column {column!r} in {source.describe()} (columns: {columns})")
    class_names = _class_names(features[source.label_column], source, field)
    groups = index_row_groups(files, source.limit)
    labels = np.asarray(read_column(groups, source.label_column).to_numpy(), dtype=np.int64)
    first_cond = None
    if "cond_images" in features:
        first_cond = [ids[0] if ids else None for ids in read_column(groups, "cond_images").to_pylist()]
    rows = ParquetRows(groups, _checked_labels(labels, source, field), source.image_column, source.label_column)
    logger.info("%s: %s read in place, %d rows in %d row groups", field, source.describe(), len(rows), len(groups))
    return LoadedSplit(field, source, rows, rows.labels, class_names, first_cond_images=first_cond)


def load_split(source: DataSource, field: str, in_place: bool = True) -> LoadedSplit:
    """Load one split; every problem (path, config, split, column) is one line naming `field`.

    `in_place=False` always goes through `datasets` (its memory-mapped Arrow cache): for readers that pick rows
    at random over the whole split (the few-shot probes), which row-group reads would make slow."""
    import datasets

    path = source.path
    if is_local_path(path):
        local = Path(path).expanduser()
        if not local.is_dir():
            raise SynthsetError(f"{field}.path: no such dataset directory: {path!r}")
        if source.revision is not None:
            raise SynthsetError(f"{field}.revision: only for Hub dataset ids, not the local directory {path!r}")
        read_in_place = load_parquet_split(source, field, local) if in_place else None
        if read_in_place is not None:
            return read_in_place
        path = str(local)
    try:
        dataset = datasets.load_dataset(path, source.name, revision=source.revision, split=source.split)
    except Exception as error:  # datasets raises ValueError, FileNotFoundError, ConnectionError... : one line each
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        key = "split" if "split" in message.lower() else ("name" if "config" in message.lower() else "path")
        raise SynthsetError(f"{field}.{key}: cannot load {source.describe()}: {message}") from None
    needed = [("image_column", source.image_column)]
    if source.label_from is None:
        needed.append(("label_column", source.label_column))
    for key, column in needed:
        if column not in dataset.column_names:
            columns = ", ".join(dataset.column_names)
            raise SynthsetError(f"{field}.{key}: no column {column!r} in {source.describe()} (columns: {columns})")
    if source.limit is not None and source.limit < len(dataset):
        dataset = dataset.select(range(source.limit))
    first_cond = None
    if "cond_images" in dataset.column_names:
        first_cond = [ids[0] if ids else None for ids in dataset.with_format("arrow")["cond_images"].to_pylist()]
    if source.label_from is not None or source.classes is not None:
        return _relabelled(source, field, dataset, first_cond)
    dataset = dataset.select_columns([source.image_column, source.label_column])
    class_names = _class_names(dataset.features[source.label_column], source, field)
    labels = np.asarray(dataset.with_format("arrow")[source.label_column].to_numpy(), dtype=np.int64)
    labels = _checked_labels(labels, source, field)
    return LoadedSplit(field, source, dataset, labels, class_names, first_cond_images=first_cond)


def _relabelled(source: DataSource, field: str, dataset: Any, first_cond: list[str | None] | None) -> LoadedSplit:
    """A split put in a synthset class set's label order, by name or by largest object; unlabelled rows dropped."""
    import datasets

    from synthset.classes import load_class_set
    from synthset.classes.labeling import labels_by_name, largest_object_labels

    try:
        classes = load_class_set(source.classes)
    except SynthsetError as error:
        raise SynthsetError(f"{field}.classes: {error}") from None
    if source.label_from is not None:
        match = "name" if source.label_from.objects is not None else "index"  # COCO names, VOC class indices
        labels = largest_object_labels(dataset, source.label_from, classes, match, f"{field}.label_from")
    else:
        if source.label_column not in dataset.column_names:
            raise SynthsetError(f"{field}.label_column: no column {source.label_column!r} in {source.describe()}")
        feature = dataset.features[source.label_column]
        if not isinstance(feature, datasets.ClassLabel):
            raise SynthsetError(f"{field}.classes: needs {source.label_column!r} to be a ClassLabel (names to match)")
        mapping = np.asarray(labels_by_name(feature.names, classes), dtype=np.int64)
        labels = mapping[np.asarray(dataset.with_format("arrow")[source.label_column].to_numpy(), dtype=np.int64)]
    keep = np.flatnonzero(labels >= 0)
    if len(keep) == 0:
        raise SynthsetError(f"{field}: no row of {source.describe()} has a class of {source.classes!r}")
    dataset = dataset.select(keep).select_columns([source.image_column])
    cond = [first_cond[i] for i in keep] if first_cond is not None else None
    names = [info.label_name for info in classes]
    return LoadedSplit(field, source, dataset, labels[keep], names, source_rows=keep, first_cond_images=cond)


def _short_name(name: str) -> str:
    return name.split(",")[0].strip().lower()


def label_space(splits: list[LoadedSplit]) -> tuple[int, list[str] | None]:
    """The common number of classes (and names) of splits that must share one label space.

    Names may differ in spelling between sources (synthset's "tench" vs the Hub's "tench, Tinca tinca"),
    so only the class count must agree; differing first names are logged, since they hint at another order.
    """
    named = [s for s in splits if s.class_names is not None]
    if named:
        first = named[0]
        for other in named[1:]:
            if other.num_classes != first.num_classes:
                raise SynthsetError(
                    f"{other.field}.label_column: {other.num_classes} classes, but {first.field} has "
                    f"{first.num_classes}; both must use one label space"
                )
            differ = sum(
                _short_name(a) != _short_name(b) for a, b in zip(first.class_names, other.class_names, strict=True)
            )
            if differ:
                logger.warning(
                    "%d of %d class names differ between %s and %s (label order is assumed to be the same)",
                    differ, first.num_classes, first.field, other.field,
                )  # fmt: skip
        num_classes, names = first.num_classes, first.class_names
    else:
        num_classes, names = int(max(int(s.labels.max()) for s in splits)) + 1, None
    for split in splits:
        if split.labels.max() >= num_classes:
            raise SynthsetError(f"{split.field}.label_column: label {split.labels.max()} but {num_classes} classes")
    return num_classes, names


@dataclass(frozen=True)
class ImageSettings:
    """What a model expects at its input, from timm's data config (overridable size)."""

    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_pct: float
    interpolation: str

    @classmethod
    def for_model(cls, model: torch.nn.Module, size: int | None = None) -> ImageSettings:
        from timm.data import resolve_model_data_config

        cfg = resolve_model_data_config(model)
        return cls(
            size=size or int(cfg["input_size"][-1]),
            mean=tuple(cfg["mean"]),
            std=tuple(cfg["std"]),
            crop_pct=float(cfg.get("crop_pct") or 0.875),
            interpolation=str(cfg.get("interpolation") or "bilinear"),
        )


def _interpolation(name: str) -> v2.InterpolationMode:
    return {"bicubic": v2.InterpolationMode.BICUBIC, "nearest": v2.InterpolationMode.NEAREST}.get(
        name, v2.InterpolationMode.BILINEAR
    )


def eval_transform(settings: ImageSettings) -> v2.Compose:
    """Resize to size / crop_pct, center crop: timm's evaluation preprocessing."""
    resize = int(round(settings.size / settings.crop_pct))
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(resize, interpolation=_interpolation(settings.interpolation), antialias=True),
            v2.CenterCrop(settings.size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(settings.mean, settings.std),
        ]
    )


def train_transform(settings: ImageSettings, augment: str) -> v2.Compose:
    if augment == "none":
        return eval_transform(settings)
    interpolation = _interpolation(settings.interpolation)
    if augment in ("rrc_flip", "rrc_flip_jitter"):
        geometry = [v2.RandomResizedCrop(settings.size, interpolation=interpolation, antialias=True)]
    else:
        geometry = [v2.Resize(settings.size, interpolation=interpolation, antialias=True), v2.CenterCrop(settings.size)]
    colour = (
        [v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0)] if augment == "rrc_flip_jitter" else []
    )
    return v2.Compose(
        [
            v2.ToImage(),
            *geometry,
            v2.RandomHorizontalFlip(),
            *colour,
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(settings.mean, settings.std),
        ]
    )


def _rgb(image: Any) -> Any:
    return image if image.mode == "RGB" else image.convert("RGB")


class ImageRows(torch.utils.data.Dataset):
    """Rows of one split as (image tensor, label), for evaluation and feature extraction."""

    def __init__(self, split: LoadedSplit, transform: v2.Compose, indices: np.ndarray | None = None) -> None:
        self.split, self.transform = split, transform
        self.indices = np.arange(len(split)) if indices is None else np.asarray(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> tuple[torch.Tensor, int]:
        index = int(self.indices[position])
        row = self.split.dataset[index]
        return self.transform(_rgb(row[self.split.source.image_column])), int(self.split.labels[index])


class MixedRows(torch.utils.data.Dataset):
    """Real and synthetic rows addressed by `Item`s: (image tensor, label, is_synthetic).

    The augmentation runs under the item's own seed (in a forked RNG, leaving the global one alone), so a
    row's crop is the same whatever the worker count and whether or not the run was resumed.
    """

    def __init__(self, real: LoadedSplit | None, synthetic: LoadedSplit | None, transform: v2.Compose) -> None:
        self.sources = {0: real, 1: synthetic}
        self.transform = transform

    def __getitem__(self, item: Item) -> tuple[torch.Tensor, int, bool]:
        split = self.sources[item.source]
        row = split.dataset[item.index]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(item.seed)
            image = self.transform(_rgb(row[split.source.image_column]))
        return image, int(split.labels[item.index]), item.source == SYNTHETIC
