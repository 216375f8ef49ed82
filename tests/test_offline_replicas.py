"""Offline test mode: a recipe naming a real Hub id runs on that model's replica, and only in test mode."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from synthset import models
from synthset.builders.assemble import build_dataset
from synthset.errors import SynthsetError
from synthset.generation.plan import plan_run
from synthset.generation.runner import generate_run
from synthset.models import REPLICA_ENV, RESOLVER_ENV, local_model_dir, resolve_pipeline
from synthset.recipe import load_recipe
from synthset.testing.replicas import PIPELINE_REPLICAS, REPLICAS, replica_path

SDXL = "stabilityai/stable-diffusion-xl-base-1.0"


@pytest.fixture(scope="module")
def small_replicas(synthset_home: Path) -> dict[str, Path]:
    return {name: replica_path(name, "small") for name in REPLICAS}


def test_a_users_run_resolves_a_hub_id_on_the_hub(small_replicas, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the variable a Hub id goes to the Hub, even though its replica sits in SYNTHSET_HOME."""
    monkeypatch.delenv(REPLICA_ENV, raising=False)
    asked = []
    monkeypatch.setattr(models, "_hub_commit", lambda model, revision, field: asked.append(model) or "c0ffee" * 6)
    resolved = resolve_pipeline(SDXL, None)
    assert (resolved.load_path, resolved.source, resolved.revision, asked) == (SDXL, "hub", "c0ffee" * 6, [SDXL])
    assert local_model_dir(SDXL, "generator.model") is None


def test_a_users_run_with_the_variable_empty_is_a_users_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REPLICA_ENV, "")
    assert local_model_dir(SDXL, "generator.model") is None


def test_test_mode_resolves_a_hub_id_to_its_replica(small_replicas, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REPLICA_ENV, "small")
    monkeypatch.setattr(models, "_hub_commit", lambda *a: pytest.fail("test mode asked the Hub"))
    resolved = resolve_pipeline(SDXL, "main")
    assert Path(resolved.load_path) == small_replicas["sdxl-base"].resolve()
    assert resolved.source == "local" and resolved.revision.startswith("sha256:") and resolved.hub_revision is None
    assert resolve_pipeline("runwayml/stable-diffusion-v1-5", None).load_path == str(small_replicas["sd15"].resolve())


def test_test_mode_errors_are_one_line(small_replicas, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(REPLICA_ENV, "small")
    with pytest.raises(SynthsetError, match=r"^generator.model: SYNTHSET_TEST_REPLICAS is set but 'org/model' has "
                                            r"no offline replica \(known: CompVis/"):  # fmt: skip
        resolve_pipeline("org/model", None)
    monkeypatch.setenv(REPLICA_ENV, "full")
    monkeypatch.setenv("SYNTHSET_HOME", str(tmp_path))
    with pytest.raises(SynthsetError, match=r"^generator.model: the full replica of '.*xl-base-1.0' is not built in "
                                            r".*\(run `synthset tiny-models --replicas full`"):  # fmt: skip
        resolve_pipeline(SDXL, None)
    monkeypatch.setenv(REPLICA_ENV, "yes")
    with pytest.raises(SynthsetError, match=r"^SYNTHSET_TEST_REPLICAS='yes': must be one of full, small \(or unset\)$"):
        resolve_pipeline(SDXL, None)


def test_test_mode_without_a_resolver_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """The replica table is the test package's: the product reaches it only through the resolver named."""
    monkeypatch.setenv(REPLICA_ENV, "small")
    for named in ("", "synthset.testing.replicas", "synthset.testing.replicas:no_such_function", "no.such:module"):
        monkeypatch.setenv(RESOLVER_ENV, named)
        expected = (
            f"SYNTHSET_TEST_REPLICAS is set but SYNTHSET_TEST_RESOLVER={named!r} names no resolver (module:function)"
        )
        with pytest.raises(SynthsetError) as raised:
            resolve_pipeline(SDXL, None)
        assert str(raised.value) == expected


def test_test_mode_leaves_local_paths_alone(small_replicas, monkeypatch, tmp_path: Path) -> None:
    """A relative path that looks like `org/name` is still the directory when it exists."""
    monkeypatch.setenv(REPLICA_ENV, "small")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "demo").mkdir(parents=True)
    assert local_model_dir("runs/demo", "real_images.dataset") == Path("runs/demo")


def _recipe(name: str, tmp_path: Path, write_recipe) -> Path:
    replica = REPLICAS[name]
    changes = {
        "name": f"offline-{name}",
        "classes": {"set": "imagenet-1k", "limit": 1},
        "configs": [{"name": "naive", "strategy": "naive", "images_per_class": 2}],
        "generator": {
            "model": replica.hub_id,
            "scheduler": "dpm++",
            "steps": 2,
            "width": 64,
            "height": 64,
            "batch_size": 2,
        },  # fmt: skip
        "storage": {"format": "png", "shard_size": 2, "row_group_size": 2},
    }
    if name == "sd21-unclip":
        folder = tmp_path / "real" / "n01440764"
        folder.mkdir(parents=True)
        rng = np.random.default_rng(0)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / f"{i}.png")
        changes["configs"] = [{"name": "augcond", "strategy": "augcond", "images_per_class": 2}]
        changes["real_images"] = {"folder": str(tmp_path / "real")}
        changes["generator"]["noise_level"] = 50
    return write_recipe(changes, f"{name}.yaml")


@pytest.mark.parametrize("name", PIPELINE_REPLICAS)
def test_recipe_naming_the_real_model_runs_end_to_end_on_its_replica(
    small_replicas, name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, write_recipe
) -> None:
    """plan -> generate -> build -> load_dataset, the recipe naming the Hub id (small replicas, 64 px)."""
    monkeypatch.setenv(REPLICA_ENV, "small")
    recipe = load_recipe(_recipe(name, tmp_path, write_recipe))
    plan_run(recipe)
    summary = generate_run(recipe.run_dir)
    assert (summary.images_made, summary.all_shards_done) == (2, True)
    dataset_dir, _ = build_dataset(recipe.run_dir)
    config = recipe.configs[0].name
    rows = datasets.load_dataset(str(dataset_dir), config, split="train")
    assert len(rows) == 2 and rows[0]["image"].size == (64, 64)
    assert rows[0]["model"] == REPLICAS[name].hub_id and rows[0]["scheduler"] == "DPMSolverMultistepScheduler"
    prediction = "v_prediction" if name in ("sd21", "sd21-unclip") else "epsilon"
    assert rows[0]["generator_options"] == {"prediction_type": prediction, "timestep_spacing": "leading",
                                            "channels_last": False, "compile": False, "vae_slicing": False,
                                            "vae_tiling": False}  # fmt: skip
