"""The public Python API: one call per stage, as `datasets.load_dataset` is one call.

Each function opens its run through `synthset.run.access.open_run` (a local directory or an `s3://` URL,
synced as the stage declares) and returns a typed result from `synthset.api.results` that prints as the
lines the CLI shows. Errors are `SynthsetError` subclasses (synthset.errors) carrying one line.

Heavy libraries (torch, diffusers, datasets) are imported inside each function, so that `import synthset`
and `synthset --help` stay fast.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import TYPE_CHECKING

from synthset.api.results import (
    BuildResult,
    CancelResult,
    CardWritten,
    CheckResult,
    CleanResult,
    GenerateResult,
    NewRecipe,
    PlanResult,
    PushDone,
    ReviewResult,
    StatusResult,
    SubmitResult,
    TrainResult,
    ValidateResult,
    VerifyResult,
    VersionsResult,
)
from synthset.errors import SynthsetError
from synthset.run.access import (
    READS_ALL_BUT_DATA,
    READS_NOTHING,
    READS_PLAN_AND_RECORDS,
    READS_PLAN_FILES,
    open_run,
)

if TYPE_CHECKING:
    from synthset.recipe import Recipe
    from synthset.run.paths import RunDir
    from synthset.scheduling.options import SlurmOptions

DEFAULT_LEASE_SECONDS = 300.0


@contextlib.contextmanager
def naming_the_recipe(recipe: str | Path | Recipe):
    """An error about a recipe field (`classes.set: ...`) names the recipe file first, as load_recipe's do."""
    from synthset.recipe import Recipe

    try:
        yield
    except SynthsetError as error:
        field = re.split(r"[.:\[]", str(error), maxsplit=1)[0]
        if isinstance(recipe, Recipe) or field not in Recipe.model_fields:
            raise
        raise type(error)(f"{recipe}: {error}") from None


def _recipe(recipe: str | Path | Recipe) -> Recipe:
    from synthset.recipe import Recipe, load_recipe

    return recipe if isinstance(recipe, Recipe) else load_recipe(recipe)


def new(
    classes: str,
    out: str | Path | None = None,
    model: str | None = None,
    images_per_class: int = 100,
    strategies: tuple[str, ...] | list[str] = ("naive", "lar", "lar_cd", "lar_cd_sd"),
    real_images: str | None = None,
    name: str | None = None,
    overwrite: bool = False,
) -> NewRecipe:
    """Write a commented recipe for your own classes, validated as `plan` reads it.

    Args:
        classes: a class list file (.txt, .csv, .yaml), a named set, or a `datasets` source whose label
            names become the classes.
        out: the recipe file (default `<name>.yaml`).
        model: the generator (default SD 1.5, or SD 2.1 unCLIP for augcond).
        images_per_class: images per class of each config.
        strategies: naive, lar, lar_cd, lar_cd_sd (one recipe), or augcond (a recipe of its own).
        real_images: a folder of class folders or a dataset of your photos (augcond needs it).
        name: the run's name (default: the class list's file name).
        overwrite: replace an existing `out`.

    Raises:
        RecipeError: a bad choice or class list, or `out` exists.
    """
    from synthset.api.new_recipe import DEFAULT_TEXT_MODEL, DEFAULT_UNCLIP_MODEL, RecipeChoices, write_new_recipe

    strategies = tuple(strategies)
    name = name or _run_name(classes)
    default_model = DEFAULT_UNCLIP_MODEL if "augcond" in strategies else DEFAULT_TEXT_MODEL
    choices = RecipeChoices(classes, name, model or default_model, images_per_class, strategies, real_images)
    path = Path(out) if out is not None else Path(f"{name}.yaml")
    count = write_new_recipe(choices, path, overwrite)
    return NewRecipe(path, count, choices.model, strategies)


def _run_name(classes: str) -> str:
    """A run name from the class source: `data/foxes.txt` -> `foxes`, `org/pets` -> `pets`."""
    import re

    stem = Path(classes.rstrip("/")).stem if Path(classes).suffix else classes.rstrip("/").rsplit("/", 1)[-1]
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-.") or "my-classes"


def check(recipe: str | Path | Recipe) -> CheckResult:
    """Validate a recipe as `plan` would (model, class lists, shots, conditioning pools), writing nothing.

    Args:
        recipe: a recipe file or a `Recipe`.

    Returns:
        What the recipe would plan: images per config, classes, the pinned model.

    Raises:
        RecipeError: the recipe or a file it names is invalid (the line names the field).
        ModelError: the generator cannot be resolved.
    """
    from synthset.generation.check import check_recipe

    with naming_the_recipe(recipe):
        return CheckResult(check_recipe(_recipe(recipe)))


def plan(
    recipe: str | Path | Recipe, run_dir: str | Path | RunDir | None = None, gpu_memory: str | None = None
) -> PlanResult:
    """Resolve a recipe and write its run directory: lock, class table and plan (one row per image).

    Args:
        recipe: a recipe file or a `Recipe`.
        run_dir: where to write the run instead of the recipe's `<output_dir>/<name>`: a local directory or
            an object-store URL such as `s3://bucket/runs/demo`.
        gpu_memory: one GPU's memory (e.g. "80GB"): also estimate the generator's peak at the recipe's
            batch size, with a warning when it would not fit.

    Returns:
        The plan's summary and the run's location.

    Raises:
        RecipeError: the recipe is invalid. ModelError: the model cannot be resolved.
        RunStateError: the run directory holds an incompatible earlier plan.
    """
    from synthset.generation.plan import plan_run

    budget = _parse_gpu_memory(gpu_memory)  # a bad size fails before any planning
    parsed = _recipe(recipe)
    with (
        naming_the_recipe(recipe),
        open_run(run_dir, READS_PLAN_FILES) if run_dir else contextlib.nullcontext() as run,
    ):
        summary = plan_run(parsed, run)
    memory, warnings = _memory_lines(summary.run, budget, gpu_memory) if budget is not None else ([], [])
    return PlanResult(summary, str(summary.run), memory, warnings)


def _parse_gpu_memory(text: str | None) -> int | None:
    if text is None:
        return None
    from synthset.generation.memory import parse_memory

    return parse_memory(text)


def _memory_lines(run: RunDir, budget: int, budget_text: str | None) -> tuple[list[str], list[str]]:
    from synthset.generation.memory import memory_report
    from synthset.run.lock import read_lock

    lock = read_lock(run)
    local = lock.model.load_path if lock.model.source == "local" else None
    lines = memory_report(lock.recipe.generator.model, local, lock.recipe.generator, budget, budget_text or "")
    warnings = [line for line in lines if line.startswith("warning:")]
    return [line for line in lines if line not in warnings], warnings


def generate(
    run: str | Path | RunDir,
    verify: bool = True,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    stop_on_signals: bool = False,
) -> GenerateResult:
    """Generate this process's share of a planned run's unfinished shards (call it on every rank).

    Args:
        run: the planned run (a directory or an `s3://` URL).
        verify: re-hash finished shards on start (else trust their sizes).
        lease_seconds: a claim not renewed for this long is taken over by another worker.
        stop_on_signals: make SIGTERM and SIGUSR1 (a scheduler's preemption and time-limit warning) stop the
            worker cleanly: the batch in hand ends, its shard is released at once, `summary.stopped` is set.
            Call from the main thread only.

    Returns:
        What this worker made; `summary.all_shards_done` says whether the whole run is finished.

    Raises:
        RunStateError: the run is not planned, or its lock was edited after planning.
        ModelError: the pinned model changed or is gone.
    """
    from synthset.generation.processes import stop_on_signals as install_stop
    from synthset.generation.runner import WorkerOptions, generate_run

    options = WorkerOptions(stop=install_stop().event) if stop_on_signals else None
    summary = generate_run(run, verify=verify, lease_seconds=lease_seconds, options=options)
    return GenerateResult(summary, str(run))


def build(run: str | Path | RunDir) -> BuildResult:
    """Validate a generated run and assemble `dataset/` in the Hub layout (README `configs`, Parquet files).

    Returns:
        The dataset folder's location and its splits, with the `load_dataset` lines that load them.

    Raises:
        RunStateError: a shard is missing or fails its checksum.
    """
    from synthset.builders.assemble import build_dataset, remove_unpublished_data

    with open_run(run, READS_ALL_BUT_DATA) as opened:  # an s3:// run's shards stay there: copied in the store
        built = build_dataset(opened)
    remove_unpublished_data(opened, built.splits)  # after the new README is in the store
    return BuildResult(opened.location(built.path), opened.on_store, built.splits, built.card_note)


def card(
    run: str | Path | RunDir,
    license: str | None = None,
    repo: str | None = None,
    clip_model: str | None = None,
    clip_pretrained: str | None = None,
    quality_per_class: int = 50,
    license_name: str | None = None,
    license_link: str | None = None,
) -> CardWritten:
    """Render the dataset card (dataset/README.md), the sample grid and, with `clip_model`, quality figures.

    Raises:
        RunStateError: the run is not built. RecipeError: the license id is unknown.
    """
    from synthset.cards import write_card

    with open_run(run, READS_ALL_BUT_DATA) as opened:  # footers and sampled rows: range requests
        result = write_card(
            opened,
            license=license,
            repo_id=repo,
            clip_model=clip_model,
            clip_pretrained=clip_pretrained,
            quality_per_class=quality_per_class,
            license_name=license_name,
            license_link=license_link,
        )
    return CardWritten(result, str(run), repo)


def review(
    run: str | Path | RunDir, out: Path | None = None, per_class: int = 16, publish: bool = False
) -> ReviewResult:
    """Write the review page (review.html): every class's images and the quality gate's rejects.

    Args:
        out: where to write it (default RUN/review.html).
        per_class: published images shown per class.
        publish: write it into dataset/ (without rejected images) to be pushed beside the card.
    """
    from synthset.cards.review import write_review

    with open_run(run, READS_ALL_BUT_DATA) as opened:  # the shown rows: range requests
        page = write_review(opened, out=out, per_class=per_class, publish=publish)
    return ReviewResult(page)


def push(
    run: str | Path | RunDir,
    repo: str,
    private: bool = False,
    tag: str | None = None,
    revision: str = "main",
    allow_unscreened: bool = False,
    delete_unpublished: bool = False,
) -> PushDone:
    """Publish dataset/ to a Hub dataset repo as one new version (a merged pull request), and tag it.

    Files on the branch that synthset never published are left there (and named) unless
    `delete_unpublished`.

    Raises:
        HubError: the Hub refused for good. RunStateError: the run has no card, or was not screened.
    """
    from synthset.hub import push_dataset

    with open_run(run, READS_ALL_BUT_DATA) as opened:  # data: fetched a few files at a time
        result = push_dataset(
            opened,
            repo,
            private=private,
            tag=tag,
            branch=revision,
            allow_unscreened=allow_unscreened,
            delete_unpublished=delete_unpublished,
        )
    return PushDone(result, str(run))


def versions(repo: str) -> VersionsResult:
    """List a dataset repo's tagged versions, each with its commit, configs and row counts."""
    from synthset.hub import list_versions

    return VersionsResult(repo, list_versions(repo))


def verify(
    repo: str,
    revision: str = "main",
    run: str | Path | RunDir | None = None,
    sample: int = 0,
    full: bool = False,
    seed: int | None = None,
) -> VerifyResult:
    """Check a published version against its manifest without downloading it (see `synthset verify --help`).

    Raises:
        HubError: any mismatch, naming the file.
    """
    from synthset.hub import verify_repo

    with open_run(run, READS_ALL_BUT_DATA, writes=False) if run is not None else contextlib.nullcontext() as opened:
        report = verify_repo(repo, revision=revision, run_dir=opened, sample=sample, full=full, seed=seed)
    return VerifyResult(report)


def validate(run: str | Path | RunDir, fast: bool = False) -> ValidateResult:
    """Check every shard against its record and every config against the plan; `result.ok` says if all hold."""
    from synthset.builders.validate import validate_run

    with open_run(run, READS_ALL_BUT_DATA, writes=False) as opened:  # checksums kept by the store
        return ValidateResult(validate_run(opened, fast=fast))


def status(run: str | Path | RunDir, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> StatusResult:
    """Where a generate run stands, read from its records and claims (nothing is asked of the workers)."""
    from synthset.run.status import run_status

    with open_run(run, READS_PLAN_AND_RECORDS, writes=False) as opened:
        report = run_status(opened, lease_seconds=lease_seconds)
        tasks, warnings = _slurm_tasks(opened)
        return StatusResult(report, tasks, warnings)


def _slurm_tasks(run: RunDir) -> tuple[list, list[str]]:
    """The run's SLURM tasks when it was submitted; squeue failing is a warning, not a failed status."""
    from synthset.errors import SchedulerError
    from synthset.scheduling.jobs import JOBS_FILE, task_states

    if run.store is not None or not (run.slurm_dir / JOBS_FILE).exists():
        return [], []
    try:
        return task_states(run.slurm_dir), []
    except SchedulerError as error:
        return [], [f"warning: the SLURM jobs' states are unknown: {error}"]


def submit(
    run: str | Path | RunDir,
    options: SlurmOptions | None = None,
    dry_run: bool = False,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
) -> SubmitResult:
    """Submit a planned run's generate workers to SLURM as one array job (through submitit).

    Each array task is one worker (of `options.gpus_per_worker` ranks); a time limit or a preemption stops
    it cleanly and requeues it, and any number of submissions share the run exactly once.

    Args:
        run: the planned run directory, on a filesystem the cluster's nodes share.
        options: workers, GPUs per worker, time limit, partition and other sbatch settings.
        dry_run: return the sbatch script instead of submitting it.
        lease_seconds: a claim not renewed for this long is taken over by another worker.

    Returns:
        The job id and where the logs go, or (dry run) the script.

    Raises:
        RunStateError: the run is not planned, or lives on an object store.
        SchedulerError: an option is invalid, SLURM is not installed, or sbatch refused the job.
    """
    from synthset.scheduling.options import SlurmOptions
    from synthset.scheduling.slurm import sbatch_script, submit_array

    options = options or SlurmOptions()
    if dry_run:
        with open_run(run, READS_NOTHING, writes=False, planned=True) as opened:
            return SubmitResult(str(run), script=sbatch_script(opened, options))
    return SubmitResult(str(run), submitted=submit_array(run, options, lease_seconds))


def cancel_submitted(run: str | Path | RunDir) -> CancelResult:
    """Cancel (scancel) every SLURM job `submit` started for the run; finished shards stay.

    Raises:
        SchedulerError: scancel refused.
    """
    from synthset.scheduling.slurm import cancel

    return CancelResult(str(run), cancel(run))


def clean(run: str | Path | RunDir, remove: bool = False) -> CleanResult:
    """List (and with `remove`, delete) the files of a local run that no plan row owns.

    Raises:
        RunStateError: the run lives on an object store (nothing there to clean) or is not planned.
    """
    from synthset.run import clean as cleaning
    from synthset.run.paths import RunDir

    located = RunDir.at(run)
    cleaning.check_cleanable(located)  # before any sync: a store run has nothing to clean
    with open_run(located, writes=False, planned=True) as opened:
        unowned = cleaning.find_unowned(opened)
        if remove:
            cleaning.remove(unowned.paths)
    return CleanResult(str(opened), opened.root, unowned, remove and bool(unowned.paths))


def train(
    config: str | Path,
    overrides: list[str] | None = None,
    stop_after_epoch: int | None = None,
    to_card: str | Path | RunDir | None = None,
) -> TrainResult:
    """Train and evaluate a timm model on real + synthetic data (see `synthset train --help`).

    Args:
        config: a training config file.
        overrides: `KEY=VALUE` settings that replace the config's (values read as YAML).
        stop_after_epoch: end this call once that many epochs are done; call again to continue.
        to_card: a run whose card should show the results (stored in its dataset/evaluation/).

    Returns:
        The results (None on processes other than the main one).
    """
    from synthset.training.config import load_train_config
    from synthset.training.run import run as run_training

    parsed = load_train_config(config, overrides or [])
    results = run_training(parsed, stop_after_epoch=stop_after_epoch)
    card_file = None
    if results is not None and results.get("complete", True) and to_card is not None:
        card_file = _store_for_card(to_card, parsed.output_dir.name, results)
    return TrainResult(results, parsed.output_dir, card_file, str(to_card) if to_card is not None else None)


def _store_for_card(run: str | Path | RunDir, name: str, results: dict) -> str:
    import json

    from synthset.fsutil import write_text_atomic

    with open_run(run, READS_NOTHING) as opened:  # a store run: written in scratch, then put
        target = opened.evaluation_dir / f"{name}.json"
        write_text_atomic(target, json.dumps(results, indent=2, default=str))
    return opened.location(target)
