"""Every shell and Python example in the README and the docs runs here, or says why it cannot and is checked.

A fenced block is runnable unless its info string has a title (mkdocs-material shows it above the block, so a
reader sees it too) that marks it: `title="needs ..."` or `title="in a clone"` for what cannot run here (a GPU,
real data, the Hub, the repository's Makefile), `title="from synthset/..."` for a quotation of a source file.
Runnable blocks run in order, page after page, in one scratch directory (the README and Getting started run
`synthset demo --quick` first), offline on the tiny models. A marked block is checked instead: every
`synthset` command in it parses, every recipe it names or writes passes `synthset plan --check` with tiny
stand-ins for its model and data, every training config it names loads, and every `make` target it runs
exists. A quotation's strings and dotted names must still be in its file. YAML blocks are recipe fragments:
merged into a minimal recipe, they must validate.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from helpers import REPO
from recipe_stand_ins import stand_in

from synthset.cli import build_parser, main
from synthset.generation.check import check_recipe
from synthset.recipe import Recipe, load_recipe, recipe_from_dict
from synthset.training.config import load_train_config

# The pages in the order their runnable blocks run (the first ones run the demo the others may read).
FIRST_PAGES = ["README.md", "docs/getting-started.md"]
PAGES = FIRST_PAGES + sorted(
    str(p.relative_to(REPO)) for p in (REPO / "docs").rglob("*.md") if str(p.relative_to(REPO)) not in FIRST_PAGES
)
SHELL, PYTHON = {"bash", "sh", "shell", "console"}, {"python", "py"}
MARKS = ("needs ", "in a clone")
EXCERPT = "from "  # title="from synthset/x.py": a quotation of that file, whose names and strings it must still hold
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)
HEREDOC = re.compile(r"cat > (\S+) <<'EOF'\n(.*?)^EOF$", re.MULTILINE | re.DOTALL)
# Commands a marked block may run here as they are: they only write small files (a recipe).
WRITES_FILES_ONLY = {"new"}
MINIMAL_RECIPE = {
    "name": "fragment",
    "configs": [{"name": "naive", "images_per_class": 1}],
    "generator": {"model": "x"},
}


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    language: str
    title: str
    code: str

    @property
    def marked(self) -> bool:
        return self.title.startswith(MARKS)

    def __str__(self) -> str:
        return f"{self.page}:{self.line}"


def blocks(page: str) -> list[Block]:
    text = (REPO / page).read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        title = re.search(r'title="([^"]*)"', match.group(2))
        line = text.count("\n", 0, match.start()) + 1
        found.append(Block(page, line, match.group(1), title.group(1) if title else "", match.group(3)))
    return found


ALL = [block for page in PAGES for block in blocks(page)]
EXCERPTS = [b for b in ALL if b.title.startswith(EXCERPT)]
RUNNABLE = [b for b in ALL if not b.marked and b.language in SHELL | PYTHON and b not in EXCERPTS]
MARKED = [b for b in ALL if b.marked and b.language in SHELL | PYTHON]
FRAGMENTS = [b for b in ALL if b.language == "yaml"]


def test_every_code_block_is_collected():
    """A block in a language nobody checks must be plain text (`text`), not silently skipped."""
    unchecked = [f"{b} ({b.language})" for b in ALL if b.language not in SHELL | PYTHON | {"yaml", "text"}]
    assert not unchecked
    assert {"README.md", "docs/getting-started.md", "docs/guides/own-classes.md"} <= {b.page for b in RUNNABLE}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, synthset_home: Path) -> Path:
    """A user's directory: the repository's recipes and training configs beside it, nothing else."""
    work = tmp_path_factory.mktemp("docs")
    for name in ("recipes", "configs"):
        (work / name).symlink_to(REPO / name)
    return work


def run_block(block: Block, work: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if block.language in PYTHON:
        command = [sys.executable, "-c", block.code]
    else:
        command = ["bash", "-euo", "pipefail", "-c", block.code]
    return subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize("block", RUNNABLE, ids=str)
def test_runnable_block_runs(block: Block, workdir: Path):
    result = run_block(block, workdir)
    assert result.returncode == 0, f"{block} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"


def synthset_commands(code: str) -> list[list[str]]:
    """The argument lists of every `synthset ...`, `python -m synthset ...` or `... -m synthset ...` line."""
    code = HEREDOC.sub("", code).replace("\\\n", " ")
    commands = []
    for line in re.split(r"\n|&&|;", code):
        words = shlex.split(line, comments=True)
        if words[:1] == ["synthset"]:
            commands.append(words[1:])
        elif "-m" in words and words[words.index("-m") + 1 : words.index("-m") + 2] == ["synthset"]:
            commands.append(words[words.index("-m") + 2 :])
    return commands


def check_recipe_file(path: Path, tmp: Path) -> None:
    checked = check_recipe(stand_in(load_recipe(path), tmp))
    assert checked.images > 0, path


@pytest.mark.parametrize("block", MARKED, ids=str)
def test_marked_block_is_checked(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """What cannot run here is still true: its commands parse, its recipes and configs validate, targets exist."""
    monkeypatch.chdir(tmp_path)
    for name, text in HEREDOC.findall(block.code):
        (tmp_path / name).write_text(text, encoding="utf-8")
    for argv in synthset_commands(block.code):
        build_parser().parse_args(argv)  # exits 2 (SystemExit) on an unknown command or option
        if argv[0] in WRITES_FILES_ONLY:  # cheap and local (`synthset new` writes a recipe): run it
            assert main(argv) == 0, f"{block}: synthset {shlex.join(argv)}"
    for word in set(re.findall(r"[\w./-]+\.yaml", block.code)):
        path = tmp_path / word if (tmp_path / word).exists() else REPO / word
        assert path.is_file(), f"{block}: {word} is neither written by the block nor shipped"
        if "configs/train/" in word:
            load_train_config(path)
        else:
            check_recipe_file(path, tmp_path)
    targets = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(encoding="utf-8"), re.MULTILINE))
    for target in re.findall(r"\bmake ([\w-]+)", block.code):
        assert target in targets, f"{block}: no make target {target!r}"


@pytest.mark.parametrize("block", EXCERPTS, ids=str)
def test_excerpt_is_still_in_its_source(block: Block):
    """An excerpt may be abridged or commented, but every string and dotted name it shows is in the file."""
    source = (REPO / block.title.removeprefix(EXCERPT)).read_text(encoding="utf-8")
    code = "\n".join(line.split("  #")[0] for line in block.code.splitlines() if not line.startswith("#"))
    names = re.findall(r'"[^"]*"|\b\w+\.\w+\b', code)
    assert names and not [name for name in names if name not in source], f"{block}: {block.title} changed"


@pytest.mark.parametrize("block", FRAGMENTS, ids=str)
def test_yaml_fragment_is_a_valid_recipe_part(block: Block):
    data = yaml.safe_load(block.code)
    assert isinstance(data, dict), block
    if set(data) <= set(Recipe.model_fields):
        recipe_from_dict({**MINIMAL_RECIPE, **data}, str(block))


def test_wheel_names_in_the_docs_are_this_version():
    import synthset

    named = {v for page in PAGES for v in re.findall(r"synthset-(\d[\w.]*)-py3", (REPO / page).read_text())}
    assert named <= {synthset.__version__}
