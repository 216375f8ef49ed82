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
from synthset.cards.escape import markdown_text
from synthset.cards.grid import HEADER_HEIGHT, LABEL_WIDTH
from synthset.cards.license import resolve_license
from synthset.cards.quality import vendi_score
from synthset.classes import load_class_set
from synthset.cli import main
from synthset.errors import SynthsetError
from synthset.generation.plan import plan_run
from synthset.generation.runner import generate_run
from synthset.models import ResolvedModel
from synthset.recipe import load_recipe
from synthset.run.paths import RunDir
from synthset.run.portable import portable

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
    assert data["tags"] == ["synthetic", "synthset", "lar", "naive"]
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
    assert "synthset plan recipe.yaml" in body and "\nsynthset build runs/t\n" in body  # not the tmp dir it is in
    assert "![One row of samples per config](samples.jpg)" in body
    assert "arXiv:2312.02253" in body and "arXiv:2502.04475" in body
    assert "## Bias, Risks, and Limitations" in body
    assert "| label ambiguity resolution (CLIP) | " in body  # a lar config: how meanings were chosen
    assert "Not computed for this release" in body  # no CLIP model given
    assert result.quality is None
    assert body.count(builder_section) == 1  # the builder's own section is kept, once
    write_card(built_run, license="apache-2.0", repo_id="org/synth")
    assert DatasetCard.load(readme).text == body  # rendering again changes nothing

    grid = Image.open(built_run / "dataset" / "samples.jpg")
    assert grid.size == (LABEL_WIDTH + 3 * 96, HEADER_HEIGHT + 2 * 96)  # a column per class, a row per config
    pixels = np.asarray(grid.convert("RGB"), dtype=np.int16)
    for row, config in enumerate(["naive", "lar"]):  # the ladder's order, whatever order the README lists them
        rows = datasets.load_dataset(str(readme.parent), config, split="train")
        for label in range(3):  # column `label` shows that class's first image, in every row
            image = rows[rows["label"].index(label)]["image"]
            expected = np.asarray(image.convert("RGB").resize((96, 96), Image.Resampling.BICUBIC), dtype=np.int16)
            top, left = HEADER_HEIGHT + row * 96, LABEL_WIDTH + label * 96
            assert np.abs(pixels[top : top + 96, left : left + 96] - expected).mean() < 12  # JPEG-close


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
    pinned = ResolvedModel(str(model), "sha256:0", "local")
    with pytest.raises(SynthsetError, match="states no license; add `license: <hub license id>` to the recipe"):
        resolve_license(pinned, None)
    assert resolve_license(pinned, None, "mit").license == "mit"
    (model / "README.md").write_text("---\nlicense: creativeml-openrail-m\n---\n# a model\n")
    found = resolve_license(pinned, None)
    assert (found.license, found.source) == ("creativeml-openrail-m", f"model card of {model}")
    assert resolve_license(pinned, "creativeml-openrail-m").license == "creativeml-openrail-m"  # agreeing is fine
    with pytest.raises(SynthsetError, match="says 'creativeml-openrail-m' but the recipe .* says 'mit'"):
        resolve_license(pinned, "mit")


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


# -- the card never breaks, and renders the same bytes from the same inputs ------------------------------
def _make(root: Path, changes: dict) -> Path:
    path = root / f"{changes.get('name', 't')}.yaml"
    path.write_text(yaml.safe_dump(deep_update({**BASE_RECIPE, "output_dir": str(root / "runs")}, changes)))
    recipe = load_recipe(path)
    plan_run(recipe)
    generate_run(recipe.run_dir)
    build_dataset(recipe.run_dir)
    return Path(recipe.run_dir)


def test_single_config_card_renders_and_is_idempotent(tmp_path: Path):
    run = _make(tmp_path, {"name": "one"})  # one config: dataset_info is a mapping in the YAML
    readme = run / "dataset" / "README.md"
    assert isinstance(_yaml_header(readme)["dataset_info"], dict)
    write_card(run, license="apache-2.0")
    first = readme.read_bytes()
    write_card(run, license="apache-2.0")
    assert readme.read_bytes() == first  # same inputs, same bytes: no section duplicated
    body = DatasetCard.load(readme).text
    assert body.count("## Dataset Structure") == 1 and body.count("<!-- synthset-build:start -->") == 1
    # a card re-rendered with other options equals a card rendered once with those options
    write_card(run, license="apache-2.0", repo_id="org/x", clip_model="synthset-testing:tiny-clip", quality_per_class=2)
    write_card(run, license="mit")
    after_two = readme.read_bytes()
    build_dataset(run)
    write_card(run, license="mit")
    assert readme.read_bytes() == after_two
    data = DatasetCard.load(readme).data.to_dict()
    assert data["task_ids"] == ["multi-class-image-classification"]
    assert data["tags"] == ["synthetic", "synthset", "naive"]
    for heading in (
        "## Uses", "### Direct Use", "### Out-of-Scope Use", "#### Personal and Sensitive Information",
        "### Recommendations", "## Citation", "## Bias, Risks, and Limitations", "## Dataset Card Contact",
    ):  # fmt: skip
        assert f"\n{heading}\n" in body, heading
    assert "url          = {https://huggingface.co/datasets/ORG/NAME}" in body


def test_tags_never_carry_row_values(tmp_path: Path):
    run = _make(
        tmp_path, {"name": "ladder", "configs": [{"name": "lar_cd_sd", "strategy": "lar_cd_sd", "images_per_class": 2}]}
    )
    write_card(run, license="apache-2.0")
    import pyarrow.parquet as pq

    strategies = {
        s
        for p in (run / "dataset").rglob("*.parquet")
        for s in pq.read_table(p, columns=["strategy"])["strategy"].to_pylist()
    }
    assert strategies == {"cd", "sd"}  # per-row values...
    assert DatasetCard.load(run / "dataset" / "README.md").data.tags == [
        "synthetic",
        "synthset",
        "lar_cd_sd",
    ]  # ...not tags


def test_card_for_repo_names_the_repo_it_is_published_to(built_run: Path):
    from synthset.cards.render import card_for_repo

    write_card(built_run, license="apache-2.0", repo_id="org/first")
    local = (built_run / "dataset" / "README.md").read_text()
    for repo in ("org/second", "other/third"):
        text = card_for_repo(local, repo)
        assert "org/first" not in text
        assert f'load_dataset("{repo}", "naive", split="train")' in text
        assert f"\nhf download {repo} recipe.lock.yaml" in text and f"`synthset verify {repo} --revision" in text
        assert f"{{https://huggingface.co/datasets/{repo}}}" in text
        assert card_for_repo(text, "org/first") == local  # nothing else changes
    assert (built_run / "dataset" / "README.md").read_text() == local  # the run's card is left as it was
    assert main(["card", str(built_run), "--license", "apache-2.0", "--repo", "org/a--b"]) == 2


def test_nothing_of_the_publishers_file_system_reaches_the_card_or_published_files(built_run: Path):
    write_card(built_run, license="apache-2.0")
    run = RunDir(built_run)
    root = str(built_run.parent.parent)  # the tmp directory the recipe's output_dir points into
    for path in run.dataset_dir.rglob("*"):
        if path.is_file() and path.suffix in (".md", ".yaml", ".jsonl", ".json"):
            assert root not in path.read_text(), path
    name = built_run.name
    assert f"accelerate launch -m synthset generate runs/{name}\n" in (run.dataset_dir / "README.md").read_text()


def test_portable_paths_are_relative_to_the_run(tmp_path: Path):
    run_root = tmp_path / "runs" / "demo"
    data = {
        "output_dir": str(tmp_path / "runs"),
        "classes": {"set": str(tmp_path / "lists" / "birds.yaml"), "limit": 3},
        "generator": {"model": f"local-dir:{run_root / 'models' / 'sd'}", "steps": 2},
        "real": [str(run_root / "real"), "imagenet-1k", "hf-hub:org/model", "relative/dir"],
    }
    assert portable(data, run_root) == {
        "output_dir": "runs",
        "classes": {"set": "birds.yaml", "limit": 3},
        "generator": {"model": "local-dir:models/sd", "steps": 2},
        "real": ["real", "imagenet-1k", "hf-hub:org/model", "relative/dir"],
    }


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("Apache 2.0", "'Apache 2.0' is not a Hub license id (did you mean 'apache-2.0'? see "),
        ("CC BY-NC 4.0", "'CC BY-NC 4.0' is not a Hub license id (did you mean 'cc-by-nc-4.0'? see "),
        ("my-own", "'my-own' is not a Hub license id (see https://huggingface.co/docs/hub/repositories-licenses); for"),
        ("other", "license `other` needs a license name: an id like my-license-1.0 (got None); pass --license-name"),
    ],
)
def test_license_ids_are_checked_against_the_hubs_list(built_run: Path, capsys, given: str, message: str):
    before = (built_run / "dataset" / "README.md").read_bytes()
    assert main(["card", str(built_run), "--license", given]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"synthset: error: license: {message}"), err
    assert (built_run / "dataset" / "README.md").read_bytes() == before


def test_license_other_with_a_name_and_link(built_run: Path):
    url = "https://example.org/license.txt"
    write_card(built_run, license="other", license_name="my-license-1.0", license_link=url)
    data = DatasetCard.load(built_run / "dataset" / "README.md").data.to_dict()
    assert (data["license"], data["license_name"], data["license_link"]) == ("other", "my-license-1.0", url)
    with pytest.raises(SynthsetError, match="--license-link: LICENSE is not a file in"):
        write_card(built_run, license="other", license_name="my-license-1.0", license_link="LICENSE")


INJECTIONS = (
    "<script>alert(1)</script>",
    '<img src=x onerror="alert(2)">',
    "[x](javascript:alert(3))",
    "---\nlicense: mit\n---",
)


def _html_of(body: str) -> str:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": True}).enable("table").render(body)


def test_untrusted_class_names_and_llm_answers_are_escaped(tmp_path: Path):
    """Class names from a custom list and LLM answers reach the card as plain text, never as HTML or links."""
    from openai_server import OpenAIServer

    names = tmp_path / "classes.yaml"
    names.write_text(yaml.safe_dump([f"cat {s}" for s in INJECTIONS]))
    with pytest.raises(SynthsetError, match=r"entry 3: the class name .* spans several lines; give it on one line"):
        load_class_set(str(names))  # refused by the class list itself; it can still come from an LLM answer
    names.write_text(yaml.safe_dump([f"cat {s}" for s in INJECTIONS[:3]]))

    def answer(prompt: str, seed: int) -> str:  # an LLM that answers with every injection at once
        query = prompt.rsplit("\n\n", 1)[-1].removesuffix(" =>")
        return f"a {query.split(' (')[0].split(',')[0]} {' '.join(INJECTIONS)}, {query.split('), ', 1)[-1]}"

    with OpenAIServer(answer=answer) as server:
        llm = {"backend": "openai", "model": server.model, "base_url": server.base_url, "max_retries": 0}
        run = _make(
            tmp_path,
            {
                "name": "inject",
                "builder": "synth_fewshot",
                "classes": {"set": str(names), "limit": None},
                "configs": [{"name": "custom_1shot", "strategy": "lar_cd", "images_per_class": 1}],
                "prompts": {"llm": llm, "max_chars": 400},
            },
        )
    import pyarrow.parquet as pq

    prompts = [p for f in (run / "dataset").rglob("*.parquet") for p in pq.read_table(f)["prompt"].to_pylist()]
    assert any("<script>" in p and "javascript:" in p for p in prompts), prompts  # the answers got through
    write_card(run, license="apache-2.0")
    card = DatasetCard.load(run / "dataset" / "README.md")
    assert card.data.license == "apache-2.0"  # the `---` class name did not reach the metadata
    label = next(f for f in card.data.to_dict()["dataset_info"]["features"] if f["name"] == "label")
    assert list(label["dtype"]["class_label"]["names"].values()) == [f"cat {s}" for s in INJECTIONS[:3]]
    html = _html_of(card.text)
    assert "<script" not in html
    assert "<img" not in html.replace('<img src="samples.jpg"', "")
    assert 'href="javascript:' not in html
    prompt_list = html.split("Prompt examples")[1].split("Who are the source")[0]
    assert "<li>a cat &lt;script&gt;alert(1)&lt;/script&gt; " in prompt_list  # the class name, kept as text
    assert "&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in prompt_list
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # shown as text, never removed
    assert "[x](javascript:alert(3))" in html  # the link syntax is shown literally, not made a link
    assert "<hr" not in html.split("Prompt examples")[1].split("Who are the source")[0]  # no `---` line
    assert markdown_text(INJECTIONS[3]) == "\\--- license: mit ---"  # one line, not a thematic break


def test_the_card_reads_each_published_file_once_for_its_statistics_and_the_gates_counts(
    built_run: Path, monkeypatch: pytest.MonkeyPatch
):
    """The Screening section's counts are made in the statistics' pass (on an object store a second pass over
    the files is a second set of requests per file), and equal what a pass of their own counts."""
    from synthset.cards import screening
    from synthset.run.lock import read_lock

    run = RunDir.at(built_run)
    own_pass = screening.start_screening(run, read_lock(run))  # nothing handed over: every file read here
    alone = screening.finish_screening(own_pass)
    read_again: list[Path] = []
    count_published = screening._count_published
    monkeypatch.setattr(screening, "_count_published", lambda s, r, path, m: read_again.append(path) or
                        count_published(s, r, path, m))  # fmt: skip
    finished: list = []
    finish = screening.finish_screening
    monkeypatch.setattr(screening, "finish_screening", lambda gate: finished.append(finish(gate)) or finished[-1])
    write_card(built_run, license="apache-2.0")
    assert read_again == []
    rows = {
        name: datasets.load_dataset(str(built_run / "dataset"), name, split="train").num_rows
        for name in ("naive", "lar")
    }
    assert {c.config: c.published for c in alone.configs} == rows and finished[0].configs == alone.configs


def test_the_sample_grid_reads_only_the_row_groups_holding_an_image_it_shows(built_run: Path, monkeypatch):
    """Where each class's first image is comes from the statistics' pass, which reads every label already:
    the grid reading the labels again would be a second pass over the files (on an object store, a second
    set of requests per file). Each cell's pixels are checked in test_card_yaml_round_trips_and_keeps_configs."""
    import pyarrow.parquet as pq

    from synthset.cards.grid import write_sample_grid
    from synthset.cards.stats import collect_stats, config_data_files
    from synthset.run import objects

    run = RunDir.at(built_run)
    card = DatasetCard.load(built_run / "dataset" / "README.md").data.to_dict()
    stats = collect_stats(run, config_data_files(card, objects.data_files(run, run.dataset_dir)))
    shown = {place for one in stats for place in next(iter(one.first_rows.values())).values()}
    read: list[tuple[int, tuple[str, ...]]] = []
    read_row_group = pq.ParquetFile.read_row_group

    def watched(parquet, group, columns=None, **kwargs):
        read.append((group, tuple(columns or ())))
        return read_row_group(parquet, group, columns=columns, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", watched)
    write_sample_grid(run, stats, ["tench", "goldfish", "shark"])
    assert [columns for _, columns in read] == [("image",)] * len({(file, group) for file, group, _ in shown})
    assert len(shown) == 6  # 3 classes x 2 configs
