"""The Python API: every stage is one call, on a local run or an s3:// run from a fresh host.

The s3:// test runs against moto's S3 server (the S3 wire protocol on loopback), and each stage gets a new,
empty scratch directory, as a stage started on another machine would: nothing may rely on files a previous
stage left in scratch, and nothing outside `synthset.run` may know that the run is not local.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from s3server import make_bucket, moto_s3_server, s3_environment

import synthset
from synthset import api
from synthset.errors import RecipeError, RunStateError, StoreError, SynthsetError

RECIPE = {
    "configs": [{"name": "naive", "strategy": "naive", "images_per_class": 4}],
    "storage": {"format": "png", "shard_size": 4, "row_group_size": 4},
}


@pytest.fixture
def fresh_host(tmp_path, monkeypatch):
    """Call it before a stage: that stage starts on a host whose scratch disk is empty."""
    hosts = iter(range(100))

    def move() -> Path:
        scratch = tmp_path / f"scratch-{next(hosts)}"
        monkeypatch.setenv("SYNTHSET_SCRATCH", str(scratch))
        return scratch

    return move


def test_every_stage_runs_from_python_on_an_s3_run_from_fresh_hosts(tmp_path, write_recipe, fresh_host):
    import datasets
    import s3fs

    recipe = write_recipe(RECIPE)
    with moto_s3_server() as endpoint, s3_environment(endpoint):
        make_bucket("runs")
        url = "s3://runs/api"
        fresh_host()
        planned = api.plan(recipe, run_dir=url)
        assert (planned.summary.rows, planned.summary.shards, planned.run) == (12, 3, url)
        fresh_host()
        made = api.generate(url)
        assert (made.summary.images_made, made.summary.shards_made, made.summary.all_shards_done) == (12, 3, True)
        fresh_host()
        assert "shards: 3 done, 0 being made" in str(api.status(url))
        fresh_host()
        checked = api.validate(url)
        assert checked.ok and [r.config for r in checked.reports] == ["naive"]
        fresh_host()
        built = api.build(url)
        assert (built.dataset, built.on_store) == (f"{url}/dataset", True)
        assert [(s.config, s.num_examples) for s in built.splits] == [("naive", 12)]
        fresh_host()
        carded = api.card(url, license="apache-2.0")
        assert carded.card.license.license == "apache-2.0"
        fresh_host()
        reviewed = api.review(url)
        assert reviewed.page.configs[0].published == 12
        loaded = datasets.load_dataset(
            "parquet", data_files={"train": f"{url}/dataset/naive/b0/train-*.parquet"}, split="train"
        )
        assert loaded.num_rows == 12
        readme = s3fs.S3FileSystem(skip_instance_cache=True).cat("runs/api/dataset/README.md").decode()
        assert "license: apache-2.0" in readme  # the card stage put its README back in the store
        with pytest.raises(RunStateError, match="clean works on local run directories"):
            api.clean(url)


def test_a_local_run_through_the_api_prints_the_lines_the_cli_printed(tmp_path, write_recipe):
    recipe = write_recipe(RECIPE)
    run = tmp_path / "runs" / "t"
    assert str(api.plan(recipe)).splitlines() == [
        "planned 12 images in 3 shards (naive: 12)",
        "hub: 9 files in 1 data folders (fullest: 7 of 9,000 entries), about 19.7 KB, 1 commits of 50 files "
        "per version",
        f"run directory: {run}",
        f"next: accelerate launch -m synthset generate {run}",
    ]
    generated = api.generate(run).lines()
    assert (
        generated[0].startswith("rank 0/1 (worker ")
        and " made 12 images in 3 shards (0 of them redone; " in (generated[0])
    )
    assert generated[1:] == [f"all shards done; next: synthset build {run}"]
    assert str(api.build(run)).splitlines() == [
        "naive/train: 12 images in 3 files",
        f"dataset: {run / 'dataset'}",
        "load it:",
        f'  datasets.load_dataset("{run / "dataset"}", "naive", split="train")',
    ]
    assert str(api.clean(run)) == f"{run}: nothing to clean"
    cli = subprocess.run(
        [sys.executable, "-m", "synthset", "clean", str(run)], capture_output=True, text=True, check=True
    )
    assert cli.stdout == f"{run}: nothing to clean\n"


def test_the_stages_are_importable_from_synthset_without_loading_torch():
    code = (
        "import sys, synthset; f = synthset.plan; "
        "assert f is __import__('synthset.api', fromlist=['plan']).plan; "
        "heavy = [m for m in ('torch', 'diffusers', 'datasets', 'transformers') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    for name in api.STAGES:
        assert callable(getattr(api, name)) and getattr(api, name).__doc__, name
    with pytest.raises(AttributeError):
        synthset.no_such_stage  # noqa: B018


def test_errors_are_typed_and_still_synthset_errors(tmp_path, write_recipe):
    with pytest.raises(RunStateError, match="not a planned run directory"):
        api.generate(tmp_path / "nothing")
    with pytest.raises(StoreError):
        api.status("s3://")  # no bucket
    bad = write_recipe({"generator": {"stepz": 3}})
    with pytest.raises(RecipeError, match="generator.stepz: unknown key"):
        api.plan(bad)
    assert all(issubclass(e, SynthsetError) for e in (RecipeError, RunStateError, StoreError))


def test_synthset_train_is_the_api_function_even_after_the_harness_is_imported():
    """The harness package is `synthset.training`, so `synthset.train` stays the stage, whatever is imported."""
    code = "import synthset, synthset.training.config; assert synthset.train is synthset.api.train"
    subprocess.run([sys.executable, "-c", code], check=True)
