"""`synthset card RUN`: the dataset card (README.md) and sample grid (samples.jpg) of a built run.

The card is a `huggingface_hub.DatasetCard` rendered from `templates/dataset_card.md.j2`, whose sections
follow huggingface_hub's own `datasetcard_template.md` where they apply. Its YAML keeps `configs` and
`dataset_info` exactly as `synthset build` wrote them with the `datasets` classes (the builders own what
a config is), and adds what the Hub shows: pretty_name, license (a Hub id, checked), task_categories,
task_ids, size_categories and tags (the recipe's strategies, never per-row values). The body is filled
from the run's own files: the lock (models *with revisions*, versions, provenance), the Parquet files
(counts, per-class spread, prompt examples) and, optionally, CLIP quality figures. Every string that did
not come from synthset itself (LLM answers, class names, model ids, paths) goes through `escape`.

Rendering is a function of its inputs: the same run and options give the same bytes, however often it
runs and whatever card it replaces (the builder's own sections are carried between markers, never
re-read from the card's body). The repo id appears only in a few fixed places (`REPO_SPOTS`), so
`card_for_repo` gives the README to upload for any repo at push time without touching the run's copy.
The rendered card is parsed back before it is written, so a card whose YAML `datasets` would read
differently is never published.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from synthset.cards.escape import code_text, fence, markdown_text
from synthset.cards.grid import SAMPLES_FILE, write_sample_grid
from synthset.cards.license import License, resolve_license
from synthset.cards.quality import ClipModelInfo, QualityFigures, quality_figures
from synthset.cards.screening import (
    SCREENED_COLUMNS,
    UNSCREENED_WARNING,
    Screening,
    screening_section,
    start_screening,
)
from synthset.cards.stats import ConfigStats, collect_stats, config_data_files, size_category, unique_rows
from synthset.errors import RunStateError, SynthsetError, first_line
from synthset.fsutil import write_text_atomic
from synthset.recipe import Recipe, StorageSpec
from synthset.run import objects
from synthset.run.hub_limits import human_bytes
from synthset.run.lock import Lock, read_lock
from synthset.run.paths import CARD_MARKER, RunDir, card_marker
from synthset.run.paths import README_FILE as README
from synthset.run.portable import portable_lock
from synthset.run.published import published_configs

BUILD_START, BUILD_END = "<!-- synthset-build:start -->", "<!-- synthset-build:end -->"
REPO_PLACEHOLDER = "ORG/NAME"
REPO_MARKER = re.compile(r"<!-- synthset-card-repo (\S+) -->")
# Every place the template writes the repo id. Each starts with a character that escaped text never
# holds raw (`(`, a newline, a backtick, `{`), so an LLM answer can never be mistaken for one.
REPO_SPOTS = (
    'load_dataset("{repo}"',
    "\nhf download {repo} ",
    "`synthset verify {repo} ",
    "{{https://huggingface.co/datasets/{repo}}}",
)
TASK_IDS = ["multi-class-image-classification"]
LAR_SOURCES = {  # classes.parquet `lar_source` -> what the card says
    "scored": "with the meaning CLIP scored best on real images",
    "single": "with a single candidate meaning",
    "no-real-images": "with their own gloss (several candidates, no real images to score them)",
    "no-candidates": "without a known meaning",
}


@dataclass(frozen=True)
class CardResult:
    readme: Path
    samples: Path
    license: License
    stats: list[ConfigStats]
    quality: list[QualityFigures] | None


def card_for_repo(text: str, repo_id: str) -> str:
    """The card as it is published to `repo_id`: every repo spot names that repo, whatever it named before."""
    found = REPO_MARKER.search(text)
    if found is None:
        raise SynthsetError("the card has no synthset-card-repo marker; run `synthset card` again")
    for spot in REPO_SPOTS:
        text = text.replace(spot.format(repo=found[1]), spot.format(repo=repo_id))
    return text.replace(found[0], f"<!-- synthset-card-repo {repo_id} -->")


def dataset_infos(card_data: dict[str, Any]) -> list[dict[str, Any]]:
    """`dataset_info` as a list: YAML holds a single config's info as one mapping."""
    infos = card_data.get("dataset_info") or []
    return [infos] if isinstance(infos, dict) else list(infos)


def _label_space(card_data: dict[str, Any]) -> int:
    for info in dataset_infos(card_data):
        for feature in info.get("features") or []:
            dtype = feature.get("dtype")
            if feature.get("name") == "label" and isinstance(dtype, dict) and "class_label" in dtype:
                return len(dtype["class_label"].get("names") or [])
    return 0


def builder_sections(readme_text: str) -> str:
    """The sections `synthset build` wrote that only the builder knows (e.g. a fill-up config's long-tail
    buckets), kept in the card: from build's README, its `## ` sections; from a card, what it carried
    between the markers (a card always has them, empty or not, so its own sections are never taken)."""
    from huggingface_hub import DatasetCard

    body = DatasetCard(readme_text).text
    if BUILD_START in body:
        return body.split(BUILD_START, 1)[1].split(BUILD_END, 1)[0].strip()
    if "<!-- synthset-card " in body:
        return ""
    start = body.find("\n## ")
    return body[start:].strip() if start >= 0 else ""


def _default_config(card_data: dict[str, Any]) -> str | None:
    """The config `load_dataset(repo)` picks without a name: the one marked `default: true`."""
    return next((c["config_name"] for c in card_data["configs"] if c.get("default")), None)


def _describe_llm(lock: Lock) -> str:
    llm = lock.recipe.prompts.llm
    pinned = lock.aux_models.get("llm")
    if pinned is None:
        return "none: prompts come from templates and word lists"
    return (
        f"`{code_text(pinned['model'])}` ({markdown_text(llm.backend)}) at revision "
        f"`{code_text(pinned['revision'])}`, temperature {llm.temperature}, top_p {llm.top_p}"
    )


def _lar_sources(run: RunDir) -> str:
    """How LAR chose each class's meaning, counted from classes.parquet (`lar_source`)."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(run.classes_file, columns=["selected", "lar_source"]).to_pydict()
    except (OSError, KeyError, ValueError):  # an older run without the column: say nothing
        return ""
    counts = Counter(s for s, chosen in zip(table["lar_source"], table["selected"], strict=True) if chosen and s)
    return ", ".join(f"{n} {LAR_SOURCES.get(source, markdown_text(source))}" for source, n in sorted(counts.items()))


def _describe_lar(lock: Lock, run: RunDir) -> str | None:
    if not any(c.strategy.startswith("lar") for c in lock.recipe.configs):
        return None
    pinned = lock.aux_models.get("clip")
    clip = (
        f"`{code_text(pinned['model'])}` at revision `{code_text(pinned['revision'])}`"
        if pinned
        else "no CLIP scoring (no real images)"
    )
    sources = _lar_sources(run)
    return clip + (f"; classes: {sources}" if sources else "")


def _card_data(base: dict[str, Any], recipe: Recipe, license: License, rows: int) -> Any:
    from huggingface_hub import DatasetCardData

    # tags name how the dataset was made (the recipe's strategies), never values found in rows (cd, sd)
    strategies = sorted({c.strategy for c in recipe.configs})
    # the license's name and link, when given, go to DatasetCardData's **kwargs (typed Any)
    extra: dict[str, Any] = {
        k: v for k, v in (("license_name", license.license_name), ("license_link", license.license_link)) if v
    }
    return DatasetCardData(
        pretty_name=recipe.name,
        license=license.license,
        **extra,
        task_categories=["image-classification"],
        task_ids=TASK_IDS,
        size_categories=[size_category(rows)],
        tags=["synthetic", "synthset", *strategies],
        configs=base["configs"],
        dataset_info=base["dataset_info"],
    )


def _describe_storage(storage: StorageSpec) -> str:
    quality = f" (quality {storage.quality}), " if storage.format in ("jpeg", "webp") else ", "
    size = f"resized to {storage.resize} px, " if storage.resize else "at the generated size, "
    return f"{storage.format}{quality}{size}{storage.shard_size} images per Parquet shard"


def _strategy_of(recipe: Recipe, readme: Path) -> Callable[[ConfigStats], str]:
    """Each published config's strategy: its generation config's (a scale config `<name>_<k>x` included)."""
    strategies = {config.name: config.strategy for config in published_configs(recipe)}

    def strategy(stats: ConfigStats) -> str:
        if stats.config not in strategies:
            raise RunStateError(f"{readme}: config {stats.config!r} is not one of this run's; run `synthset build`")
        return strategies[stats.config]

    return strategy


def _config_rows(recipe: Recipe, stats: list[ConfigStats], readme: Path) -> list[dict[str, Any]]:
    """The card's table of configs: one row per published config."""
    strategy = _strategy_of(recipe, readme)
    rows = []
    for s in stats:
        low, median, high = s.class_min_median_max
        rows.append(
            {
                "name": s.config,
                "strategy": strategy(s),
                "split_rows": s.split_rows,
                "first_split": next(iter(s.split_rows), "train"),
                "classes": s.classes,
                "per_class": f"{low} / {median:g} / {high}",
                "files": s.files,
                "size": human_bytes(s.bytes),
            }
        )
    return rows


def _prompt_examples(stats: list[ConfigStats]) -> dict[str, list[str]]:
    """Up to three distinct prompts per strategy, from the configs' sampled rows."""
    examples: dict[str, list[str]] = {}
    for s in stats:
        for strategy, prompts in s.prompt_examples.items():
            examples.setdefault(strategy, [])
            examples[strategy] += [p for p in prompts if p not in examples[strategy]][: 3 - len(examples[strategy])]
    return examples


def render_card(
    run: RunDir,
    lock: Lock,
    license: License,
    stats: list[ConfigStats],
    quality: tuple[ClipModelInfo, list[QualityFigures]] | None = None,
    repo_id: str | None = None,
    screening: Screening | None = None,
) -> str:
    """The README text; `configs`/`dataset_info` come from the README that `synthset build` wrote.

    Args:
        run: the built run.
        lock: its lock, as the caller read it (the card stage parses it once).
        license: the dataset's license (`resolve_license`).
        stats: per published config, counted from its Parquet files (`collect_stats`).
        quality: the CLIP model and its figures per config, when computed.
        repo_id: the repo the card names; a placeholder when None (`card_for_repo` fills it at push time).
        screening: the quality gate's section.

    Returns:
        The card's text, checked to parse back to build's `configs` and `dataset_info`.

    Raises:
        SynthsetError: build's README has no configs; RunStateError: it names one this run does not publish.
    """
    from huggingface_hub import DatasetCard

    lock = portable_lock(lock, run.root)  # the card goes to the Hub: no path of this disk in it
    recipe = lock.recipe
    dataset_dir = run.dataset_dir
    readme_text = (dataset_dir / README).read_text(encoding="utf-8")
    base = DatasetCard(readme_text).data.to_dict()
    if not base.get("configs") or not base.get("dataset_info"):
        raise SynthsetError(f"{dataset_dir / README}: no `configs`/`dataset_info` in its YAML; run `synthset build`")
    rows = unique_rows(stats)
    configs = _config_rows(recipe, stats, dataset_dir / README)
    generator = {**recipe.generator.model_dump(mode="json"), "revision": lock.model.revision}
    evaluations = [(name, table, fence(table)) for name, table in evaluation_tables(run)]
    clip_info, figures = quality if quality else (None, None)
    template = resources.files("synthset.cards") / "templates" / "dataset_card.md.j2"
    card = DatasetCard.from_template(
        _card_data(base, recipe, license, rows),
        template_str=template.read_text(encoding="utf-8"),
        pretty_name=recipe.name,
        provenance=lock.provenance,
        generation_key=lock.generation_key,
        total_images=rows,
        selected_classes=len({label for s in stats for label in s.per_class}),
        label_space=_label_space(base),
        class_set=recipe.classes.set,
        configs=configs,
        generator=generator,
        seed=recipe.seed,
        storage=_describe_storage(recipe.storage),
        llm=_describe_llm(lock),
        lar_clip=_describe_lar(lock, run),
        quality_clip=f"`{code_text(clip_info.name)}` at revision `{code_text(clip_info.revision)}`"
        if clip_info
        else "not computed",
        quality_clip_name=clip_info.name if clip_info else "",
        quality=figures,
        license=license,
        versions=lock.versions,
        default=next((c for c in configs if c["name"] == _default_config(base)), configs[0]),
        repo_id=repo_id or REPO_PLACEHOLDER,
        run_dir=f"{recipe.output_dir}/{recipe.name}",
        prompt_examples=_prompt_examples(stats),
        builder_sections=builder_sections(readme_text),
        evaluations=evaluations,
        build_start=BUILD_START,
        build_end=BUILD_END,
        repo_marker=f"<!-- synthset-card-repo {repo_id or REPO_PLACEHOLDER} -->",
        md=markdown_text,
        code=code_text,
        screening=screening,
        unscreened_warning=UNSCREENED_WARNING if screening is not None and not screening.screened else None,
    )
    _check_round_trip(card.content, base)
    return card.content


def evaluation_tables(run: RunDir) -> list[tuple[str, str]]:
    """(name, table) for every `synthset train --to-card` results file stored beside the dataset."""
    import json

    from synthset.training.results import format_table

    tables = []
    for path in sorted(run.evaluation_dir.glob("*.json")):
        tables.append((path.stem, format_table(json.loads(path.read_text(encoding="utf-8")))))
    return tables


def _check_round_trip(content: str, base: dict[str, Any]) -> None:
    """Parse the card back as the Hub and `datasets` will; the configs must survive unchanged."""
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard

    parsed = DatasetCard(content).data.to_dict()
    if parsed.get("configs") != base["configs"] or parsed.get("dataset_info") != base["dataset_info"]:
        raise AssertionError("the rendered card changed `configs` or `dataset_info`")
    MetadataConfigs.from_dataset_card_data(DatasetCard(content).data)


def write_card(
    run_dir: str | Path | RunDir,
    license: str | None = None,
    repo_id: str | None = None,
    clip_model: str | None = None,
    clip_pretrained: str | None = None,
    quality_per_class: int = 50,
    license_name: str | None = None,
    license_link: str | None = None,
) -> CardResult:
    """Render `dataset/README.md` and `dataset/samples.jpg` for a built run (both written atomically)."""
    from huggingface_hub import DatasetCard
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    run = RunDir.at(run_dir)
    dataset_dir = run.dataset_dir
    lock = read_lock(run)
    if not run.dataset_readme.is_file():
        raise SynthsetError(f"{run}: no {dataset_dir.name}/{README}; run `synthset build {run}` first")
    if repo_id is not None:
        try:
            validate_repo_id(repo_id)
        except HFValidationError as error:
            raise SynthsetError(f"--repo: {repo_id!r} is not a Hub repo id: {first_line(error)}") from None
    chosen = resolve_license(lock.model, lock.recipe.license, license, license_name, license_link)
    if chosen.license_link and "://" not in chosen.license_link and not (dataset_dir / chosen.license_link).is_file():
        raise SynthsetError(
            f"--license-link: {chosen.license_link} is not a file in {dataset_dir}; add it or give a URL"
        )
    files = objects.data_files(run, dataset_dir)  # on an object store, its Parquet files are read there
    data_files = config_data_files(DatasetCard.load(dataset_dir / README).data.to_dict(), files)
    gate = start_screening(run, lock)  # counted in the statistics' pass: each published file is read once
    stats = collect_stats(run, data_files, also=(SCREENED_COLUMNS, gate.count_row_group))
    quality = None
    if clip_model:
        quality = quality_figures(run, data_files, clip_model, clip_pretrained, quality_per_class)
    from synthset.run.classes_table import read_class_rows

    class_names = [row["class_name"] for row in read_class_rows(run, ["class_name"])]
    samples = write_sample_grid(run, stats, class_names)
    screening = screening_section(gate)
    content = render_card(run, lock, chosen, stats, quality, repo_id, screening)
    write_text_atomic(dataset_dir / README, content)
    return CardResult(dataset_dir / README, samples, chosen, stats, quality[1] if quality else None)


__all__ = ["CARD_MARKER", "SAMPLES_FILE", "CardResult", "card_for_repo", "card_marker", "render_card", "write_card"]
