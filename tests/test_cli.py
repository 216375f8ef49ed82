"""Bad input reaches the user as one line naming the culprit, a non-zero exit, and no partial run."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from helpers import synthset_cli

from synthset.cli import main


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"generator": {"stepz": 3}}, "{recipe}: generator.stepz: unknown key"),
        (
            {"generator": {"guidance": "high"}},
            "{recipe}: generator.guidance: Input should be a valid number (got 'high')",  # strict: never parsed
        ),
        (
            {"classes": {"set": "imagenet-1k", "subset": ["tench", "unicorn"]}},
            "{recipe}: classes.subset: unknown class 'unicorn' in imagenet-1k",
        ),
        (
            {"generator": {"model": "/nonexistent/tiny-sd"}},
            "{recipe}: generator.model: no such model directory: '/nonexistent/tiny-sd' (model_index.json missing)",
        ),
        (
            {"generator": {"model": "synthset-testing:huge-sd"}},
            "{recipe}: generator.model: tiny model 'synthset-testing:huge-sd' is not built",
        ),
    ],
)
def test_plan_bad_input_one_line_no_run_left(write_recipe, capsys, changes, expected):
    recipe = write_recipe(changes)
    assert main(["plan", str(recipe)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("synthset: error: " + expected.format(recipe=recipe))
    assert not (recipe.parent / "runs").exists()


def test_exit_status_and_stderr_from_a_real_process(write_recipe):
    recipe = write_recipe({"generator": {"stepz": 3}})
    result = synthset_cli("plan", str(recipe))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"synthset: error: {recipe}: generator.stepz: unknown key"]
    assert result.stdout == ""


def test_generate_and_build_need_a_planned_run(tmp_path: Path, capsys):
    for stage in ("generate", "build"):
        assert main([stage, str(tmp_path / "nothing")]) == 2
        assert (
            "not a planned run directory (recipe.lock.yaml missing; run `synthset plan` first)"
            in capsys.readouterr().err
        )


def test_help_is_fast_and_lists_the_stages():
    started = time.monotonic()
    result = synthset_cli("--help")
    elapsed = time.monotonic() - started
    assert result.returncode == 0
    for stage in ("plan", "generate", "build", "tiny-models"):
        assert stage in result.stdout
    assert "accelerate launch -m synthset generate" in result.stdout
    # Heavy imports stay lazy: nothing of torch, diffusers or datasets is loaded for --help.
    probe = synthset_cli_imports()
    assert probe == [], f"--help imported {probe}"
    assert elapsed < 10  # generous: the import check above is the real guard


def synthset_cli_imports() -> list[str]:
    import subprocess
    import sys

    code = (
        "import sys; from synthset.cli import build_parser; build_parser().format_help(); "
        "print(','.join(m for m in ('torch', 'diffusers', 'datasets', 'transformers', 'pyarrow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    return [m for m in out.split(",") if m]
