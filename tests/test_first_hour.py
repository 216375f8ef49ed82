"""The first hour of a new user: each error path is one exact line, a rebuild keeps the card, files are readable."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import TINY_QUALITY
from helpers import REPO, synthset_command

from synthset import api
from synthset.classes import NAMED_SETS
from synthset.cli import main

KNOWN_SETS = ", ".join(NAMED_SETS)


def error_line(capsys, argv: list[str]) -> str:
    """The CLI's stderr for argv: exit status 2 and exactly one line."""
    capsys.readouterr()  # what earlier calls printed
    assert main(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_a_directory_given_for_a_recipe(tmp_path: Path, capsys, write_recipe):
    assert error_line(capsys, ["plan", str(tmp_path)]) == (
        f"synthset: error: {tmp_path}: is a directory, not a recipe file"
    )
    run = api.plan(write_recipe()).summary.run.root
    assert error_line(capsys, ["plan", "--check", str(run)]) == (
        f"synthset: error: {run}: is a directory, not a recipe file (a run directory: its recipe is recipe.lock.yaml)"
    )


def test_a_class_set_typo_lists_the_known_sets_and_the_closest(write_recipe, capsys):
    recipe = write_recipe({"classes": {"set": "imagenet1k"}})
    assert error_line(capsys, ["plan", "--check", str(recipe)]) == (
        f"synthset: error: {recipe}: classes.set: unknown class set 'imagenet1k' (named sets: {KNOWN_SETS}; "
        "or a .txt, .csv or .yaml class list file); did you mean 'imagenet-1k'?"
    )
    recipe = write_recipe({"classes": {"set": "caltech-101"}})
    assert error_line(capsys, ["plan", str(recipe)]).endswith("; did you mean 'caltech101'?")
    recipe = write_recipe({"classes": {"set": "zzzz"}})
    assert error_line(capsys, ["plan", str(recipe)]).endswith("or a .txt, .csv or .yaml class list file)")


def test_an_unresolvable_hub_host_fails_at_once():
    """No retries for a host name that does not resolve: one line, not minutes of `retry k of 6` warnings."""
    env = {**os.environ, "HF_ENDPOINT": "https://hub.invalid"}
    result = subprocess.run(
        [*synthset_command(), "versions", "org/x"], capture_output=True, text=True, cwd=REPO, env=env, timeout=300
    )
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "retry" not in result.stderr, lines
    assert lines[0].startswith("synthset: error: org/x: cannot reach https://hub.invalid: ")


def test_a_local_looking_dataset_path_is_never_a_hub_id(write_recipe, capsys, tmp_path: Path):
    recipe = write_recipe({"real_images": {"dataset": "./no-such-photos"}})
    assert error_line(capsys, ["plan", "--check", str(recipe)]) == (
        f"synthset: error: {recipe}: real_images.dataset: no such directory './no-such-photos'"
    )
    recipe = write_recipe({"real_images": {"dataset": str(tmp_path / "gone")}})
    assert error_line(capsys, ["plan", "--check", str(recipe)]) == (
        f"synthset: error: {recipe}: real_images.dataset: no such directory '{tmp_path / 'gone'}'"
    )


def test_plan_check_opens_real_images_and_says_what_it_did_not_load(write_recipe, capsys, tmp_path: Path):
    from PIL import Image

    for wnid in ("n01440764", "n01443537"):  # tench and goldfish: two of the three classes
        (tmp_path / "photos" / wnid).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "photos" / wnid / "a.png")
    recipe = write_recipe(
        {
            "configs": [{"name": "lar", "strategy": "lar", "images_per_class": 2}],
            "lar": {"clip_model": "synthset-testing:tiny-clip"},
            "real_images": {"folder": str(tmp_path / "photos")},
            "quality": TINY_QUALITY,
        }
    )
    capsys.readouterr()
    assert main(["plan", "--check", str(recipe)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2:] == [
        f"real images: 2 images of 2 of 3 classes in folder '{tmp_path / 'photos'}'",
        "not loaded by --check (plan and generate load them): LAR's CLIP (synthset-testing:tiny-clip), "
        "the quality gate's checker, the quality gate's clip_model",
    ]


def test_an_output_dir_url_is_refused_naming_run_dir(write_recipe, capsys):
    recipe = write_recipe({"output_dir": "s3://bucket/runs"})
    assert error_line(capsys, ["plan", str(recipe)]) == (
        f"synthset: error: {recipe}: output_dir: 's3://bucket/runs' is a URL; output_dir is a local "
        "directory (for an object-store run: synthset plan RECIPE --run-dir s3://bucket/runs/<name>)"
    )


@pytest.fixture
def built_with_card(write_recipe) -> Path:
    recipe = write_recipe({"quality": TINY_QUALITY})
    run = api.plan(recipe).summary.run.root
    api.generate(run)
    api.build(run)
    api.card(run, license="apache-2.0")
    return run


def test_a_rebuild_of_unchanged_data_keeps_the_card(built_with_card: Path, write_recipe):
    dataset = built_with_card / "dataset"
    kept = {name: (dataset / name).read_bytes() for name in ("README.md", "samples.jpg", "clip_scores.png")}
    assert "<!-- synthset-card provenance=" in kept["README.md"].decode()
    result = api.build(built_with_card)
    assert "card: the data is unchanged: the card, its figures and pages were kept" in result.lines()
    assert {name: (dataset / name).read_bytes() for name in kept} == kept
    # Two more images per class: the card no longer describes the data, and the build says so.
    grown = write_recipe({"quality": TINY_QUALITY, "configs": [{"name": "naive", "images_per_class": 7}]})
    api.plan(grown)
    api.generate(built_with_card)
    result = api.build(built_with_card)
    assert (
        f"card: the data changed: the card in {dataset} was dropped; run `synthset card {built_with_card}` to "
        "render it again"
    ) in result.lines()
    assert "<!-- synthset-card " not in (dataset / "README.md").read_text()
    assert not (dataset / "samples.jpg").exists()


def test_run_files_follow_the_umask_and_a_cpu_run_spends_no_gpu_hours(write_recipe):
    old = os.umask(0o022)
    try:
        run = api.plan(write_recipe()).summary.run.root
        api.generate(run)
        api.build(run)
    finally:
        os.umask(old)
    assert stat.S_IMODE((run / "dataset").stat().st_mode) == 0o755
    report = str(api.status(run)).splitlines()
    assert report[2].startswith("worker-hours spent: ") and report[2].endswith(" (no GPU worker)")
