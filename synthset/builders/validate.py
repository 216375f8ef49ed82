"""`synthset validate`: check a generated run against its plan before anyone trains on it or downloads it.

Per planned shard: a record made with the lock's settings for exactly these plan rows, and a file whose
size and sha256 are the recorded ones (`fast=True` checks sizes only). Per generation config and split:
every planned sample present exactly once (no duplicate `sample_id`, no plan row missing, nothing
unplanned), exact per-class counts, labels inside the class set, and every image decodes at the size the
recipe stores. Every problem names the file or sample at fault. Streams shard by shard: memory stays flat.

With a quality gate, a planned sample may be *dropped* (its shard's record lists it, with the reason and
every attempt's scores) instead of written: it counts as settled, not missing, and a class's expected
count is its planned count less its dropped samples. A class that lost samples is not a problem but a
note, printed with the report; a class left with no image at all is named as such.
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from synthset.run import objects
from synthset.run.classes_table import read_label_names
from synthset.run.ids import parse_shard_name
from synthset.run.lock import read_lock
from synthset.run.paths import RunDir
from synthset.run.plan import open_plan, plan_shard_names, read_planned_shard
from synthset.run.records import read_records, shard_problem

MAX_PROBLEMS_LISTED = 5


@dataclass
class ConfigReport:
    config: str
    split: str
    planned: int = 0
    found: int = 0
    dropped: int = 0  # planned samples the quality gate dropped (recorded in their shards' records)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # not problems: e.g. classes that lost samples to the gate

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, problem: str) -> None:
        self.problems.append(problem)


def expected_image_size(width: int, height: int, resize: int | None) -> tuple[int, int]:
    if resize is None or min(width, height) == resize:
        return width, height
    scale = resize / min(width, height)
    return round(width * scale), round(height * scale)


def _image_problem(data: bytes, expected: tuple[int, int]) -> str | None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            size = image.size
    except Exception as error:  # noqa: BLE001 - any decoder failure is a finding, not a crash
        return f"does not decode ({type(error).__name__})"
    return None if size == expected else f"is {size[0]}x{size[1]}, expected {expected[0]}x{expected[1]}"


def _relative(run: RunDir, path: Path) -> str:
    return path.relative_to(run.root).as_posix()


def validate_run(run_dir: str | Path | RunDir, fast: bool = False, images: bool = True) -> list[ConfigReport]:
    """Check a run against its plan (module docstring): `fast` checks file sizes, not sha256; `images=False`
    reads each shard's ids and labels but no image (build on an object store: no image byte to this host)."""
    from tqdm.auto import tqdm

    run = RunDir.planned(run_dir)
    lock = read_lock(run)
    recipe = lock.recipe
    label_names = read_label_names(run)
    num_classes = len(label_names)
    expected_size = expected_image_size(recipe.generator.width, recipe.generator.height, recipe.storage.resize)
    plan = open_plan(run)
    planned: dict[tuple[str, str], Counter] = {}
    planned_ids: dict[tuple[str, str], set[str]] = {}
    for batch in plan.iter_batches(columns=["sample_id", "config", "split", "label"]):
        for row in batch.to_pylist():
            key = (row["config"], row["split"])
            planned.setdefault(key, Counter())[row["label"]] += 1
            planned_ids.setdefault(key, set()).add(row["sample_id"])
    reports = {key: ConfigReport(key[0], key[1], planned=sum(c.values())) for key, c in planned.items()}

    def report_for(shard: str) -> ConfigReport:
        name = parse_shard_name(shard)
        key = (name.config, name.split)
        return reports.get(key) or reports.setdefault(key, ConfigReport(*key))

    records = read_records(run)
    names = plan_shard_names(plan)
    readable = []
    found: dict[tuple[str, str], Counter] = {key: Counter() for key in planned}
    dropped: dict[tuple[str, str], Counter] = {key: Counter() for key in planned}
    dropped_reasons: dict[tuple[tuple[str, str], int], Counter] = {}
    seen: set[str] = set()
    for i, name in enumerate(tqdm(names, desc="validate shards", unit="shard", disable=fast)):
        shard = read_planned_shard(plan, i, name)
        problem = shard_problem(run, shard, records, lock.generation_key, not fast)
        if problem is None:
            readable.append(name)
            planned_here = set(shard.sample_ids)
            shard_name = parse_shard_name(name)
            key = (shard_name.config, shard_name.split)
            for entry in records[name].dropped:
                if entry["sample_id"] not in planned_here or entry["sample_id"] in seen:
                    report_for(name).add(f"{entry['sample_id']}: recorded as dropped but not planned in {name}")
                    continue
                seen.add(entry["sample_id"])
                dropped.setdefault(key, Counter())[entry["label"]] += 1
                dropped_reasons.setdefault((key, entry["label"]), Counter())[entry["reason"]] += 1
                report_for(name).dropped += 1
            continue
        # The shard's own problem is the finding; its samples are not reported missing one by one too.
        for row in shard.rows.select(["sample_id", "config", "split", "label"]).to_pylist():
            seen.add(row["sample_id"])
            found[(row["config"], row["split"])][row["label"]] += 1
        if problem in ("no record", "shard file missing"):
            report_for(name).add(f"{_relative(run, run.shard_file(name))}: {problem} (run `synthset generate {run}`)")
        else:
            report_for(name).add(
                f"{_relative(run, run.shard_file(name))}: {problem}; `synthset generate {run}` makes it again"
            )
    for name in sorted(set(records) - set(names)):
        report_for(name).add(
            f"{_relative(run, run.shard_file(name))}: not in the plan (`synthset clean {run}` removes it)"
        )

    columns = ["sample_id", "config", "split", "label", *(["image"] if images else [])]
    paths = objects.read_ahead(run, [run.shard_file(name) for name in readable])  # a store: fetched ahead
    for path in tqdm(paths, total=len(readable), desc="validate rows", unit="shard"):
        with objects.parquet_file(run, path) as parquet:  # on an object store: range requests
            for batch in parquet.iter_batches(columns=columns):
                for row in batch.to_pylist():
                    key = (row["config"], row["split"])
                    report = reports.get(key) or reports.setdefault(key, ConfigReport(*key))
                    report.found += 1
                    sample_id = row["sample_id"]
                    if sample_id in seen:
                        report.add(f"{sample_id}: appears more than once (or is also recorded as dropped)")
                    seen.add(sample_id)
                    if sample_id not in planned_ids.get(key, ()):
                        report.add(f"{sample_id}: not in the plan")
                    if not 0 <= row["label"] < num_classes:
                        report.add(f"{sample_id}: label {row['label']} outside 0..{num_classes - 1}")
                    found.setdefault(key, Counter())[row["label"]] += 1
                    problem = _image_problem(row["image"]["bytes"], expected_size) if images else None
                    if problem:
                        report.add(f"{sample_id}: image {problem} ({_relative(run, path)})")
    for key, report in reports.items():
        missing = planned_ids.get(key, set()) - seen
        if missing:
            report.add(f"{len(missing)} planned samples missing (first: {min(missing)})")
        for label, count in sorted(planned.get(key, Counter()).items()):
            lost = dropped.get(key, Counter())[label]
            if found[key][label] != count - lost:
                less = f" less {lost} dropped" if lost else ""
                report.add(f"label {label}: {found[key][label]} images, planned {count}{less}")
            elif lost:
                reasons = ", ".join(f"{n} {why}" for why, n in sorted(dropped_reasons[(key, label)].items()))
                emptied = "; NO image left" if lost == count else ""
                name = f"label {label} ({label_names[label]})"
                report.notes.append(f"{name}: {lost} of {count} planned images dropped ({reasons}){emptied}")
    return sorted(reports.values(), key=lambda r: (r.config, r.split))


def format_reports(reports: list[ConfigReport]) -> str:
    lines = [f"{'config':<20} {'split':<8} {'planned':>9} {'found':>9} {'dropped':>9}  status"]
    for report in reports:
        status = "ok" if report.ok else f"{len(report.problems)} problems"
        lines.append(
            f"{report.config:<20} {report.split:<8} {report.planned:>9} {report.found:>9} {report.dropped:>9}  {status}"
        )
        for problem in report.problems[:MAX_PROBLEMS_LISTED]:
            lines.append(f"    {problem}")
        if len(report.problems) > MAX_PROBLEMS_LISTED:
            lines.append(f"    ... and {len(report.problems) - MAX_PROBLEMS_LISTED} more")
        lines += format_notes(report)
    return "\n".join(lines)


def format_notes(report: ConfigReport) -> list[str]:
    """The report's notes (classes that lost samples to the quality gate), emptied classes first."""
    notes = sorted(report.notes, key=lambda note: "NO image left" not in note)
    lines = [f"    note: {note}" for note in notes[:MAX_PROBLEMS_LISTED]]
    if len(notes) > MAX_PROBLEMS_LISTED:
        lines.append(f"    note: ... and {len(notes) - MAX_PROBLEMS_LISTED} more classes lost samples")
    return lines
