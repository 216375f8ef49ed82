"""A class list read from a `datasets` source: the names of its label column's `ClassLabel`.

`classes: {dataset: cifar10}` (or a local dataset directory) makes the run's label space exactly the
source's, in its label order, so synthetic rows share labels with the real dataset they extend. Only the
features are read (from the dataset card's `dataset_info` where it has one), never the images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synthset.classes.info import ClassInfo
from synthset.errors import RecipeError, first_line
from synthset.fsutil import looks_local


def _features(dataset: str, config: str | None) -> Any:
    """The source's Features, from its card where it has one, else from its first data file's schema."""
    import datasets

    reference = str(Path(dataset).expanduser()) if looks_local(dataset) else dataset
    if looks_local(dataset) and not Path(reference).is_dir():
        raise RecipeError(f"classes.dataset: no such directory {dataset!r}")
    try:
        features = datasets.load_dataset_builder(reference, config).info.features
        if features is None:  # a folder of Parquet files without a card: the first file's schema says it
            loaded = datasets.load_dataset(reference, config, streaming=True)
            features = next(iter(loaded.values())).features
    except Exception as error:  # noqa: BLE001 - missing repo, no network, bad config: one line for the user
        raise RecipeError(f"classes.dataset: cannot read the features of {dataset!r}: {first_line(error)}") from None
    return features


def load_dataset_labels(dataset: str, config: str | None, label_column: str) -> list[ClassInfo]:
    """The source's classes in label order.

    Raises:
        RecipeError: the source cannot be read, or `label_column` is not a ClassLabel.
    """
    import datasets

    features = _features(dataset, config)
    feature = (features or {}).get(label_column)
    if not isinstance(feature, datasets.ClassLabel):
        columns = ", ".join(features or {})
        raise RecipeError(
            f"classes.label_column: {label_column!r} of {dataset!r} is not a ClassLabel (columns: {columns})"
        )
    # The ClassLabel names stay the label names (rows must match the source's); prompts say them as words.
    return [
        ClassInfo(label=i, class_name=" ".join(name.replace("_", " ").split()) or name, label_name=name)
        for i, name in enumerate(feature.names)
    ]
