"""The package's layers hold: `lint-imports` passes on the code, and fails on an import that crosses one."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import REPO, VENV_BIN


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "lint-imports")], cwd=root, capture_output=True, text=True, env={"PYTHONPATH": str(root)}
    )


@pytest.fixture
def scratch_copy(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "synthset", tmp_path / "synthset", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    return tmp_path


def test_the_layers_hold(scratch_copy: Path):
    result = lint_imports(scratch_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "wrong_import", "broken"),
    [
        ("run/paths.py", "from synthset import hub", "synthset.run is not allowed to import synthset.hub"),
        ("generation/plan.py", "import synthset.builders", "synthset.generation is not allowed to import"),
        ("recipe.py", "import synthset.classes", "synthset.recipe is not allowed to import synthset.classes"),
        ("cards/grid.py", "import synthset.testing", "synthset.cards.grid -> synthset.testing"),
    ],
)
def test_an_import_across_a_layer_breaks_the_contract(scratch_copy: Path, module: str, wrong_import: str, broken):
    path = scratch_copy / "synthset" / module
    path.write_text(path.read_text() + f"\n{wrong_import}  # noqa\n")
    result = lint_imports(scratch_copy)
    assert result.returncode != 0
    assert broken in result.stdout


def test_only_the_lock_module_reads_the_lock_as_raw_data():
    """Every stage reads the typed, checked `Lock`; the raw YAML mapping stays inside run/lock.py."""
    package = REPO / "synthset"
    readers = [
        path.relative_to(package).as_posix()
        for path in sorted(package.rglob("*.py"))
        if "read_lock_data" in path.read_text(encoding="utf-8")
    ]
    assert readers == ["run/lock.py"]
