"""Labels for real images that do not come with this class set's labels: by name, or by largest object.

Both the plan stage (which real images condition generation, which are the k shots) and the training harness
(which images the probe trains and scores on) label a real dataset through these functions, so a row has the
same label in both and a recorded shot id can be checked against the probe's own view of the data.

- By name: a source's label names are matched to the class set lowercased, with '_' as a space (DA-Fusion's
  rule for Caltech101's folder names: `BACKGROUND_Google` is "background google").
- By largest object (DA-Fusion's rule for COCO and PASCAL VOC, see `synthset.recipe.LargestObjectSpec`): an
  image takes the class of its largest annotated object; an image without one gets no label (-1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from synthset.classes.info import ClassInfo, normalized_name
from synthset.errors import RecipeError

if TYPE_CHECKING:
    import numpy as np

    from synthset.recipe import LargestObjectSpec

UNLABELED = -1


def labels_by_name(source_names: Sequence[str], classes: list[ClassInfo]) -> list[int]:
    """For each source label name, the class set's label with that (normalized) name, or -1."""
    ours: dict[str, int] = {}
    for info in classes:
        for key in (info.class_name, info.label_name, info.wnid):
            if key:
                ours.setdefault(normalized_name(key), info.label)
    return [ours.get(normalized_name(name), UNLABELED) for name in source_names]


def _annotations(value: Any, category: str, area: str, where: str) -> tuple[list[Any], list[float]]:
    """(categories, areas) of one image's annotations, stored as a struct of lists or a list of structs."""
    if value is None:
        return [], []
    if isinstance(value, dict):
        if category not in value or area not in value:
            raise RecipeError(f"{where}: annotations have no {category!r} and {area!r} fields (has {sorted(value)})")
        return list(value[category] or []), [float(a) for a in value[area] or []]
    categories, areas = [], []
    for item in value:
        if category not in item or area not in item:
            raise RecipeError(f"{where}: annotations have no {category!r} and {area!r} fields (has {sorted(item)})")
        categories.append(item[category])
        areas.append(float(item[area]))
    return categories, areas


def _category_names(dataset: Any, spec: LargestObjectSpec) -> list[str] | None:
    """The names behind integer categories when the column's feature is a ClassLabel, else None."""
    import datasets

    feature = dataset.features[spec.objects]
    if isinstance(feature, datasets.List):  # a list of structs
        feature = feature.feature
    inner = feature.get(spec.category) if isinstance(feature, dict) else None
    if isinstance(inner, datasets.List):  # a struct of lists
        inner = inner.feature
    return list(inner.names) if isinstance(inner, datasets.ClassLabel) else None


def largest_annotation(categories: Sequence[Any], areas: Sequence[float]) -> Any | None:
    """The category of the largest annotation (the first on a tie), None for an image without any."""
    if not areas:
        return None
    return categories[max(range(len(areas)), key=areas.__getitem__)]


def largest_instance_class(instances: np.ndarray, classes: np.ndarray) -> int:
    """VOC: the class (0-based) of the largest instance, ignoring the lowest and highest id present.

    As DA-Fusion's pascal.py: `np.unique(instances)` with counts, the counts of the first and last id set to
    0 (background 0 and the void border 255), the largest remaining instance, and the SegmentationClass value
    at its first pixel minus 1. An image with no instance left gets -1 (DA-Fusion would index class -2).
    """
    import numpy as np

    ids, first_pixel, counts = np.unique(instances, return_index=True, return_counts=True)
    counts[0] = counts[-1] = 0
    best = int(counts.argmax())
    if counts[best] == 0:
        return UNLABELED
    return int(classes.flat[first_pixel[best]]) - 1


def largest_object_labels(
    dataset: Any, spec: LargestObjectSpec, classes: list[ClassInfo], match: str, where: str
) -> np.ndarray:
    """A label per row of a `datasets.Dataset` by its largest object; -1 for rows without a usable object."""
    import numpy as np

    num_classes = len(classes)
    if spec.objects is not None:
        if spec.objects not in dataset.column_names:
            raise RecipeError(
                f"{where}.objects: no column {spec.objects!r} (columns: {', '.join(dataset.column_names)})"
            )
        names = _category_names(dataset, spec)
        values = dataset.with_format("arrow")[spec.objects].to_pylist()
        best = [largest_annotation(*_annotations(v, spec.category, spec.area, where)) for v in values]
        if match == "name":
            as_names = [names[c] if names is not None and isinstance(c, int) else c for c in best]
            known = sorted({n for n in as_names if isinstance(n, str)})
            by_name = dict(zip(known, labels_by_name(known, classes), strict=True))
            labels = [by_name[n] if isinstance(n, str) else UNLABELED for n in as_names]
        else:
            if any(isinstance(c, str) for c in best):
                raise RecipeError(f"{where}.category: {spec.category!r} holds names; set match: name")
            labels = [c if c is not None and 0 <= c < num_classes else UNLABELED for c in best]
        return np.asarray(labels, dtype=np.int64)

    for column in (spec.instance_mask, spec.class_mask):
        if column not in dataset.column_names:
            raise RecipeError(f"{where}: no mask column {column!r} (columns: {', '.join(dataset.column_names)})")
    if match != "index":
        raise RecipeError(f"{where}: VOC masks hold class indices (1..{num_classes}); set match: index")
    labels = []
    for row in dataset.select_columns([spec.instance_mask, spec.class_mask]):
        label = largest_instance_class(np.asarray(row[spec.instance_mask]), np.asarray(row[spec.class_mask]))
        labels.append(label if 0 <= label < num_classes else UNLABELED)
    return np.asarray(labels, dtype=np.int64)
