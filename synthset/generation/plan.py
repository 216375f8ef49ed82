"""The plan stage: recipe -> recipe.lock.yaml, classes.parquet, plan.parquet.

plan.parquet has one row per image to make, written before any GPU work: the contract between prompting
and generation. Each row has a stable `sample_id` (`<config>/<label:04d>/<index:06d>`), a seed derived
from the recipe seed and that id alone, and the `shard` it belongs to. Shards are fixed here, by the
plan, not by the number of processes that later run it, so the generated files are the same on one GPU
or a hundred, and a resumed run with another world size picks up exactly the shards that are missing.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from synthset.classes import ClassInfo, load_recipe_classes, select_classes
from synthset.errors import SynthsetError
from synthset.fsutil import atomic_path, make_dirs
from synthset.generation.diversify import PromptStats
from synthset.generation.draw_shots import draw_shots
from synthset.generation.lookahead import ordered_map
from synthset.generation.pinning import make_lock
from synthset.generation.prompts import PROMPT_STRATEGIES, PromptContext, PromptFields
from synthset.recipe import ConfigSpec, Recipe
from synthset.run.classes_table import LARResult, write_classes
from synthset.run.families import check_family
from synthset.run.ids import make_sample_id, sample_seed, shard_name
from synthset.run.lock import Lock, read_lock, write_lock
from synthset.run.paths import RunDir
from synthset.run.plan import PlanWriter
from synthset.run.pools import PoolRow, write_pools
from synthset.run.records import read_records
from synthset.run.schema import plan_features
from synthset.run.shots import write_shots

if TYPE_CHECKING:
    from synthset.generation.llm import LLMCache


@dataclass(frozen=True)
class PlanSummary:
    run: RunDir
    rows: int
    shards: int
    rows_per_config: dict[str, int]
    lar_sources: dict[str, int] = field(default_factory=dict)
    lar_meaning_from: dict[str, int] = field(default_factory=dict)  # wordnet | llm | both: whose meaning won
    real_image_failures: int = 0
    prompt_stats: PromptStats = field(default_factory=PromptStats)
    llm_backend_calls: int = 0
    llm_cache_hits: int = 0
    hub_layout: str = ""  # what the Hub will hold (files, folders, size), within its limits
    llm_report: str = ""  # the openai backend: what each server answered, outages, failovers


def images_per_class(config: ConfigSpec, selected: list[ClassInfo], num_classes: int) -> dict[int, int]:
    """Images per class and band: the config's fixed count, or `target - real count` for a fill-up."""
    if config.fill_up is None:
        return {info.label: config.images_per_class or 0 for info in selected}
    from synthset.classes.longtail import read_train_list_counts

    real = read_train_list_counts(config.fill_up.train_list, num_classes)
    return {info.label: max(0, config.fill_up.target - real[info.label]) for info in selected}


def iter_plan_shards(
    lock: Lock, selected: list[ClassInfo], contexts: dict[str, PromptContext], num_classes: int
) -> Iterator[tuple[str, list[dict]]]:
    """Yield (shard name, rows) in plan order: config, band, class, image index.

    Shards never straddle a band, so the k-x config is a set of whole shards and a run grown from 2x to
    6x keeps the first bands' shards as they are. Only one shard's rows (and the prompts of the few
    classes being written at once, see `classes_at_once`) are in memory at a time, so planning millions
    of images stays flat in memory. One progress bar counts rows over the whole plan, with rate and ETA.
    """
    from tqdm.auto import tqdm

    recipe = lock.recipe
    counts_by_config = {c.name: images_per_class(c, selected, num_classes) for c in recipe.configs}
    total = sum(sum(counts_by_config[c.name].values()) * c.bands for c in recipe.configs)
    llm = next((context.llm for context in contexts.values() if context.llm is not None), None)
    with tqdm(total=total, unit="row", desc="plan", smoothing=0.05, disable=None) as bar:
        try:
            for config in recipe.configs:
                for band in range(config.bands):
                    context, counts = contexts[config.name], counts_by_config[config.name]
                    yield from _band_shards(recipe, config, band, selected, context, counts, bar)
        except BaseException:
            if llm is not None:  # classes ahead may still be waiting on the servers: stop their requests
                llm.close()
            raise


def _band_shards(
    recipe: Recipe,
    config: ConfigSpec,
    band: int,
    selected: list[ClassInfo],
    context: PromptContext,
    counts: dict[int, int],
    bar: Any,
) -> Iterator[tuple[str, list[dict]]]:
    """The shards of one band of one config, their prompts written `classes_at_once` classes at a time."""
    strategy = PROMPT_STRATEGIES[config.strategy]

    def write_prompts(info: ClassInfo) -> tuple[range, list[PromptFields], PromptStats]:
        count = counts[info.label]
        indices = range(band * count, (band + 1) * count)
        own = dataclasses.replace(context, stats=PromptStats())  # added to the run's below, in plan order
        return indices, strategy(info, indices, own), own.stats

    pending: list[dict] = []
    shard_index = 0
    for info, (indices, prompts, stats) in ordered_map(write_prompts, selected, classes_at_once(context.llm, counts)):
        add_stats(context.stats, stats)
        for index, fields in zip(indices, prompts, strict=True):
            sample_id = make_sample_id(config.name, info.label, index)
            pending.append(
                {
                    "sample_id": sample_id,
                    "config": config.name,
                    "split": config.split,
                    "label": info.label,
                    "class_name": info.class_name,
                    "strategy": fields.strategy,
                    "prompt": fields.prompt,
                    "negative_prompt": recipe.generator.negative_prompt,
                    "lar_meaning": fields.lar_meaning,
                    "cd_aspects": fields.cd_aspects,
                    "sd_style": fields.sd_style,
                    "seed": sample_seed(recipe.seed, sample_id),
                    "cond_images": fields.cond_images,
                    "cond_aug": fields.cond_aug,
                    "cond_lambda": None,
                    "band": band,
                    "shard": shard_name(config.name, config.split, band, shard_index),
                }
            )
            if len(pending) == recipe.storage.shard_size:
                yield pending[0]["shard"], pending
                pending, shard_index = [], shard_index + 1
        bar.update(len(indices))
        where = f"{config.name} band {band}"
        bar.set_postfix_str(f"{where}; {context.llm.status()}" if context.llm is not None else where, refresh=False)
    if pending:
        yield pending[0]["shard"], pending


# --- Writing several classes' prompts at once (issue 17: a plan stage that scales over LLM servers) ---
MAX_CLASSES_AT_ONCE = 64


def classes_at_once(llm: LLMCache | None, counts: dict[int, int]) -> int:
    """How many classes' prompts to write at once: 1 unless the LLM takes calls from several threads (the
    openai backend); then enough classes that their requests fill every server slot twice over, so one
    class's retry round overlaps the next classes' requests (2 to MAX_CLASSES_AT_ONCE)."""
    slots = llm.slots if llm is not None else 0
    if slots <= 0:
        return 1
    per_class = max(1, sum(counts.values()) // max(1, len(counts)))
    return max(2, min(MAX_CLASSES_AT_ONCE, math.ceil(2 * slots / per_class) + 1))


def add_stats(total: PromptStats, part: PromptStats) -> None:
    """Add one class's prompt counters to the run's (each class counts into its own while classes run at
    once, so no counter is ever written by two threads)."""
    for item in dataclasses.fields(total):
        mine, theirs = getattr(total, item.name), getattr(part, item.name)
        if isinstance(mine, dict):
            for key, value in theirs.items():
                mine[key] = mine.get(key, 0) + value
        elif isinstance(mine, list):
            mine.extend(theirs)
        else:
            setattr(total, item.name, mine + theirs)


def check_hub_layout(recipe: Recipe, selected: list[ClassInfo], num_classes: int) -> str:
    """Refuse a recipe whose published layout breaks a Hub limit (one line naming the limit and the setting
    that fixes it), before any GPU hour is spent; else the plan's one-line summary of what the Hub will hold."""
    from synthset.run.hub_limits import layout_figures, layout_summary, limit_problem

    band_rows = {
        (config.name, band): sum(images_per_class(config, selected, num_classes).values())
        for config in recipe.configs
        for band in range(config.bands)
    }
    width, height = recipe.storage.stored_size(recipe.generator.width, recipe.generator.height)
    figures = layout_figures(band_rows, recipe.storage.shard_size, width * height, recipe.storage.format)
    problem = limit_problem(figures, recipe.storage.shard_size)
    if problem is not None:
        raise SynthsetError(f"{recipe.name}: the Hub would refuse this dataset: {problem}")
    return layout_summary(figures)


def _check_run_compatible(run: RunDir, lock: Lock) -> None:
    """Refuse to re-plan a run whose finished shards were made under other generation settings."""
    if not run.lock_file.is_file() or not read_records(run):
        return
    try:
        previous_key = read_lock(run).generation_key
    except SynthsetError:
        previous_key = None  # an unreadable or hand-edited lock: its shards cannot be trusted either
    if previous_key != lock.generation_key:
        raise SynthsetError(
            f"{run}: has shards made with other generation settings (seed, generator, storage or model "
            "changed); give the recipe a new name to start a new run"
        )


def plan_pools(recipe: Recipe, classes: list[ClassInfo], selected: list[ClassInfo], draws: list) -> list[PoolRow]:
    """Every augcond config's conditioning pools (`synthset.generation.pools`): the leak guards run here."""
    if not any(c.strategy == "augcond" for c in recipe.configs):
        return []
    from synthset.generation.pools import conditioning_pools
    from synthset.generation.real_images import open_real_images

    source = open_real_images(recipe.real_images, classes) if recipe.real_images is not None else None
    return [row for c in recipe.configs for row in conditioning_pools(c, source, classes, selected, draws)]


def _open_llm(recipe: Recipe, run: RunDir) -> LLMCache | None:
    """The cached LLM when the recipe names one and some config uses it; None for the template backend."""
    if recipe.prompts.llm.backend == "template" or not recipe.uses_lar():
        return None
    from synthset.generation.llm import LLMCache, make_backend

    make_dirs(run.cache_dir)
    return LLMCache(run.cache_dir / "llm.sqlite", make_backend(recipe.prompts.llm), recipe.prompts.llm)


def plan_run(recipe: Recipe, run: RunDir | None = None) -> PlanSummary:
    """Write the lock, the classes (with LAR) and the plan of a recipe's run directory (each atomically).

    `run` overrides the recipe's `<output_dir>/<name>` (`synthset plan --run-dir`, e.g. an object-store run's
    scratch copy).
    """
    check_family(recipe)
    classes = load_recipe_classes(recipe.classes)
    selected = select_classes(classes, recipe.classes.subset, recipe.classes.limit, recipe.classes.source)
    hub_layout = check_hub_layout(recipe, selected, len(classes))
    run = run if run is not None else RunDir(recipe.run_dir)
    for path in (run.root.parent, run.root):
        if path.exists() and not path.is_dir():
            raise SynthsetError(f"output_dir: {str(path)!r} is a file, not a directory; choose another output_dir")
    lock = make_lock(recipe)
    _check_run_compatible(run, lock)
    # Shots and conditioning pools first: a leak is refused before any minute is spent on LAR or an LLM.
    draws = draw_shots(recipe, classes, selected)
    pools = plan_pools(recipe, classes, selected, draws)
    make_dirs(run.root)
    llm = _open_llm(recipe, run)

    meanings: dict[int, LARResult] = {}
    lar_key: str | None = None
    failures = 0
    if recipe.uses_lar():
        from synthset.generation.meanings import resolve_meanings

        meanings, lar_key, failures = resolve_meanings(recipe, run, classes, selected, llm)
    write_classes(run, classes, selected, meanings, lar_key)
    write_shots(run, [d.shots_row() for d in draws])
    write_pools(run, pools)

    stats = PromptStats()
    contexts = {
        c.name: PromptContext(
            recipe=recipe,
            config=c,
            run=run,
            meanings=meanings,
            llm=llm,
            stats=stats,
            conditioning_pools={row.label: row.real_ids for row in pools if row.config == c.name},
        )
        for c in recipe.configs
    }
    label_names = [info.label_name for info in classes]
    schema = plan_features(label_names).arrow_schema
    rows_per_config: dict[str, int] = {}
    shards = 0
    with atomic_path(run.plan_file) as tmp, PlanWriter(tmp, schema) as writer:
        for name, rows in iter_plan_shards(lock, selected, contexts, len(classes)):
            writer.add_shard(name, rows)
            rows_per_config[rows[0]["config"]] = rows_per_config.get(rows[0]["config"], 0) + len(rows)
            shards += 1
    write_lock(run, lock)
    sources: dict[str, int] = {}
    winners: dict[str, int] = {}
    for result in meanings.values():
        sources[result.source] = sources.get(result.source, 0) + 1
        if result.meaning_from is not None:
            winners[result.meaning_from] = winners.get(result.meaning_from, 0) + 1
    return PlanSummary(
        run,
        sum(rows_per_config.values()),
        shards,
        rows_per_config,
        lar_sources=sources,
        lar_meaning_from=winners,
        real_image_failures=failures,
        prompt_stats=stats,
        llm_backend_calls=llm.backend_calls if llm is not None else 0,
        llm_cache_hits=llm.hits if llm is not None else 0,
        hub_layout=hub_layout,
        llm_report=llm.report() if llm is not None else "",
    )
