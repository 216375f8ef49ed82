"""What each stage of the Python API returns: the stage's own result, and the lines that describe it.

A result knows how to say itself (`lines()`), so the CLI only prints and a notebook user gets the same
words from `print(result)`. The stage results they wrap (PlanSummary, GenerateSummary, ...) stay in their
stages; heavy modules are imported for type checking only, so `import synthset` stays fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from synthset.builders.assemble import BuiltSplit
    from synthset.builders.validate import ConfigReport
    from synthset.cards.render import CardResult
    from synthset.cards.review import ReviewResult as ReviewPage
    from synthset.generation.check import RecipeCheck
    from synthset.generation.plan import PlanSummary
    from synthset.generation.runner import GenerateSummary
    from synthset.hub.publish import PushResult
    from synthset.hub.verify import VerifyReport
    from synthset.hub.versions import Version
    from synthset.run.clean import Unowned
    from synthset.run.status import RunStatus
    from synthset.scheduling.jobs import TaskState
    from synthset.scheduling.slurm import Submitted


class Described:
    """A result that prints as the lines the CLI shows; `warnings` go to stderr (none unless a result has some)."""

    warnings: Sequence[str] = ()

    def lines(self) -> list[str]:
        raise NotImplementedError

    def __str__(self) -> str:
        return "\n".join(self.lines())


@dataclass(frozen=True)
class NewRecipe(Described):
    """`synthset.new(classes)`: the recipe written for the user's classes."""

    recipe: Path
    classes: int
    model: str
    strategies: tuple[str, ...]

    def lines(self) -> list[str]:
        return [
            f"wrote {self.recipe}: {self.classes} classes, {', '.join(self.strategies)} on {self.model}",
            f"next: synthset plan --check {self.recipe}   (then synthset plan {self.recipe})",
        ]


@dataclass(frozen=True)
class CheckResult(Described):
    """`synthset.check(recipe)`: what the recipe would plan; nothing was written."""

    check: RecipeCheck

    def lines(self) -> list[str]:
        checked = self.check
        per_config = ", ".join(f"{name}: {n}" for name, n in checked.images_per_config.items())
        pools = "".join(f"; {name} conditions on {n} real images" for name, n in checked.pools.items())
        lines = [
            f"recipe OK: {checked.images} images over {checked.classes} classes ({per_config}){pools}",
            f"model: {checked.model} @ {checked.model_revision}; nothing was written",
        ]
        if checked.real_images is not None:
            lines.append(f"real images: {checked.real_images}")
        if checked.unchecked:
            lines.append(f"not loaded by --check (plan and generate load them): {', '.join(checked.unchecked)}")
        return lines


@dataclass(frozen=True)
class PlanResult(Described):
    """`synthset.plan(recipe)`: the run directory written, with what planning found and asked."""

    summary: PlanSummary
    run: str  # where the run lives: a local path or its store URL
    memory: list[str] = field(default_factory=list)  # with gpu_memory: the peak estimate's lines
    warnings: list[str] = field(default_factory=list)  # e.g. the batch does not fit the GPU

    def lines(self) -> list[str]:
        summary = self.summary
        per_config = ", ".join(f"{name}: {rows}" for name, rows in summary.rows_per_config.items())
        lines = [f"planned {summary.rows} images in {summary.shards} shards ({per_config})"]
        lines += _lar_lines(summary) + _llm_lines(summary)
        if summary.hub_layout:
            lines.append(summary.hub_layout)
        lines += self.memory
        lines += [f"run directory: {self.run}", f"next: accelerate launch -m synthset generate {self.run}"]
        return lines


def _lar_lines(summary: PlanSummary) -> list[str]:
    if not summary.lar_sources:
        return []
    sources = ", ".join(f"{source}: {n}" for source, n in sorted(summary.lar_sources.items()))
    winners = ", ".join(f"{source}: {n}" for source, n in sorted(summary.lar_meaning_from.items()))
    skipped = summary.real_image_failures
    failures = f"; real images skipped (undecodable): {skipped}" if skipped else ""
    return [f"label ambiguity resolution: {sources} (meanings from {winners}){failures}"]


def _llm_lines(summary: PlanSummary) -> list[str]:
    lines = []
    stats = summary.prompt_stats
    if stats.llm_requests:
        rejected = ", ".join(f"{reason}: {n}" for reason, n in sorted(stats.rejected.items())) or "none"
        lines.append(
            f"LLM: {stats.llm_requests} requests ({summary.llm_backend_calls} sent, {summary.llm_cache_hits} from "
            f"cache); rejected: {rejected}; replaced by the template: {stats.replaced}"
        )
        if stats.aspect_lists_replaced:
            lines.append(
                f"CD aspect lists the LLM failed to give (vocabulary used instead): {stats.aspect_lists_replaced}"
            )
    if summary.llm_report:
        lines.append(f"LLM servers: {summary.llm_report}")
    return lines


@dataclass(frozen=True)
class GenerateResult(Described):
    """`synthset.generate(run)`: what this worker made (other workers of the run report their own)."""

    summary: GenerateSummary
    run: str

    def lines(self) -> list[str]:
        s = self.summary
        lines = [
            f"rank {s.rank}/{s.world_size} (worker {s.worker}): made {s.images_made} images "
            f"in {s.shards_made} shards ({s.shards_redone} of them redone; {s.shards_already_done} "
            f"were done before, {s.shards_done_by_others} done by other workers meanwhile) "
            f"in {s.seconds:.1f} s"
        ]
        if s.shards_dropped:
            lines.append(
                f"rank {s.rank}: {s.shards_dropped} shards made but dropped unrecorded: another worker had taken "
                "over their claims (this worker missed its heartbeats, e.g. while paused)"
            )
        if s.redraws or s.dropped or s.near_duplicates:
            lines.append(
                f"quality gate (rank {s.rank}): {s.redraws} images drawn again, {s.dropped} samples "
                f"dropped, {s.near_duplicates} near-duplicates; `synthset review {self.run}` shows them"
            )
        if s.stopped and not s.all_shards_done:
            lines.append(
                "stopped by a signal: the shard in hand was released for another worker; run it again to resume"
            )
        if s.all_shards_done and s.rank == 0:  # every rank sees it (they meet at the end): said once
            lines.append(f"all shards done; next: synthset build {self.run}")
        return lines


@dataclass(frozen=True)
class BuildResult(Described):
    """`synthset.build(run)`: the Hub-layout dataset folder and its splits."""

    dataset: str  # local path, or the folder's URL on the run's store
    on_store: bool
    splits: list[BuiltSplit]
    card_note: str | None = None  # what happened to the previous build's card, if it had one

    def lines(self) -> list[str]:
        lines = [f"{s.config}/{s.split}: {s.num_examples} images in {len(s.files)} files" for s in self.splits]
        lines += [f"dataset: {self.dataset}"] + ([f"card: {self.card_note}"] if self.card_note else [])
        lines += ["load it:"]
        for split in self.splits:
            if self.on_store:  # a Hub-layout folder on S3: read through fsspec with its data_files globs
                files = [f"{self.dataset}/{pattern}" for pattern in split.patterns]
                lines.append(
                    f'  datasets.load_dataset("parquet", data_files={{"{split.split}": {files}}}, '
                    f'split="{split.split}")'
                )
            else:
                lines.append(f'  datasets.load_dataset("{self.dataset}", "{split.config}", split="{split.split}")')
        return lines


@dataclass(frozen=True)
class CardWritten(Described):
    """`synthset.card(run)`: the rendered card, the sample grid and the quality figures."""

    card: CardResult
    run: str
    repo: str | None

    def lines(self) -> list[str]:
        card = self.card
        lines = [
            f"card: {card.readme} (license {card.license.license}, from the {card.license.source})",
            f"samples: {card.samples}",
        ]
        for q in card.quality or []:
            lines.append(
                f"{q.config}: mean CLIP score {q.mean_clip_score:.2f}, mean intra-class Vendi score "
                f"{q.mean_vendi:.2f} ({q.images} images, at most {q.per_class} per class)"
            )
        lines.append(f"next: synthset push {self.run} --repo {self.repo or '<org/name>'} --tag v1.0")
        return lines


@dataclass(frozen=True)
class ReviewResult(Described):
    """`synthset.review(run)`: the review page and what it shows per config."""

    page: ReviewPage

    def lines(self) -> list[str]:
        lines = []
        for config in self.page.configs:
            dropped = sum(config.dropped.values())
            lines.append(
                f"{config.name}: {config.published} published images of {len(config.classes)} classes "
                f"({config.shards_done} of {config.shards} shards made), {config.redrawn} redrawn, {dropped} "
                f"dropped, {config.flagged_nsfw} flagged NSFW, {config.near_duplicates} near-duplicates"
            )
        lines.append(f"review: {self.page.path} ({self.page.bytes / 1e6:.1f} MB); open it in a browser")
        return lines


@dataclass(frozen=True)
class PushDone(Described):
    """`synthset.push(run, repo)`: the version published (or found already published)."""

    push: PushResult
    run: str

    def lines(self) -> list[str]:
        r = self.push
        if r.already_published:
            return [f"{r.repo_id}: {r.tag} already is commit {r.commit[:12]} with these files; nothing to do"]
        changes = f"{r.added} added, {r.changed} changed, {r.deleted} deleted, {r.unchanged} unchanged"
        if r.pull_request is not None:
            lines = [
                f"pushed {self.run.rstrip('/')}/dataset to {r.repo_id}@{r.branch}: {changes}; "
                f"{r.commits} commits on pull request #{r.pull_request}, merged as {r.commit[:12]}"
            ]
        else:
            lines = [f"{r.repo_id}@{r.branch} already holds these files (commit {r.commit[:12]}): {changes}"]
        if r.kept:
            lines.append(
                f"kept {_count(r.kept, 'file')} on {r.branch} that synthset did not publish: {_names(r.kept)} "
                "(push with --delete-unpublished to delete them)"
            )
        if r.deleted_unpublished:
            lines.append(
                f"deleted {_count(r.deleted_unpublished, 'file')} that synthset did not publish "
                f"(--delete-unpublished): {_names(r.deleted_unpublished)}"
            )
        if r.tag:
            lines.append(f"tagged {r.tag} -> {r.commit[:12]}")
        lines.append(f'load it: datasets.load_dataset("{r.repo_id}", "<config>", revision="{r.tag or r.branch}")')
        return lines


NAMES_SHOWN = 10


def _count(items: list[str], noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def _names(paths: list[str]) -> str:
    """Every path up to NAMES_SHOWN, then how many more: the user sees what a push leaves or deletes."""
    more = len(paths) - NAMES_SHOWN
    return ", ".join(paths[:NAMES_SHOWN]) + (f" and {more} more" if more > 0 else "")


@dataclass(frozen=True)
class VersionsResult(Described):
    """`synthset.versions(repo)`: the repo's tagged versions, oldest first."""

    repo: str
    versions: list[Version]

    def lines(self) -> list[str]:
        if not self.versions:
            return [f"{self.repo}: no tagged versions"]
        return [_version_line(version) for version in self.versions]


def _version_line(version: Version) -> str:
    configs = ", ".join(
        f"{config} {sum(splits.values())} rows"
        + (f" ({', '.join(f'{s} {n}' for s, n in splits.items())})" if len(splits) > 1 else "")
        for config, splits in version.rows.items()
    )
    if version.problem:
        configs = f"cannot be read: {version.problem}"
    heads = f"  [head of {', '.join(version.branches)}]" if version.branches else ""
    return f"{version.tag}  {version.commit[:12]}  {configs}{heads}"


@dataclass(frozen=True)
class VerifyResult(Described):
    """`synthset.verify(repo)`: what was checked of a published version (a mismatch raises HubError)."""

    report: VerifyReport

    def lines(self) -> list[str]:
        r = self.report
        rows = "; ".join(
            f"{config}: " + ", ".join(f"{split} {n} rows" for split, n in splits.items())
            for config, splits in r.rows.items()
        )
        checked = "downloaded and" if r.mode == "full" else "listed by the Hub,"
        lines = [
            f"verified {r.repo_id}@{r.revision} (commit {r.commit[:12]}): {r.files} files, "
            f"{r.bytes} bytes {checked} match manifest.jsonl; {r.footers} Parquet footers read; {rows}"
        ]
        if r.mode == "full":
            lines.append("load_dataset: every config loaded with the rows above")
        else:
            lines.append(f"load_dataset(streaming=True): {len(r.streamed)} configs, first rows decoded")
        if r.sampled:
            lines.append(
                f"sampled {len(r.sampled)} files: downloaded, sha256 checked, {r.sampled_images} images decoded"
            )
        return lines


@dataclass(frozen=True)
class ValidateResult(Described):
    """`synthset.validate(run)`: one report per config; `ok` is whether every check passed."""

    reports: list[ConfigReport]

    @property
    def ok(self) -> bool:
        return all(report.ok for report in self.reports)

    def lines(self) -> list[str]:
        from synthset.builders.validate import format_reports

        return format_reports(self.reports).splitlines()


@dataclass(frozen=True)
class StatusResult(Described):
    """`synthset.status(run)`: shards done, being made and pending; the workers; the ETA."""

    status: RunStatus
    slurm_tasks: list[TaskState] = field(default_factory=list)  # the run's SLURM array tasks, if it was submitted
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        from synthset.run.status import format_status

        labels = {worker: task.label for task in self.slurm_tasks for worker in task.workers}
        lines = format_status(self.status, labels).splitlines()
        if self.slurm_tasks:
            lines += ["", f"{'SLURM task':<14} {'state':<10} {'restarts':>8}  {'node':<12} workers"]
            for task in self.slurm_tasks:
                workers = ", ".join(task.workers) or "-"
                lines.append(f"{task.name:<14} {task.state:<10} {task.restarts:>8}  {task.node or '-':<12} {workers}")
        return lines


@dataclass(frozen=True)
class SubmitResult(Described):
    """`synthset.submit(run, options)`: the array job submitted, or (dry run) the script it would submit."""

    run: str
    submitted: Submitted | None = None
    script: str = ""

    def lines(self) -> list[str]:
        if self.submitted is None:
            return self.script.splitlines()
        s = self.submitted
        return [
            f"submitted SLURM job {s.job_id}: {s.workers} workers of {s.ranks} process(es) each; logs in {s.logs}",
            f"follow it with `synthset status {self.run}`; stop it with `synthset submit --cancel {self.run}`",
        ]


@dataclass(frozen=True)
class CancelResult(Described):
    """`synthset.cancel_submitted(run)`: the SLURM jobs cancelled."""

    run: str
    job_ids: list[str]

    def lines(self) -> list[str]:
        if not self.job_ids:
            return [f"{self.run}: no submitted job left to cancel"]
        return [f"cancelled SLURM job(s) {', '.join(self.job_ids)}; finished shards stay, a new submit resumes"]


@dataclass(frozen=True)
class CleanResult(Described):
    """`synthset.clean(run)`: what no plan row owns; `removed` says whether it is gone."""

    run: str
    root: Path
    unowned: Unowned
    removed: bool

    def lines(self) -> list[str]:
        groups = [
            ("shard files no plan row owns", self.unowned.stale_shards),
            ("temp files of killed processes", self.unowned.dead_temp_files),
            ("directories of killed builds", self.unowned.dead_builds),
        ]
        lines = []
        for what, paths in groups:
            if paths:
                lines.append(f"{what} ({len(paths)}):")
                lines += [f"  {path.relative_to(self.root).as_posix()}" for path in paths]
        if not self.unowned.paths:
            lines.append(f"{self.run}: nothing to clean")
        elif self.removed:
            lines.append(f"removed {len(self.unowned.paths)} paths")
        else:
            lines.append(f"run `synthset clean {self.run} --yes` to remove them")
        return lines


@dataclass(frozen=True)
class TrainResult(Described):
    """`synthset.training(config)`: the results table (None on a process that is not the main one)."""

    results: dict[str, Any] | None
    output_dir: Path
    card_file: str | None = None  # with to_card: where the results were stored for the card
    to_card: str | None = None

    def lines(self) -> list[str]:
        if self.results is None:
            return []
        if not self.results.get("complete", True):
            return [
                f"stopped after epoch {self.results['epochs_done']} of {self.results['epochs']}; "
                "run the same command to continue"
            ]
        from synthset.training.results import format_table

        lines = [format_table(self.results), f"results: {self.output_dir / 'results.json'}"]
        if self.card_file is not None:
            lines.append(
                f"added to the card's evaluation: {self.card_file}; run `synthset card {self.to_card}` to render it"
            )
        return lines
