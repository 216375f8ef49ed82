"""`synthset review RUN`: one self-contained HTML page to look at a run's images before publishing them.

People judge a synthetic set by looking at it, and the Hub's viewer exists only after publishing. The page
has one contact sheet per class of every generation config, the worst classes first (most dropped or
flagged, then most redrawn, then the lowest mean CLIP score) and, within a class, the flagged images
first (NSFW, below the minimum CLIP score, near-duplicates), then the rest by CLIP score, lowest first.
Each thumbnail shows its CLIP score and NSFW result below it and its sample id, prompt, seed and attempt
on hover. The samples the quality gate redrew (their rejected attempts, then the kept image) and dropped
(every attempt) are shown apart, from the thumbnails the gate stored in `<shard>.rejects.parquet`.

It reads the recorded shards, so it works before `synthset build`. It is static and self-contained: no
script at all, thumbnails embedded as small WebP data URIs, and a Content-Security-Policy that forbids
anything but inline images and style, so the page opens from disk and text from the prompts (written by
LLMs) can do nothing even if it got past the escaping it always goes through.

Size: each thumbnail is at most `THUMB_PX` pixels and `THUMB_MAX_BYTES` bytes (quality lowered until it
fits) and each shown image at most `MAX_BYTES_PER_IMAGE` bytes of HTML with its caption, so a page of
1,000 classes x 16 shown images stays under 1,000 x 16 x MAX_BYTES_PER_IMAGE (+ the per-class headers).
Memory stays flat: a first pass reads the small columns and keeps, per class, only what it will show; a
second reads only the row groups that hold those images, and decodes only them. On an object-store run both
passes read the shards in the store by range requests (run/objects.py): no shard comes into scratch.
"""

from __future__ import annotations

import base64
import heapq
import html
import io
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from synthset.errors import SynthsetError
from synthset.fsutil import write_text_atomic
from synthset.run import objects
from synthset.run.ids import parse_shard_name
from synthset.run.lock import Lock, read_lock
from synthset.run.paths import RunDir
from synthset.run.plan import open_plan, plan_shard_names
from synthset.run.records import ShardRecord, read_records

THUMB_PX = 64
THUMB_QUALITIES = (60, 45, 30, 15)
THUMB_MAX_BYTES = 1536
PROMPT_CHARS = 160  # of the prompt in the hover text (the dataset has it whole)
MAX_BYTES_PER_IMAGE = 3600  # a figure's HTML: base64 thumbnail (<= 2048) + escaped caption and hover text
DEFAULT_PER_CLASS = 16
ROW_COLUMNS = ["sample_id", "label", "class_name", "prompt", "seed", "attempt", "clip_score", "nsfw_score", "nsfw",
               "near_duplicate_of", "rejected"]  # fmt: skip

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}
section.cls{border-top:1px solid #ddd;margin-top:1em}
h3 small{font-weight:normal;color:#555}
.sheet{display:flex;flex-wrap:wrap;gap:4px;margin:.3em 0}
figure{margin:0;width:68px;font-size:10px;text-align:center;overflow:hidden}
figcaption{overflow-wrap:anywhere;line-height:1.25}
nav.contents{columns:2 22em;margin:.5em 0 1em}nav.contents div{break-inside:avoid;margin-bottom:.6em}
nav.contents a{margin-right:.5em;white-space:nowrap}
figure img{width:64px;height:64px;border:2px solid #fff;image-rendering:auto}
figure.nsfw img{border-color:#c00;filter:blur(6px)}figure.nsfw:hover img{filter:none}
figure.low img{border-color:#e80}figure.dup img{border-color:#88f}
figure.rejected{opacity:.85}figure.kept-final img{border-color:#080}
.group{display:flex;gap:2px;padding:2px;border:1px dashed #bbb;margin:2px}
.tag{color:#c00;display:block}
"""


def thumbnail_data(data: bytes) -> str:
    """A `data:` URI of a WebP thumbnail at most THUMB_PX pixels and THUMB_MAX_BYTES bytes."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        small = image.convert("RGB")
    small.thumbnail((THUMB_PX, THUMB_PX))
    for quality in THUMB_QUALITIES:
        buffer = io.BytesIO()
        small.save(buffer, format="WEBP", quality=quality)
        if buffer.tell() <= THUMB_MAX_BYTES:
            break
    else:  # still too big at the lowest quality: halve it (a 32 px WebP never reaches the cap)
        small.thumbnail((THUMB_PX // 2, THUMB_PX // 2))
        buffer = io.BytesIO()
        small.save(buffer, format="WEBP", quality=THUMB_QUALITIES[-1])
    return "data:image/webp;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def esc(value: Any) -> str:
    """Every piece of text goes through here: prompts and class names are untrusted (LLM output, user lists)."""
    return html.escape(str(value), quote=True)


@dataclass
class Item:
    """One image on the page (a published row, or a rejected attempt) and what its caption says."""

    sample_id: str
    attempt: int
    seed: int
    prompt: str
    clip_score: float | None
    nsfw_score: float | None
    nsfw: bool | None
    status: str  # kept | nsfw | low_clip | near_duplicate (a rejected attempt's reason, or a kept image's flag)
    near_duplicate_of: str | None = None
    shard: str = ""  # where its image is: the shard (a published row) or its rejects file (an attempt)
    image: str = ""  # the data URI, filled in by the second pass


@dataclass
class ClassReview:
    config: str
    label: int
    class_name: str
    published: int = 0
    dropped: int = 0
    redrawn: int = 0
    flagged: int = 0  # published images with a flag (nsfw kept, below min CLIP, near-duplicate)
    clip_total: float = 0.0
    clip_count: int = 0
    shown: list = field(default_factory=list)  # heap of (-rank, Item): the per_class worst published images
    redraws: list = field(default_factory=list)  # (final Item, [rejected Items])
    drops: list = field(default_factory=list)  # (reason, [rejected Items])

    @property
    def mean_clip(self) -> float | None:
        return self.clip_total / self.clip_count if self.clip_count else None

    def worst_first_key(self) -> tuple:
        mean = self.mean_clip
        return (-(self.dropped + self.flagged), -self.redrawn, mean if mean is not None else math.inf, self.label)


@dataclass
class ConfigReview:
    name: str
    planned: int = 0
    settled: int = 0
    published: int = 0
    redrawn: int = 0
    dropped: Counter = field(default_factory=Counter)
    flagged_nsfw: int = 0  # NSFW-flagged images, any attempt
    near_duplicates: int = 0
    shards_done: int = 0
    shards: int = 0
    classes: dict[int, ClassReview] = field(default_factory=dict)


def _item(row: dict[str, Any], status: str, shard: str) -> Item:
    return Item(row["sample_id"], row["attempt"], row["seed"], row.get("prompt") or "", row["clip_score"],
                row["nsfw_score"], row["nsfw"], status, row.get("near_duplicate_of"), shard)  # fmt: skip


def _flag(row: dict[str, Any], min_clip: float | None) -> str:
    if row["nsfw"]:
        return "nsfw"
    if min_clip is not None and row["clip_score"] is not None and row["clip_score"] < min_clip:
        return "low_clip"
    if row["near_duplicate_of"] is not None:
        return "near_duplicate"
    return "kept"


FLAG_RANK = {"nsfw": 0, "low_clip": 1, "near_duplicate": 2, "kept": 3}
STATUS_CLASS = {"nsfw": "nsfw", "low_clip": "low", "near_duplicate": "dup"}


def _rank(item: Item) -> tuple:
    """Flagged first, then the lowest CLIP score (what a reviewer must look at first)."""
    score = item.clip_score if item.clip_score is not None else math.inf
    return (FLAG_RANK[item.status], score, item.sample_id)


class _Reversed:
    """Orders heap entries so the heap's top is the *least* worth showing (popped when a worse one comes)."""

    __slots__ = ("key", "item")

    def __init__(self, item: Item) -> None:
        self.key, self.item = _rank(item), item

    def __lt__(self, other: _Reversed) -> bool:
        return self.key > other.key


def _read_rows(run: RunDir, shard: str, cfg: ConfigReview, min_clip: float | None, per_class: int) -> None:
    """The first pass over one shard: counts, and per class only the images it will show (a bounded heap)."""
    with objects.parquet_file(run, run.shard_file(shard)) as parquet:  # no image column: range requests
        _read_groups(parquet, shard, cfg, min_clip, per_class)


def _read_groups(
    parquet: pq.ParquetFile, shard: str, cfg: ConfigReview, min_clip: float | None, per_class: int
) -> None:
    for group in range(parquet.num_row_groups):
        for row in parquet.read_row_group(group, columns=ROW_COLUMNS).to_pylist():
            cls = cfg.classes.setdefault(row["label"], ClassReview(cfg.name, row["label"], row["class_name"]))
            cls.published += 1
            cfg.published += 1
            status = _flag(row, min_clip)
            cls.flagged += status != "kept"
            cfg.near_duplicates += row["near_duplicate_of"] is not None
            cfg.flagged_nsfw += bool(row["nsfw"]) + sum(bool(a["nsfw"]) for a in row["rejected"] or [])
            if row["clip_score"] is not None:
                cls.clip_total += row["clip_score"]
                cls.clip_count += 1
            entry = _Reversed(_item(row, status, shard))
            if len(cls.shown) < per_class:
                heapq.heappush(cls.shown, entry)
            elif cls.shown[0] < entry:
                heapq.heapreplace(cls.shown, entry)
            if row["attempt"]:
                cls.redrawn += 1
                cfg.redrawn += 1
                if len(cls.redraws) < per_class:
                    tries = [
                        _item({**row, **a, "near_duplicate_of": None}, a["reason"], shard) for a in row["rejected"]
                    ]
                    cls.redraws.append((_item(row, "kept-final", shard), tries))


def _read_dropped(record: ShardRecord, cfg: ConfigReview, names: list[str], per_class: int) -> None:
    """The samples a shard's record lists as dropped (their attempts' images are in its rejects file)."""
    for entry in record.dropped:
        label = entry["label"]
        cls = cfg.classes.setdefault(label, ClassReview(cfg.name, label, names[label]))
        cls.dropped += 1
        cfg.dropped[entry["reason"]] += 1
        cfg.near_duplicates += entry["reason"] == "near_duplicate"
        cfg.flagged_nsfw += sum(bool(a["nsfw"]) for a in entry["attempts"])
        cfg.redrawn += len(entry["attempts"]) > 1
        cls.redrawn += len(entry["attempts"]) > 1
        if len(cls.drops) < per_class:
            base = {"sample_id": entry["sample_id"], "prompt": "", "near_duplicate_of": None}
            tries = [_item({**base, **a}, a["reason"], record.shard) for a in entry["attempts"]]
            cls.drops.append((entry["reason"], tries))


def _fill_images(
    run: RunDir, shard: str, wanted: dict[str, list[Item]], rejected: dict[tuple, Item], rejected_images: bool
) -> None:
    """The second pass over one shard: thumbnails of the chosen rows, and of the chosen rejected attempts
    (with `rejected_images` off, only their prompts: a published review shows no rejected image)."""
    with objects.parquet_file(run, run.shard_file(shard)) as parquet:
        for group in range(parquet.num_row_groups):
            _fill_group(parquet, group, wanted)
    rejects = run.rejects_file(shard)
    if rejected and objects.exists(run, rejects):
        with objects.parquet_file(run, rejects) as parquet:
            table = parquet.read(columns=["sample_id", "attempt", "prompt", "thumbnail"]).to_pydict()
        for sample_id, attempt, prompt, thumb in zip(*table.values(), strict=True):
            attempt_item = rejected.get((sample_id, attempt))
            if attempt_item is not None:
                attempt_item.image = thumbnail_data(thumb["bytes"]) if rejected_images else ""
                attempt_item.prompt = attempt_item.prompt or prompt


def _fill_group(parquet: pq.ParquetFile, group: int, wanted: dict[str, list[Item]]) -> None:
    """One row group: its ids first; its images only when it holds a row shown (on an object store, the
    thumbnails' rows are all this stage reads of the images)."""
    ids = parquet.read_row_group(group, columns=["sample_id"]).column("sample_id").to_pylist()
    rows = [row for row, sample_id in enumerate(ids) if sample_id in wanted]
    if not rows:
        return
    images = parquet.read_row_group(group, columns=["image"]).column("image")
    for row in rows:
        for item in wanted[ids[row]]:
            item.image = thumbnail_data(images[row].as_py()["bytes"])


def collect_review(run: RunDir, lock: Lock, per_class: int, with_rejected_images: bool = True) -> list[ConfigReview]:
    """Per generation config and class: counts, and the images to show (thumbnails filled in)."""
    from synthset.run.classes_table import read_label_names

    quality = lock.recipe.quality
    min_clip = quality.min_clip_score if quality is not None else None
    names = read_label_names(run)
    plan = open_plan(run)
    shards = plan_shard_names(plan)
    records = read_records(run)
    configs = {c.name: ConfigReview(c.name) for c in lock.recipe.configs}
    for i, shard in enumerate(shards):
        configs[parse_shard_name(shard).config].planned += plan.shard_rows[i]
    done = []
    for shard in shards:
        cfg = configs[parse_shard_name(shard).config]
        cfg.shards += 1
        record = records.get(shard)
        if (
            record is None
            or record.generation_key != lock.generation_key
            or not objects.exists(run, run.shard_file(shard))
        ):
            continue
        cfg.shards_done += 1
        cfg.settled += record.settled
        done.append(shard)
    for shard, _ in zip(done, objects.read_ahead(run, [run.shard_file(s) for s in done]), strict=True):
        cfg = configs[parse_shard_name(shard).config]
        _read_rows(run, shard, cfg, min_clip, per_class)
        _read_dropped(records[shard], cfg, names, per_class)
    wanted: dict[str, dict[str, list[Item]]] = {}  # shard -> sample id -> the published rows to show
    rejected: dict[str, dict[tuple, Item]] = {}  # shard -> (sample id, attempt) -> the rejected attempts to show
    for cfg in configs.values():
        for cls in cfg.classes.values():
            cls.shown = [entry.item for entry in sorted(cls.shown, reverse=True)]  # worst first
            for item in cls.shown + [final for final, _ in cls.redraws]:
                wanted.setdefault(item.shard, {}).setdefault(item.sample_id, []).append(item)
            for _, tries in cls.redraws + cls.drops:
                for attempt in tries:
                    rejected.setdefault(attempt.shard, {})[(attempt.sample_id, attempt.attempt)] = attempt
    for shard in done:  # the second pass: only the shards (and rejects files) that hold something shown
        if shard in wanted or shard in rejected:
            _fill_images(run, shard, wanted.get(shard, {}), rejected.get(shard, {}), with_rejected_images)
    return list(configs.values())


# -- HTML ------------------------------------------------------------------------------------------------
def _score(value: float | None, digits: int = 1) -> str:
    """A score as a person reads it: rounded, never `-0.00` (a tiny negative shown as zero), `-` when absent."""
    return "-" if value is None else f"{round(value, digits) + 0.0:.{digits}f}"


STATUS_LABELS = {"near_duplicate": "near-dup.", "low_clip": "low CLIP", "nsfw": "NSFW"}  # short: fits a caption


def figure(item: Item, classes: str = "") -> str:
    """One thumbnail with its scores below and its provenance on hover; every text escaped."""
    verdict = "not checked" if item.nsfw is None else ("FLAGGED" if item.nsfw else "ok")
    prompt = item.prompt if len(item.prompt) <= PROMPT_CHARS else item.prompt[:PROMPT_CHARS] + "..."
    hover = (
        f"{item.sample_id} attempt {item.attempt} seed {item.seed}\n{prompt}\nCLIP {_score(item.clip_score, 2)}, "
        f"NSFW {verdict} ({_score(item.nsfw_score, 3)})"
        + (f"\nnear-duplicate of {item.near_duplicate_of}" if item.near_duplicate_of else "")
    )
    css = [classes, STATUS_CLASS.get(item.status, ""), "nsfw" if item.nsfw else ""]
    label = STATUS_LABELS.get(item.status, item.status)
    tag = "" if item.status in ("kept", "kept-final") else f'<span class="tag">{esc(label)}</span>'
    nsfw = verdict  # the checker's raw score (a margin around its threshold) is in the hover text
    if item.image:
        image = f'<img src="{esc(item.image)}" alt="{esc(item.sample_id)}" width="{THUMB_PX}" height="{THUMB_PX}">'
    else:  # a published review leaves the rejected attempts' images out
        image = f'<div style="width:{THUMB_PX}px;height:{THUMB_PX}px;background:#eee"></div>'
    return (
        f'<figure class="{esc(" ".join(c for c in css if c))}" title="{esc(hover)}">{image}'
        f"<figcaption>CLIP {_score(item.clip_score)}<br>NSFW {esc(nsfw)}{tag}</figcaption></figure>"
    )


def _anchor(cls: ClassReview) -> str:
    """The id of a class's section: `<config>-<label>` (config names are identifiers, labels integers)."""
    return f"{esc(cls.config)}-{cls.label}"


def _links(classes: list[ClassReview], suffix: str = "") -> str:
    return "".join(f'<a href="#{_anchor(c)}{suffix}">{esc(c.class_name)}</a>' for c in classes) or "none"


def table_of_contents(configs: list[ConfigReview]) -> str:
    """Links to every config and class (worst first, as the page orders them), and to each class's flagged
    images and its redrawn and dropped samples, so a long page is read from its problems down."""
    blocks = []
    for cfg in configs:
        classes = sorted(cfg.classes.values(), key=ClassReview.worst_first_key)
        blocks.append(
            f'<div><a href="#config-{esc(cfg.name)}"><b>{esc(cfg.name)}</b></a><br>'
            f"flagged: {_links([c for c in classes if c.flagged])}<br>"
            f"redrawn: {_links([c for c in classes if c.redraws], '-redrawn')}<br>"
            f"dropped: {_links([c for c in classes if c.drops], '-dropped')}<br>"
            f"classes: {_links(classes)}</div>"
        )
    return '<nav class="contents" id="contents"><h2>Contents</h2>' + "\n".join(blocks) + "</nav>"


def _class_section(cls: ClassReview) -> str:
    mean = "-" if cls.mean_clip is None else f"{cls.mean_clip:.2f}"
    parts = [
        f'<section class="cls" id="{_anchor(cls)}" data-config="{esc(cls.config)}" '
        f'data-label="{cls.label}" data-published="{cls.published}" data-dropped="{cls.dropped}" '
        f'data-redrawn="{cls.redrawn}" data-shown="{len(cls.shown)}">',
        f"<h3>{esc(cls.class_name)} <small>{esc(cls.config)} · label {cls.label} · {cls.published} published · "
        f"{cls.flagged} flagged · {cls.redrawn} redrawn · {cls.dropped} dropped · mean CLIP {mean}</small></h3>",
        '<div class="sheet published">' + "".join(figure(item) for item in cls.shown) + "</div>",
    ]
    if cls.published > len(cls.shown):
        parts.append(
            f"<p>{len(cls.shown)} of {cls.published} published images shown, flagged and lowest CLIP first.</p>"
        )
    if cls.redraws:
        first = f", first {len(cls.redraws)}" if cls.redrawn > len(cls.redraws) else ""
        parts.append(
            f'<h4 id="{_anchor(cls)}-redrawn">Redrawn ({cls.redrawn}{first}): rejected attempts, '
            "then the kept image</h4>"
        )
        groups = [
            '<div class="group">'
            + "".join(figure(a, "rejected") for a in tries)
            + figure(final, "kept-final")
            + "</div>"
            for final, tries in cls.redraws
        ]
        parts.append('<div class="sheet redrawn">' + "".join(groups) + "</div>")
    if cls.drops:
        parts.append(f'<h4 id="{_anchor(cls)}-dropped">Dropped ({cls.dropped}): every attempt</h4>')
        groups = [
            '<div class="group">' + "".join(figure(a, "rejected") for a in tries) + "</div>" for _, tries in cls.drops
        ]
        parts.append('<div class="sheet dropped">' + "".join(groups) + "</div>")
    parts.append("</section>")
    return "\n".join(parts)


def render_review(run_name: str, provenance: str, configs: list[ConfigReview], note: str = "") -> str:
    rows = []
    for cfg in configs:
        dropped = ", ".join(f"{n} {reason}" for reason, n in sorted(cfg.dropped.items()))
        rows.append(
            f'<tr data-config="{esc(cfg.name)}"><td>{esc(cfg.name)}</td><td data-count="planned">{cfg.planned}</td>'
            f'<td data-count="shards">{cfg.shards_done} / {cfg.shards}</td>'
            f'<td data-count="published">{cfg.published}</td>'
            f'<td data-count="redrawn">{cfg.redrawn}</td><td data-count="dropped">{sum(cfg.dropped.values())}</td>'
            f'<td>{esc(dropped or "-")}</td><td data-count="flagged">{cfg.flagged_nsfw}</td>'
            f'<td data-count="near_duplicates">{cfg.near_duplicates}</td></tr>'
        )
    sections = []
    for cfg in configs:
        sections.append(f'<section class="config" id="config-{esc(cfg.name)}"><h2>{esc(cfg.name)}</h2>')
        classes = sorted(cfg.classes.values(), key=ClassReview.worst_first_key)
        sections += [_class_section(cls) for cls in classes]
        sections.append("</section>")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>synthset review: {esc(run_name)}</title><style>{STYLE}</style></head>
<body>
<h1>Review: {esc(run_name)}</h1>
<p>Provenance <code>{esc(provenance)}</code>. Classes are ordered worst first (dropped and flagged images,
then redraws, then the lowest mean CLIP score); within a class, flagged images first, then the lowest CLIP
score. Red: flagged NSFW (blurred; hover to see), orange: below the minimum CLIP score, blue: near-duplicate.
Hover over an image for its sample id, prompt, seed and attempt. {esc(note)}</p>
<table class="summary"><tr><th>config</th><th>planned</th><th>shards done</th><th>published</th><th>redrawn</th>
<th>dropped</th><th>why</th><th>NSFW flagged</th><th>near-duplicates</th></tr>
{chr(10).join(rows)}
</table>
{table_of_contents(configs)}
{chr(10).join(sections)}
</body></html>
"""


@dataclass(frozen=True)
class ReviewResult:
    path: Path
    configs: list[ConfigReview]
    bytes: int


def write_review(
    run_dir: str | Path | RunDir, out: Path | None = None, per_class: int = DEFAULT_PER_CLASS, publish: bool = False
) -> ReviewResult:
    """Write the review page: RUN/review.html, or with `publish` RUN/dataset/review.html (no rejected images)."""
    run = RunDir.planned(run_dir)
    if per_class < 1:
        raise SynthsetError(f"--per-class must be at least 1, got {per_class}")
    if publish and not run.dataset_readme.is_file():
        raise SynthsetError(f"{run}: no dataset/ to publish the review with; run `synthset build {run}` first")
    lock = read_lock(run)
    configs = collect_review(run, lock, per_class, with_rejected_images=not publish)
    note = "Rejected attempts are listed with their scores only: their images are not published." if publish else ""
    text = render_review(lock.recipe.name, lock.provenance, configs, note)
    path = out or (run.dataset_dir / run.review_file.name if publish else run.review_file)
    write_text_atomic(path, text)
    return ReviewResult(path, configs, len(text.encode("utf-8")))
