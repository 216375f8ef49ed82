"""`synthset card`: the dataset card's YAML round-trips, its body tells how the data was made, and the
quality figures are right where they can be checked exactly (Vendi on known embeddings)."""

from __future__ import annotations

import math
from pathlib import Path

import datasets
import numpy as np
import pytest
import yaml
from conftest import BASE_RECIPE, deep_update
from huggingface_hub import DatasetCard
from PIL import Image

from synthset.builders.assemble import build_dataset
from synthset.cards import write_card
from synthset.cards.grid import LABEL_WIDTH
from synthset.cards.license import resolve_license
from synthset.cards.quality import vendi_score
from synthset.cli import main
from synthset.errors import SynthsetError
from synthset.generation.plan import plan_run
from synthset.generation.runner import generate_run
from synthset.recipe import load_recipe

TWO_CONFIGS = {
    "configs": [
        {"name": "naive", "strategy": "naive", "images_per_class": 5},
        {"name": "lar", "strategy": "lar", "images_per_class": 2},
    ]
}


@pytest.fixture(scope="module")
def built_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("card")
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(deep_update({**BASE_RECIPE, "output_dir": str(root / "runs")}, TWO_CONFIGS)))
    recipe = load_recipe(path)
    plan_run(recipe)
    generate_run(recipe.run_dir)
    build_dataset(recipe.run_dir)
    return Path(recipe.run_dir)


def _yaml_header(readme: Path) -> dict:
    return yaml.safe_load(readme.read_text(encoding="utf-8").split("---")[1])


# -- Vendi score on embeddings whose answer is known ---------------------------------------------------
def _brute_force_vendi(x: np.ndarray) -> float:
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    eigenvalues = np.linalg.eigvalsh(x @ x.T / len(x))
    eigenvalues = eigenvalues[eigenvalues > 1e-12]
    return float(np.exp(-np.sum(eigenvalues * np.log(eigenvalues))))


def test_vendi_score_on_known_embeddings():
    rng = np.random.default_rng(0)
    same = np.tile(rng.normal(size=(1, 16)), (7, 1))
    assert vendi_score(same) == pytest.approx(1.0, abs=1e-9)  # identical images: one effective image
    assert vendi_score(np.eye(5) * 3.0) == pytest.approx(5.0, abs=1e-9)  # orthogonal: all distinct; scale-free
    # clusters of 3 and 1 orthogonal images: eigenvalues 3/4 and 1/4
    clusters = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert vendi_score(clusters) == pytest.approx(math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))))
    # two images at 60 degrees: K = [[1, .5], [.5, 1]], eigenvalues of K/2 are 3/4 and 1/4 as well
    sixty = np.array([[1.0, 0.0], [0.5, math.sqrt(3) / 2]])
    assert vendi_score(sixty) == pytest.approx(math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))))
    # both code paths (n < d uses the n x n matrix, n > d the d x d one) agree with the definition
    for n, d in ((6, 32), (40, 8)):
        x = rng.normal(size=(n, d))
        assert vendi_score(x) == pytest.approx(_brute_force_vendi(x), rel=1e-9)
        assert 1.0 <= vendi_score(x) <= min(n, d) + 1e-9


# -- the card ------------------------------------------------------------------------------------------
def test_card_yaml_round_trips_and_keeps_configs(built_run: Path):
    readme = built_run / "dataset" / "README.md"
    built = _yaml_header(readme)
    builder_section = "## naive: a section only the builder knows\n\n| bucket | classes |\n|---|---|\n| few | 3 |"
    readme.write_text(readme.read_text() + "\n" + builder_section + "\n")  # as the fill-up builder does
    result = write_card(built_run, license="apache-2.0", repo_id="org/synth")

    card = DatasetCard.load(readme)  # the Hub's parser
    data = card.data.to_dict()
    assert data["license"] == "apache-2.0"
    assert data["task_categories"] == ["image-classification"]
    assert data["size_categories"] == ["n<1K"]
    assert data["tags"] == ["synthetic", "lar", "naive"]
    assert data["pretty_name"] == "t"
    assert data["configs"] == built["configs"]  # exactly what `synthset build` wrote with the datasets classes
    assert data["dataset_info"] == built["dataset_info"]
    # what datasets makes of it: both configs, and the directory still loads
    assert sorted(datasets.get_dataset_config_names(str(readme.parent))) == ["lar", "naive"]
    assert datasets.load_dataset(str(readme.parent), "lar", split="train").num_rows == 6
    # dumping the loaded card again gives the same YAML: nothing is lost in a round trip
    assert DatasetCard(str(card)).data.to_dict() == data

    body = card.text
    lock = yaml.safe_load((built_run / "recipe.lock.yaml").read_text())
    assert f"<!-- synthset-card provenance={lock['provenance']} -->" in body
    assert lock["resolved"]["model_revision"] in body  # the generator is named with its revision
    assert "synthset-testing:tiny-sd" in body
    assert "| `naive` | naive | train | 15 | 3 | 5 / 5 / 5 | 3 |" in body
    assert "| `lar` | lar | train | 6 | 3 | 2 / 2 / 2 | 1 |" in body
    assert "- a photo of a tench" in body and "- a photo of a goldfish" in body
    assert 'load_dataset("org/synth", "naive", split="train")' in body
    assert "synthset plan recipe.yaml" in body and f"synthset build {lock['recipe']['output_dir']}/t" in body
    assert "![One row of samples per config](samples.jpg)" in body
    assert "arXiv:2312.02253" in body and "arXiv:2502.04475" in body
    assert "## Limitations and biases" in body
    assert "| label ambiguity resolution (CLIP) | " in body  # a lar config: how meanings were chosen
    assert "Not computed for this release" in body  # no CLIP model given
    assert result.quality is None
    assert body.count(builder_section) == 1  # the builder's own section is kept, once
    write_card(built_run, license="apache-2.0", repo_id="org/synth")
    assert DatasetCard.load(readme).text == body  # rendering again changes nothing

    grid = Image.open(built_run / "dataset" / "samples.jpg")
    assert grid.size == (LABEL_WIDTH + 8 * 96, 2 * 96)  # one row per config
    pixels = np.asarray(grid.convert("L"), dtype=np.int16)
    rows = {name: pixels[i * 96 : (i + 1) * 96] for i, name in enumerate(c["config_name"] for c in data["configs"])}
    assert rows["naive"][:, LABEL_WIDTH:].std(axis=0).min() > 1  # naive: 8 images (3 classes, then repeats)
    assert rows["lar"][:, LABEL_WIDTH : LABEL_WIDTH + 6 * 96].std(axis=0).min() > 1  # lar: its 6 images...
    assert rows["lar"][:, LABEL_WIDTH + 6 * 96 :].min() > 240  # ...and blank after them


def test_card_refuses_to_guess_the_license(built_run: Path, capsys):
    before = (built_run / "dataset" / "README.md").read_bytes()
    assert main(["card", str(built_run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("synthset: error: license: the generator ")
    assert "its model card states no license; add `license: <hub license id>` to the recipe" in err[0]
    assert "or pass --license" in err[0]
    assert (built_run / "dataset" / "README.md").read_bytes() == before  # nothing half-written


def test_license_comes_from_the_model_card_and_conflicts_are_refused(tmp_path: Path):
    model = tmp_path / "model"
    model.mkdir()
    lock = {
        "recipe": {"generator": {"model": str(model)}},
        "resolved": {"model": str(model), "model_source": "local", "model_revision": "sha256:0"},
    }
    with pytest.raises(SynthsetError, match="states no license; add `license: <hub license id>` to the recipe"):
        resolve_license(lock)
    assert resolve_license(lock, "mit").license == "mit"
    (model / "README.md").write_text("---\nlicense: creativeml-openrail-m\n---\n# a model\n")
    found = resolve_license(lock)
    assert (found.license, found.source) == ("creativeml-openrail-m", f"model card of {model}")
    lock["recipe"]["license"] = "creativeml-openrail-m"  # agreeing is fine
    assert resolve_license(lock).license == "creativeml-openrail-m"
    lock["recipe"]["license"] = "mit"
    with pytest.raises(SynthsetError, match="says 'creativeml-openrail-m' but the recipe .* says 'mit'"):
        resolve_license(lock)


def test_quality_figures_with_a_tiny_open_clip(built_run: Path):
    result = write_card(built_run, license="apache-2.0", clip_model="synthset-testing:tiny-clip", quality_per_class=4)
    figures = {q.config: q for q in result.quality}
    assert set(figures) == {"naive", "lar"}
    naive, lar = figures["naive"], figures["lar"]
    assert (naive.images, naive.classes, lar.images, lar.classes) == (12, 3, 6, 3)  # capped at 4 per class
    for q in (naive, lar):
        assert 0.0 <= q.mean_clip_score <= 100.0
        assert 1.0 <= q.mean_vendi <= min(4, q.images // q.classes) + 1e-6
    body = (built_run / "dataset" / "README.md").read_text()
    assert "`synthset-testing:tiny-clip` at revision `sha256:" in body
    assert f"| `naive` | 12 | 3 | {naive.mean_clip_score:.2f} | {naive.mean_vendi:.2f} |" in body
    # the YAML is unchanged by the optional figures
    assert _yaml_header(built_run / "dataset" / "README.md")["license"] == "apache-2.0"
