"""Custom class lists: a text file (one class name per line), a CSV file or a YAML list.

CSV files have a header row with a `name` column and optional `description` (or `gloss`), `wnid` and
`label_name` columns. YAML entries are either names or mappings with the same keys. A description is the
class's meaning in the user's words: LAR takes it as a candidate (and keeps it when nothing else competes).
A WordNet id without a description brings that synset's gloss. `label_name` sets the ClassLabel name when
two classes share a prompt name.
"""

from __future__ import annotations

from pathlib import Path

from synthset.classes.info import ClassInfo, unique_label_names
from synthset.errors import RecipeError
from synthset.recipe import read_text_file, read_yaml_file

_ENTRY_KEYS = {"name", "wnid", "gloss", "description", "label_name"}


def check_class_name(name: str, where: str) -> None:
    """A class name goes into every prompt of the class: one non-blank line of text."""
    if not name.strip():
        raise RecipeError(f"{where}: the class name is blank")
    if "\n" in name.strip() or "\r" in name.strip():
        raise RecipeError(f"{where}: the class name {name!r} spans several lines; give it on one line")


def _entries_from_yaml(path: Path) -> list[dict[str, str]]:
    data = read_yaml_file(path, "class list")  # one line for a binary file, bad YAML or a key written twice
    if isinstance(data, dict) and "classes" in data:
        data = data["classes"]
    if not isinstance(data, list):
        raise RecipeError(f"{path}: a class list must be a YAML list (or a mapping with a 'classes' list)")
    entries = []
    for i, item in enumerate(data):
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise RecipeError(f"{path}: entry {i}: needs a class name (a string or a mapping with 'name')")
        unknown = set(item) - _ENTRY_KEYS
        if unknown:
            raise RecipeError(f"{path}: entry {i}: unknown key {sorted(unknown)[0]!r}")
        entries.append({k: str(v) for k, v in item.items()})
    return entries


def _entries_from_csv(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, encoding="utf-8", newline="") as file:
        reader = csv.DictReader(line for line in file if not line.startswith("#"))
        columns = [c.strip() for c in reader.fieldnames or []]
        if "name" not in columns:
            raise RecipeError(f"{path}: a CSV class list needs a header row with a 'name' column")
        unknown = set(columns) - _ENTRY_KEYS
        if unknown:
            known = ", ".join(sorted(_ENTRY_KEYS))
            raise RecipeError(f"{path}: unknown column {sorted(unknown)[0]!r} (columns: {known})")
        rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    return [{k: v for k, v in row.items() if v} for row in rows if any(row.values())]


def _entries(path: Path) -> list[dict[str, str]]:
    suffix = path.suffix.lower()
    if suffix == ".txt":
        lines = read_text_file(path, "class list").splitlines()
        return [{"name": line.strip()} for line in lines if line.strip() and not line.startswith("#")]
    if suffix == ".csv":
        return _entries_from_csv(path)
    return _entries_from_yaml(path)


def _gloss(entry: dict[str, str], where: str) -> str | None:
    """The user's description, else the gloss of the WordNet id the entry gives (if WordNet knows it)."""
    if "gloss" in entry and "description" in entry:
        raise RecipeError(f"{where}: give description or gloss, not both")
    given = entry.get("description") or entry.get("gloss")
    if given or not entry.get("wnid"):
        return given or None
    from synthset.classes.imagenet import wordnet_glosses

    return wordnet_glosses().get(entry["wnid"])


def load_class_list(path: Path) -> list[ClassInfo]:
    """The classes of a .txt, .csv or .yaml class list file, in file order (label i is the i-th entry).

    Raises:
        RecipeError: the file is missing, empty, malformed, or names a class twice.
    """
    if not path.is_file():
        raise RecipeError(f"classes.set: no such class list file {str(path)!r}")
    entries = _entries(path)
    if not entries:
        raise RecipeError(f"{path}: the class list is empty")
    for i, entry in enumerate(entries):
        check_class_name(entry["name"], f"{path}: entry {i}")
    names = [e["name"].strip() for e in entries]
    seen_plain: set[str] = set()
    for name, entry in zip(names, entries, strict=True):
        if "wnid" not in entry and "label_name" not in entry:
            if name in seen_plain:  # a repeated bare name is a typo, not two classes
                raise RecipeError(f"{path}: class {name!r} appears more than once")
            seen_plain.add(name)
    wnids = [e.get("wnid") for e in entries]
    label_names = unique_label_names(names, wnids)
    for i, entry in enumerate(entries):
        label_names[i] = entry.get("label_name", label_names[i])
    seen: set[str] = set()
    for name in label_names:
        if name in seen:
            raise RecipeError(f"{path}: class {name!r} appears more than once")
        seen.add(name)
    return [
        ClassInfo(label=i, class_name=names[i], label_name=label_names[i], wnid=wnids[i], gloss=_gloss(e, where))
        for i, e in enumerate(entries)
        for where in [f"{path}: entry {i}"]
    ]
