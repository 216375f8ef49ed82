"""The recipe's JSON Schema: generated from the pydantic models, shipped for editors, and true to them."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from helpers import synthset_cli

from synthset.recipe import recipe_json_schema

REPO = Path(__file__).resolve().parents[1]
SCHEMA_FILE = REPO / "docs" / "schema" / "recipe.schema.json"
SHIPPED = sorted((REPO / "recipes").glob("*.yaml"))


def test_the_shipped_schema_file_is_the_generated_one():
    shipped = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert shipped == recipe_json_schema(), (
        "docs/schema/recipe.schema.json is stale: run `synthset schema recipe > docs/schema/recipe.schema.json`"
    )


def test_synthset_schema_recipe_prints_it():
    result = synthset_cli("schema", "recipe")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == recipe_json_schema()


@pytest.mark.parametrize("recipe", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_recipe_names_the_schema_and_validates_against_it(recipe: Path):
    text = recipe.read_text(encoding="utf-8")
    assert text.splitlines()[0] == "# yaml-language-server: $schema=../docs/schema/recipe.schema.json"
    jsonschema.validate(yaml.safe_load(text), recipe_json_schema())


def test_the_schema_refuses_what_the_recipe_refuses():
    recipe = yaml.safe_load((REPO / "recipes" / "demo.yaml").read_text(encoding="utf-8"))
    recipe["generator"]["stepz"] = 3
    with pytest.raises(jsonschema.ValidationError, match="stepz"):
        jsonschema.validate(recipe, recipe_json_schema())
    recipe["generator"].pop("stepz")
    recipe["generator"]["scheduler"] = "no-such-scheduler"
    with pytest.raises(jsonschema.ValidationError, match="no-such-scheduler"):
        jsonschema.validate(recipe, recipe_json_schema())
