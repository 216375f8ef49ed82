"""Class sets as data: one schema (`ClassInfo`, in `info.py`), one loader (`load_class_set`).

A class set fixes the label space: label i is the i-th class of the set, whatever subset a run
generates, so synthetic rows share labels with the real dataset they extend (ImageNet-1k label 0 is
tench in both).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from synthset.classes.info import ClassInfo, normalized_name, unique_label_names
from synthset.errors import RecipeError

if TYPE_CHECKING:
    from synthset.recipe import ClassSetSpec

__all__ = [
    "NAMED_SETS",
    "PACKAGED_SETS",
    "ClassInfo",
    "load_class_set",
    "load_recipe_classes",
    "normalized_name",
    "select_classes",
    "unique_label_names",
]


# Few-shot benchmark class lists shipped in `classes/data/<name>.txt` (sources in its README.md). The
# `*_dafusion`, `coco` and `pascal_voc` sets are the DA-Fusion benchmark's names and label order (paper B).
PACKAGED_SETS = (
    "caltech101",
    "caltech101_dafusion",
    "flowers102",
    "flowers102_dafusion",
    "coco",
    "pascal_voc",
    "oxford_pets",
    "food101",
    "dtd",
    "eurosat",
    "fgvc_aircraft",
    "stanford_cars",
    "sun397",
)
NAMED_SETS = ("imagenet-1k", *PACKAGED_SETS)


CLASS_LIST_SUFFIXES = (".txt", ".csv", ".yaml", ".yml")


def _unknown_set(name: str) -> RecipeError:
    """One line: the named sets, and the closest one when the name looks like a typo of it."""
    import difflib

    closest = difflib.get_close_matches(name.lower(), NAMED_SETS, n=1, cutoff=0.6)
    hint = f"; did you mean {closest[0]!r}?" if closest else ""
    return RecipeError(
        f"classes.set: unknown class set {name!r} "
        f"(named sets: {', '.join(NAMED_SETS)}; or a .txt, .csv or .yaml class list file){hint}"
    )


def load_class_set(name_or_path: str) -> list[ClassInfo]:
    """The whole class set in label order: a named set or a custom list file.

    Raises:
        RecipeError: an unknown set name (naming the closest known one) or a bad class list file.
    """
    if name_or_path == "imagenet-1k":
        from synthset.classes.imagenet import load_imagenet_1k

        return load_imagenet_1k()
    if name_or_path in PACKAGED_SETS:
        from synthset.classes.custom import load_class_list

        with resources.as_file(resources.files("synthset.classes") / "data" / f"{name_or_path}.txt") as path:
            return load_class_list(path)
    path = Path(name_or_path)
    if path.suffix.lower() in CLASS_LIST_SUFFIXES:
        from synthset.classes.custom import load_class_list

        return load_class_list(path)
    raise _unknown_set(name_or_path)


def load_recipe_classes(spec: ClassSetSpec) -> list[ClassInfo]:
    """The classes a recipe's `classes:` names: a set or list file, or a `datasets` source's label names."""
    if spec.dataset is not None:
        from synthset.classes.from_dataset import load_dataset_labels

        return load_dataset_labels(spec.dataset, spec.dataset_config, spec.label_column)
    return load_class_set(spec.set or "imagenet-1k")  # the recipe holds exactly one of set and dataset


def select_classes(
    classes: list[ClassInfo], subset: list[str] | None, limit: int | None, set_name: str
) -> list[ClassInfo]:
    """The classes a run generates: those named in `subset` (by name, label name or wnid), then the first `limit`."""
    selected = classes
    if subset is not None:
        index: dict[str, ClassInfo] = {}
        for info in classes:
            for key in (info.class_name, info.label_name, info.wnid):
                if key is not None:
                    index.setdefault(key, info)
        ambiguous = {info.class_name for info in classes if info.class_name != info.label_name}
        chosen: dict[int, str] = {}  # label -> the subset entry that named it
        for i, key in enumerate(subset):
            if key in ambiguous:
                raise RecipeError(
                    f"classes.subset: class name {key!r} is ambiguous in {set_name}; use its wnid or label name"
                )
            if key not in index:
                raise RecipeError(f"classes.subset: unknown class {key!r} in {set_name}")
            label = index[key].label
            if label in chosen:  # a class file refuses a duplicate; so does a subset
                raise RecipeError(
                    f"classes.subset: entry {i} ({key!r}) names the same class as {chosen[label]!r}; name each once"
                )
            chosen[label] = key
        selected = [info for info in classes if info.label in chosen]
    if limit is not None and limit > len(selected):
        among = (
            f"the {len(selected)} that classes.subset names" if subset is not None else f"{set_name}'s {len(selected)}"
        )
        raise RecipeError(f"classes.limit: {limit} is more classes than {among}; lower it or leave it out")
    if limit is not None:
        selected = selected[:limit]
    return selected
