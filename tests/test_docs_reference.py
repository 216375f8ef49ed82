"""The generated reference pages cover the code: every recipe field, every command and option."""

from __future__ import annotations

import sys

from helpers import REPO

from synthset.cli import COMMANDS, build_parser
from synthset.recipe import recipe_json_schema

sys.path.insert(0, str(REPO / "tools"))
import docs_reference  # noqa: E402


def table_rows(page: str) -> dict[tuple[str, str], list[str]]:
    """(section heading, field name) -> the row's cells."""
    rows, heading = {}, ""
    for line in page.splitlines():
        if line.startswith("## "):
            heading = line[3:].strip("`")
        elif line.startswith("| `"):
            cells = [cell.strip() for cell in line.strip("|").split(" | ")]
            rows[(heading, cells[0].strip("`"))] = cells
    return rows


def test_every_recipe_field_has_a_row_with_type_description_and_example():
    schema = recipe_json_schema()
    rows = table_rows(docs_reference.recipe_reference(schema))
    sections = dict(docs_reference.sections(schema))
    assert len(sections) == len(schema["$defs"]) + 1  # every model once, plus the top level
    for path, model in sections.items():
        for name in model["properties"]:
            cells = rows[(path or "Top level", name)]
            assert cells[1] and cells[4] and cells[5], f"{path}.{name}: {cells}"


def test_allowed_values_and_bounds_are_shown():
    rows = table_rows(docs_reference.recipe_reference(recipe_json_schema()))
    assert rows[("generator", "scheduler")][3] == ", ".join(
        f'`"{s}"`' for s in ("default", "ddim", "pndm", "euler", "euler_a", "dpm++", "unipc")
    )
    assert rows[("generator", "width")][3] == "> 0; multiple of 8"
    assert rows[("generator", "width")][2] == "`512`"
    assert rows[("generator", "model")][2] == "**required**"


def test_every_command_and_option_is_in_the_cli_reference():
    page = docs_reference.cli_reference(build_parser())
    for name, command in docs_reference.subcommands(build_parser()).items():
        assert f"## `synthset {name}`" in page
        for action in command._actions:
            for option in action.option_strings:
                assert option in page, f"synthset {name} {option}"
    assert set(docs_reference.subcommands(build_parser())) == set(COMMANDS)


def test_hand_written_examples_name_real_fields():
    schema = recipe_json_schema()
    fields = {
        f"{path}.{name}".lstrip(".") for path, model in docs_reference.sections(schema) for name in model["properties"]
    }
    assert set(docs_reference.EXAMPLES) <= fields
