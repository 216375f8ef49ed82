"""Your own classes: a class list file (or a dataset's label names) through new -> plan -> generate -> build -> load."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from synthset import api
from synthset.classes import load_class_set, load_recipe_classes
from synthset.cli import main
from synthset.errors import RecipeError
from synthset.recipe import ClassSetSpec, load_recipe

FOXES = ["red fox", "arctic fox", "fennec fox"]


@pytest.fixture
def in_tmp(tmp_path: Path):
    """Run in tmp_path, as a user runs `synthset new` in their project directory."""
    old = Path.cwd()
    os.chdir(tmp_path)
    yield tmp_path
    os.chdir(old)


def test_new_recipe_is_planned_generated_built_and_loaded(in_tmp: Path, capsys):
    from datasets import load_dataset

    Path("foxes.txt").write_text("# my classes\n" + "\n".join(FOXES) + "\n")
    argv = ["new", "--classes", "foxes.txt", "--model", "synthset-testing:tiny-sd", "--images-per-class", "2"]
    assert main([*argv, "--strategies", "naive", "lar_cd_sd"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "wrote foxes.yaml: 3 classes, naive, lar_cd_sd on synthset-testing:tiny-sd",
        "next: synthset plan --check foxes.yaml   (then synthset plan foxes.yaml)",
    ]
    text = Path("foxes.yaml").read_text()
    assert text.startswith("# foxes: 3 classes from foxes.txt, written by `synthset new`.\n")
    recipe = load_recipe("foxes.yaml")
    assert (recipe.builder, recipe.classes.set) == ("synth_classes", "foxes.txt")
    assert [c.name for c in recipe.configs] == ["naive", "lar_cd_sd"]
    assert str(api.check("foxes.yaml")).splitlines()[0] == (
        "recipe OK: 12 images over 3 classes (naive: 6, lar_cd_sd: 6)"
    )
    # A smaller generator keeps the test fast; everything else is as `new` wrote it.
    data = yaml.safe_load(text)
    data["generator"].update(width=32, height=32, steps=2, batch_size=4)
    Path("foxes.yaml").write_text(yaml.safe_dump(data))
    api.plan("foxes.yaml")
    api.generate("runs/foxes")
    api.build("runs/foxes")
    for config in ("naive", "lar_cd_sd"):
        loaded = load_dataset("runs/foxes/dataset", config, split="train")
        assert loaded.features["label"].names == FOXES
        assert sorted(loaded["label"]) == [0, 0, 1, 1, 2, 2]
        assert sorted(set(loaded["class_name"])) == sorted(FOXES)
    prompts = pq.read_table("runs/foxes/plan.parquet", columns=["config", "prompt"]).to_pylist()
    assert all("fox" in row["prompt"] for row in prompts)


def test_new_refuses_augcond_beside_text_strategies_and_an_existing_file(in_tmp: Path):
    Path("foxes.txt").write_text("\n".join(FOXES))
    with pytest.raises(RecipeError, match=r"^--strategies: augcond needs an unCLIP model, so it goes in a recipe"):
        api.new("foxes.txt", strategies=["naive", "augcond"], real_images="photos")
    with pytest.raises(RecipeError, match=r"^--real-images: augcond is conditioned on your real images"):
        api.new("foxes.txt", strategies=["augcond"])
    api.new("foxes.txt", model="synthset-testing:tiny-sd")
    with pytest.raises(RecipeError, match=r"^foxes.yaml: already exists; choose another --out or pass --force$"):
        api.new("foxes.txt", model="synthset-testing:tiny-sd")


def test_new_augcond_recipe_is_conditioned_on_your_photos(in_tmp: Path):
    from PIL import Image

    Path("foxes.txt").write_text("\n".join(FOXES))
    for name in FOXES:  # a folder of class folders, named as the class list names them
        (in_tmp / "photos" / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (16, 16), (40 * i, 80, 120)).save(in_tmp / "photos" / name / f"{i}.png")
    api.new("foxes.txt", model="synthset-testing:tiny-unclip", strategies=["augcond"], real_images="photos")
    recipe = load_recipe("foxes.yaml")
    assert (recipe.builder, recipe.real_images.folder, recipe.configs[0].strategy) == (
        "synth_classes", Path("photos"), "augcond",
    )  # fmt: skip
    lines = str(api.check("foxes.yaml")).splitlines()
    assert lines[0] == "recipe OK: 300 images over 3 classes (augcond: 300); augcond conditions on 9 real images"
    assert lines[2] == "real images: 9 images of 3 of 3 classes in folder 'photos'"


def test_csv_class_list_gives_descriptions_and_wordnet_glosses(tmp_path: Path):
    path = tmp_path / "animals.csv"
    path.write_text("name,description,wnid\ncrane,a large long-necked wading bird,\ntench,,n01440764\nmy robot,,\n")
    classes = load_class_set(str(path))
    assert [(c.label, c.class_name, c.gloss) for c in classes] == [
        (0, "crane", "a large long-necked wading bird"),
        (
            1,
            "tench",
            "freshwater dace-like game fish of Europe and western Asia noted for ability to survive outside water",
        ),
        (2, "my robot", None),
    ]
    (tmp_path / "bad.csv").write_text("class,notes\ncrane,x\n")
    with pytest.raises(RecipeError, match=r"bad.csv: a CSV class list needs a header row with a 'name' column$"):
        load_class_set(str(tmp_path / "bad.csv"))


def test_lar_meanings_for_names_outside_imagenet(write_recipe, tmp_path: Path):
    """A user's description is a candidate; a name WordNet knows brings its senses; an unknown one has none."""
    path = tmp_path / "mine.csv"
    path.write_text("name,description\ncrane,a construction machine that lifts heavy loads\nzorblax,\narctic fox,\n")
    recipe = write_recipe(
        {
            "classes": {"set": str(path), "limit": None},
            "configs": [{"name": "lar", "strategy": "lar", "images_per_class": 1}],
            "prompts": {"llm": {"backend": "template"}},
            "lar": {"clip_model": "synthset-testing:tiny-clip"},
        }
    )
    summary = api.plan(recipe).summary
    rows = pq.read_table(summary.run.classes_file).to_pylist()
    crane, zorblax, arctic = rows
    assert crane["lar_candidates"][0] == "a construction machine that lifts heavy loads"
    assert len(crane["lar_candidates"]) >= 3  # the user's meaning, then WordNet's birds and machines
    assert (crane["lar_source"], crane["lar_meaning"]) == ("no-real-images", crane["lar_candidates"][0])
    assert (zorblax["lar_source"], zorblax["lar_meaning"]) == ("no-candidates", None)
    assert (arctic["lar_source"], arctic["lar_meaning"]) == (
        "single",
        "thickly-furred fox of Arctic regions; brownish in summer and white in winter",
    )


def test_class_names_from_a_dataset_source(tmp_path: Path):
    import datasets

    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=["golden_retriever", "tabby cat"])}
    )
    datasets.Dataset.from_dict({"image": [], "label": []}, features=features).to_parquet(
        str(tmp_path / "src" / "train.parquet")
    )
    classes = load_recipe_classes(ClassSetSpec(dataset=str(tmp_path / "src")))
    assert [(c.class_name, c.label_name) for c in classes] == [
        ("golden retriever", "golden_retriever"),
        ("tabby cat", "tabby cat"),
    ]
    with pytest.raises(RecipeError, match=r"^classes.dataset: no such directory './nowhere'$"):
        load_recipe_classes(ClassSetSpec(dataset="./nowhere"))
    with pytest.raises(RecipeError, match=r"^classes.label_column: 'kind' of .* is not a ClassLabel"):
        load_recipe_classes(ClassSetSpec(dataset=str(tmp_path / "src"), label_column="kind"))


def test_default_builder_follows_the_class_set(write_recipe, tmp_path: Path):
    (tmp_path / "foxes.txt").write_text("\n".join(FOXES))
    assert load_recipe(write_recipe()).builder == "synth_imagenet"
    assert load_recipe(write_recipe({"classes": {"set": str(tmp_path / "foxes.txt")}})).builder == "synth_classes"
    assert load_recipe(write_recipe({"classes": {"set": "caltech101"}})).builder == "synth_classes"
    named = load_recipe(write_recipe({"builder": "synth_imagenet", "classes": {"set": str(tmp_path / "foxes.txt")}}))
    with pytest.raises(RecipeError, match=r"^classes.set: synth_imagenet needs imagenet-1k, not '.*foxes.txt' "):
        api.check(named)
