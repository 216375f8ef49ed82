"""The docs' reference pages, generated from the code at build time so they cannot drift from it.

- The recipe reference: one table per recipe section, from the recipe's JSON Schema (itself generated from
  the pydantic models): every field with its type, default, allowed values, description and an example,
  the example taken from the shipped recipes where one sets the field.
- The CLI reference: every command's `--help`, from `synthset.cli.build_parser()`.

`tools/mkdocs_hooks.py` adds both pages to the site; nothing is written into the checkout.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
SHIPPED_RECIPES = (REPO / "recipes", REPO / "synthset" / "recipes")
HELP_WIDTH = "100"
# Examples for the fields no shipped recipe sets (tests/test_docs_reference.py: each names a real field).
EXAMPLES: dict[str, Any] = {
    "classes.subset": ["tench", "n01443537"],
    "classes.dataset": "dpdl-benchmark/oxford_flowers102",
    "classes.dataset_config": "default",
    "generator.revision": "main",
    "quality.checker_revision": "main",
    "configs[].augcond.prompt_strategy": "lar_cd_sd",
    "prompts.llm.revision": "main",
    "prompts.aspects.foreground": ["in a garden", "on a table"],
    "prompts.aspects.background": ["a forest", "a city street"],
    "prompts.aspects.lighting": ["at sunset", "under studio light"],
    "prompts.aspects.camera": ["close-up", "wide angle"],
    "prompts.llm.endpoints[].base_url": "http://gpu-1:8000/v1",
    "prompts.llm.endpoints[].concurrency": 256,
    "prompts.llm.endpoints[].api_key_env": "H_KEY",
}  # argparse wraps to $COLUMNS: fixed, so the page is the same on every machine

# JSON Schema bounds, as the reference writes them.
BOUNDS = {
    "minimum": ">= {}",
    "maximum": "<= {}",
    "exclusiveMinimum": "> {}",
    "exclusiveMaximum": "< {}",
    "multipleOf": "multiple of {}",
    "minItems": "at least {} item(s)",
    "minLength": "at least {} characters",
}


def recipe_reference(schema: dict[str, Any]) -> str:
    """The recipe reference page (Markdown) for a recipe JSON Schema."""
    examples = shipped_examples()
    lines = [
        "# Recipe reference",
        "",
        "Generated from synthset's recipe models when the docs are built (`synthset schema recipe` prints the "
        "same models as a JSON Schema). A recipe is YAML; every key below is optional unless marked "
        "**required**. Examples come from the shipped recipes where one sets the field.",
    ]
    for path, model in sections(schema):
        lines += section(path, model, examples)
    return "\n".join(lines) + "\n"


def sections(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each model of the recipe with the YAML path it sits at (`configs[].augcond`), parents first."""
    seen: set[str] = set()
    queue: list[tuple[str, dict[str, Any]]] = [("", schema)]
    while queue:
        path, model = queue.pop(0)
        yield path, model
        for name, field in model.get("properties", {}).items():
            for ref, suffix in refs(field):
                if ref not in seen:
                    seen.add(ref)
                    queue.append((f"{path}.{name}{suffix}".lstrip("."), schema["$defs"][ref]))


def refs(field: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """The models a field holds, each with its path suffix (`[]` for a list's items)."""
    if "$ref" in field:
        yield field["$ref"].rsplit("/", 1)[-1], ""
    if "items" in field:
        yield from ((ref, "[]" + suffix) for ref, suffix in refs(field["items"]))
    for option in field.get("anyOf", []):
        yield from refs(option)


def section(path: str, model: dict[str, Any], examples: dict[str, Any]) -> list[str]:
    title = f"`{path}`" if path else "Top level"
    lines = ["", f"## {title}", ""]
    if path and model.get("description"):
        lines += [model["description"], ""]
    lines += ["| field | type | default | allowed | description | example |", "|---|---|---|---|---|---|"]
    required = set(model.get("required", []))
    for name, field in model.get("properties", {}).items():
        key = f"{path}.{name}".lstrip(".")
        lines.append(row(key, field, name in required, examples.get(key)))
    return lines


def row(key: str, field: dict[str, Any], required: bool, example: Any) -> str:
    """One field's table row; a field holding a section links to it instead of repeating it."""
    name = key.rsplit(".", 1)[-1]
    default = "**required**" if required else code(field.get("default"))
    if example is None and not required:
        example = field.get("default")
    kind, shown = type_name(field), code(example)
    if any(refs(field)):
        suffix = "".join(suffix for _, suffix in refs(field))
        kind = f"[{kind}](#{anchor(key + suffix)})"
        default = default if required or field.get("default") is None else "its fields' defaults"
        shown = f"[its section](#{anchor(key + suffix)})"
    description = field.get("description", "").replace("<", "&lt;").replace(">", "&gt;")
    cells = [f"`{name}`", kind, default, allowed(field), description, shown]
    return "| " + " | ".join(cell.replace("|", "\\|").replace("\n", " ") for cell in cells) + " |"


def anchor(path: str) -> str:
    """The id mkdocs gives the heading `path` (toc's slugify: word characters, hyphens, spaces as -)."""
    return re.sub(r"[^\w\- ]", "", path).strip().lower().replace(" ", "-")


def type_name(field: dict[str, Any]) -> str:
    """A field's type in Python-like words: `int`, `str | null`, `list[ConfigSpec]`, `dict[str, number]`."""
    if "$ref" in field:
        return field["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in field:
        return " | ".join(type_name(option) for option in field["anyOf"])
    kind = field.get("type", "any")
    if kind == "array":
        return f"list[{type_name(field.get('items', {}))}]"
    if kind == "object" and isinstance(field.get("additionalProperties"), dict):
        return f"dict[str, {type_name(field['additionalProperties'])}]"
    return {"integer": "int", "string": "str", "boolean": "bool", "number": "float"}.get(kind, kind)


def allowed(field: dict[str, Any]) -> str:
    """The values a field accepts beyond its type: its enum, or its bounds (also inside anyOf and items)."""
    parts = [", ".join(code(value) for value in field["enum"])] if "enum" in field else []
    parts += [text.format(field[key]) for key, text in BOUNDS.items() if key in field]
    for inner in [*field.get("anyOf", []), field.get("items"), field.get("additionalProperties")]:
        if isinstance(inner, dict) and inner and (nested := allowed(inner)):
            parts.append(nested)
    return "; ".join(parts)


def code(value: Any) -> str:
    return "" if value is None else f"`{json.dumps(value)}`"


def shipped_examples() -> dict[str, Any]:
    """The first value each field path takes in the shipped recipes (`configs[].strategy` -> "naive"), or EXAMPLES'."""
    examples: dict[str, Any] = dict(EXAMPLES)
    for folder in SHIPPED_RECIPES:
        for recipe in sorted(folder.glob("*.yaml")):
            for key, value in flatten(yaml.safe_load(recipe.read_text(encoding="utf-8"))):
                examples.setdefault(key, value)
    return examples


def flatten(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if path:
        yield path, value
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from flatten(inner, f"{path}.{key}".lstrip("."))
    elif isinstance(value, list) and value and isinstance(value[0], dict):
        for item in value:
            yield from flatten(item, f"{path}[]")


def cli_reference(parser: argparse.ArgumentParser) -> str:
    """The CLI reference page (Markdown): the program's help, then each command's."""
    lines = ["# CLI reference", "", "Generated from synthset's argument parsers when the docs are built.", ""]
    lines += ["```text", help_text(parser), "```"]
    for name, command in subcommands(parser).items():
        lines += ["", f"## `synthset {name}`", "", "```text", help_text(command), "```"]
    return "\n".join(lines) + "\n"


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices) if actions else {}


def help_text(parser: argparse.ArgumentParser) -> str:
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_WIDTH
    try:
        return parser.format_help().rstrip()
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
