"""docs/design.md stays true: its layer table names exactly the layers the import contract enforces."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def table_layers() -> list[list[str]]:
    """The design doc's layer table, top to bottom: each row's module names."""
    text = (REPO / "docs" / "design.md").read_text(encoding="utf-8")
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [re.findall(r"`([a-z_]+)`", row.split(" | ")[0]) for row in rows]


def contract_layers() -> list[list[str]]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    contract = next(c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers")
    return [[name.strip().removeprefix("synthset.") for name in layer.split("|")] for layer in contract["layers"]]


def test_the_design_docs_layers_are_the_contracts_layers():
    documented = [name for row in table_layers() for name in row]
    enforced = [name for layer in contract_layers() for name in layer]
    assert documented == enforced


def test_every_documented_layer_exists():
    for row in table_layers():
        for name in row:
            assert importlib.util.find_spec(f"synthset.{name}") is not None, name
