"""Shared fixtures: one tiny model cache per test session, and recipes written into tmp dirs."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

BASE_RECIPE: dict[str, Any] = {
    "name": "t",
    "seed": 7,
    "classes": {"set": "imagenet-1k", "limit": 3},
    "configs": [{"name": "naive", "strategy": "naive", "images_per_class": 5}],
    "generator": {
        "model": "synthset-testing:tiny-sd",
        "scheduler": "ddim",
        "steps": 2,
        "guidance": 5.0,
        "width": 32,
        "height": 32,
        "batch_size": 4,
    },
    "storage": {"format": "png", "shard_size": 6, "row_group_size": 4},
}
# The quality gate on the tiny offline models (recipe `quality:`): what a published run needs at least.
TINY_QUALITY: dict[str, Any] = {
    "checker": "synthset-testing:tiny-safety-checker",
    "clip_model": "synthset-testing:tiny-clip",
}


@pytest.fixture(scope="session", autouse=True)
def synthset_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test (and every subprocess it starts) shares one tiny-model cache, built once here.

    The product never builds a tiny model (only `synthset tiny-models`, the tests and bench do), just as
    it never downloads one in a user's run: it resolves `synthset-testing:<name>` to this directory.
    """
    from synthset import testing
    from synthset.models import RESOLVER_ENV
    from synthset.testing.replicas import RESOLVER

    home = Path(os.environ.get("SYNTHSET_TEST_HOME") or _session_dir(tmp_path_factory) / "synthset-home")
    home.mkdir(parents=True, exist_ok=True)
    os.environ["SYNTHSET_HOME"] = str(home)
    os.environ[RESOLVER_ENV] = RESOLVER  # the hook offline test mode (SYNTHSET_TEST_REPLICAS) resolves through
    testing.build_all(home)
    return home


def _session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This test session's own directory; under pytest-xdist (`make test` runs two workers) the one its
    workers share, so the tiny models are built once (`synthset.testing` builds each beside its place and
    renames it there: two workers building at once keep one)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def deep_update(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_update(merged[key], value)
        else:
            merged[key] = value
    return merged


@pytest.fixture
def write_recipe(tmp_path: Path):
    """Write BASE_RECIPE with changes to tmp_path/<name>.yaml, its output_dir inside tmp_path."""

    def write(changes: dict[str, Any] | None = None, filename: str = "recipe.yaml") -> Path:
        data = deep_update({**BASE_RECIPE, "output_dir": str(tmp_path / "runs")}, changes or {})
        path = tmp_path / filename
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write
