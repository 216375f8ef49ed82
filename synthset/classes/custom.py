"""Custom class lists: a text file (one class name per line) or a YAML list.

YAML entries are either names or mappings with `name` and optional `wnid` and `gloss`; a mapping may
also give `label_name` when two classes share a prompt name.
"""

from __future__ import annotations

from pathlib import Path

from synthset.classes.info import ClassInfo, unique_label_names
from synthset.errors import RecipeError
from synthset.recipe import read_text_file, read_yaml_file

_ENTRY_KEYS = {"name", "wnid", "gloss", "label_name"}


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


def load_class_list(path: Path) -> list[ClassInfo]:
    if not path.is_file():
        raise RecipeError(f"classes.set: no such class list file {str(path)!r}")
    if path.suffix == ".txt":
        lines = read_text_file(path, "class list").splitlines()
        entries = [{"name": line.strip()} for line in lines if line.strip() and not line.startswith("#")]
    else:
        entries = _entries_from_yaml(path)
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
        ClassInfo(label=i, class_name=names[i], label_name=label_names[i], wnid=wnids[i], gloss=e.get("gloss"))
        for i, e in enumerate(entries)
    ]
