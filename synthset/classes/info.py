"""The schema every class set shares (`ClassInfo`) and the name rules the loaders apply.

Kept apart from the loader in `synthset.classes` (which dispatches to `imagenet` and `custom`), so those
modules import the schema without importing the dispatcher that imports them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass


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


def normalized_name(name: str) -> str:
    """A class name as DA-Fusion compares folder names: lowercased, '_' as a space, trimmed."""
    return " ".join(name.lower().replace("_", " ").split())


def unique_label_names(class_names: list[str], wnids: Sequence[str | None]) -> list[str]:
    """Class names, with the wnid (or label index) appended wherever a name is shared."""
    counts = Counter(class_names)
    return [
        name if counts[name] == 1 else f"{name} ({wnid or index})"
        for index, (name, wnid) in enumerate(zip(class_names, wnids, strict=True))
    ]
