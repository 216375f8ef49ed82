"""mkdocs hooks: the generated reference pages join the site at build time (never written into the checkout).

Named in mkdocs.yml (`hooks:`). The pages' text comes from tools/docs_reference.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mkdocs.structure.files import File, Files

sys.path.insert(0, str(Path(__file__).resolve().parent))

import docs_reference  # noqa: E402  (beside this file, which mkdocs loads by path)

# Site path -> the function writing its Markdown.
GENERATED = {
    "reference/recipe.md": lambda: docs_reference.recipe_reference(_recipe_schema()),
    "reference/cli.md": lambda: docs_reference.cli_reference(_cli_parser()),
}


def _recipe_schema() -> dict:
    from synthset.recipe import recipe_json_schema

    return recipe_json_schema()


def _cli_parser():
    from synthset.cli import build_parser

    return build_parser()


def on_files(files: Files, config) -> Files:
    """Add each generated page to the site's files (mkdocs >= 1.6: File.generated)."""
    for src_uri, write in GENERATED.items():
        files.append(File.generated(config, src_uri, content=write()))
    return files
