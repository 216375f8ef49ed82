"""`synthset schema recipe`: print the recipe's JSON Schema (for editors and validators)."""

from __future__ import annotations

import argparse
import json

HELP = "print the JSON Schema of a recipe (for your editor's YAML completion and validation)"
DESCRIPTION = (
    "Print the JSON Schema of a recipe, generated from synthset's own recipe models, so it always "
    "matches what `synthset plan` accepts. Save it and name it at the top of a recipe for editors that "
    "speak the YAML language server: `# yaml-language-server: $schema=recipe.schema.json`. The shipped "
    "recipes name docs/schema/recipe.schema.json."
)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("schema", help=HELP, description=DESCRIPTION)
    parser.add_argument("kind", choices=("recipe",), help="which file's schema: recipe")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from synthset.recipe import recipe_json_schema

    print(json.dumps(recipe_json_schema(), indent=2, sort_keys=True))
    return 0
