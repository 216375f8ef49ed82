"""Class sets as data: one schema (`ClassInfo`), one loader (`load_class_set`).

A class set fixes the label space: label i is the i-th class of the set, whatever subset a run
generates, so synthetic rows share labels with the real dataset they extend (ImageNet-1k label 0 is
tench in both).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from synthset.errors import RecipeError


@dataclass(frozen=True)
class ClassInfo:
    """One class of a set.

    `class_name` is what prompts say ("crane"); `label_name` is the unique name of the `ClassLabel`
    (two ImageNet classes are both called "crane", so each gets its wnid appended there).
    """

    label: int
    class_name: str
    label_name: str
    wnid: str | None = None
    gloss: str | None = None


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


def normalized_name(name: str) -> str:
    """A class name as DA-Fusion compares folder names: lowercased, '_' as a space, trimmed."""
    return " ".join(name.lower().replace("_", " ").split())


def unique_label_names(class_names: list[str], wnids: list[str | None]) -> list[str]:
    """Class names, with the wnid (or label index) appended wherever a name is shared."""
    counts = Counter(class_names)
    return [
        name if counts[name] == 1 else f"{name} ({wnid or index})"
        for index, (name, wnid) in enumerate(zip(class_names, wnids, strict=True))
    ]


def load_class_set(name_or_path: str) -> list[ClassInfo]:
    """The whole class set in label order: a named set or a custom list file."""
    if name_or_path == "imagenet-1k":
        from synthset.classes.imagenet import load_imagenet_1k

        return load_imagenet_1k()
    if name_or_path in PACKAGED_SETS:
        from synthset.classes.custom import load_class_list

        with resources.as_file(resources.files("synthset.classes") / "data" / f"{name_or_path}.txt") as path:
            return load_class_list(path)
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml", ".txt"):
        from synthset.classes.custom import load_class_list

        return load_class_list(path)
    raise RecipeError(
        f"classes.set: unknown class set {name_or_path!r} "
        f"(named sets: {', '.join(NAMED_SETS)}; or a .yaml/.txt class list file)"
    )


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
