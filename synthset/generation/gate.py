"""The quality gate's policy: keep, redraw or drop each scored image, and what the rows then record.

A sample starts at attempt 0 with the plan's seed. An image the policy rejects is drawn again as the next
attempt, whose seed comes from (recipe seed, sample_id, attempt) alone (`synthset.run.ids.attempt_seed`),
until it passes or `max_redraws` is spent; then it is dropped (nsfw) or kept or dropped (`low_clip`). The
kept row stores the seed and number of its attempt and the scores of every attempt rejected before it, so
it regenerates from its own columns. A dropped sample is recorded in its shard's record with every
attempt's scores, so validate, build and the card count it as planned-but-dropped, never as missing.

Everything here is a function of the shard's plan rows: the order in which samples are judged (plan
order, then each redraw round in plan order) and the images kept before each one (the near-duplicate
check) do not depend on the worker, so the shard's bytes are the same on 1 or N processes and after a
restart. Near-duplicates are looked for among the kept images of a class *within the shard*: comparing
across shards would make one shard's contents depend on another worker's output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from synthset.run.ids import attempt_seed

if TYPE_CHECKING:
    from PIL.Image import Image

    from synthset.generation.screening import ImageScores
    from synthset.recipe import QualitySpec

KEEP, REDRAW, DROP = "keep", "redraw", "drop"
UNSCREENED_COLUMNS: dict[str, Any] = {
    "clip_score": None,
    "nsfw_score": None,
    "nsfw": None,
    "attempt": 0,
    "near_duplicate_of": None,
    "rejected": [],
}


@dataclass
class Attempt:
    """One draw of a planned sample: its plan row, attempt number, and the attempts rejected before it."""

    row: dict[str, Any]
    number: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def pipeline_row(self, recipe_seed: int) -> dict[str, Any]:
        """The plan row with this attempt's seed: what the pipeline (and the stored row) gets."""
        if self.number == 0:
            return self.row
        return {**self.row, "seed": attempt_seed(recipe_seed, self.row["sample_id"], self.number)}


@dataclass(frozen=True)
class Verdict:
    action: str  # keep | redraw | drop
    reason: str | None = None  # nsfw | low_clip | near_duplicate: why it was not kept (or why kept below)
    near_duplicate_of: str | None = None


def judge(quality: QualitySpec, scores: ImageScores, attempt: int, near_duplicate_of: str | None) -> Verdict:
    """The policy for one image: NSFW first, then the CLIP score, then near-duplicates."""
    if scores.nsfw and quality.nsfw != "keep":
        if quality.nsfw == "redraw" and attempt < quality.max_redraws:
            return Verdict(REDRAW, "nsfw")
        return Verdict(DROP, "nsfw")
    minimum, score = quality.min_clip_score, scores.clip_score
    if minimum is not None and score is not None and score < minimum:
        if attempt < quality.max_redraws:
            return Verdict(REDRAW, "low_clip")
        if quality.low_clip == "drop":
            return Verdict(DROP, "low_clip")
    if near_duplicate_of is not None and quality.near_duplicates is not None and quality.near_duplicates.drop:
        return Verdict(DROP, "near_duplicate", near_duplicate_of)
    return Verdict(KEEP, None, near_duplicate_of)


class NearDuplicates:
    """The kept images' CLIP embeddings of each class in one shard, to find an image's nearest earlier twin."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._kept: dict[int, tuple[list[Any], list[str]]] = {}

    def twin_of(self, label: int, embedding: Any) -> str | None:
        """The sample id of the most similar kept image of the class at or above the threshold, if any."""
        import torch

        embeddings, ids = self._kept.get(label, ([], []))
        if not ids:
            return None
        similarity = torch.stack(embeddings) @ embedding
        best = int(similarity.argmax())
        return ids[best] if float(similarity[best]) >= self.threshold else None

    def add(self, label: int, embedding: Any, sample_id: str) -> None:
        embeddings, ids = self._kept.setdefault(label, ([], []))
        embeddings.append(embedding)
        ids.append(sample_id)


def attempt_entry(pipeline_row: dict[str, Any], number: int, scores: ImageScores, reason: str) -> dict[str, Any]:
    """One rejected attempt as the `rejected` column, the record and the rejects file store it."""
    return {
        "attempt": number,
        "seed": pipeline_row["seed"],
        "reason": reason,
        "clip_score": scores.clip_score,
        "nsfw_score": scores.nsfw_score,
        "nsfw": scores.nsfw,
    }


@dataclass
class BatchOutcome:
    """What one scored pipeline batch gives the writer, and which samples go round again."""

    kept_rows: list[dict[str, Any]] = field(default_factory=list)
    kept_images: list[Image] = field(default_factory=list)
    rejected_rows: list[dict[str, Any]] = field(default_factory=list)  # one per rejected image (rejects file)
    rejected_images: list[Image] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)  # for the shard record
    redraw: list[Attempt] = field(default_factory=list)
    near_duplicates: int = 0

    @property
    def settled(self) -> int:
        return len(self.kept_rows) + len(self.dropped)


def judge_batch(
    quality: QualitySpec,
    attempts: list[Attempt],
    pipeline_rows: list[dict[str, Any]],
    images: list[Image],
    scores: list[ImageScores],
    decided: list[dict[str, Any]],
    constant_columns: dict[str, Any],
    twins: NearDuplicates | None,
) -> BatchOutcome:
    """Judge the batch's real rows (the padding is scored but not judged) one by one, in batch order."""
    outcome = BatchOutcome()
    for attempt, row, image, score, chosen in zip(attempts, pipeline_rows, images, scores, decided, strict=False):
        twin = None
        if twins is not None and score.embedding is not None:
            twin = twins.twin_of(row["label"], score.embedding)
        verdict = judge(quality, score, attempt.number, twin)
        if verdict.action == KEEP:
            outcome.kept_rows.append(
                {
                    **row,
                    **constant_columns,
                    **chosen,
                    "clip_score": score.clip_score,
                    "nsfw_score": score.nsfw_score,
                    "nsfw": score.nsfw,
                    "attempt": attempt.number,
                    "near_duplicate_of": verdict.near_duplicate_of,
                    "rejected": attempt.rejected,
                }
            )
            outcome.kept_images.append(image)
            outcome.near_duplicates += verdict.near_duplicate_of is not None
            if twins is not None and score.embedding is not None:
                twins.add(row["label"], score.embedding, row["sample_id"])
            continue
        entry = attempt_entry(row, attempt.number, score, verdict.reason or "")
        outcome.rejected_rows.append(
            {**entry, **{k: row[k] for k in ("sample_id", "config", "label", "class_name", "prompt")}}
        )
        outcome.rejected_images.append(image)
        rejected = [*attempt.rejected, entry]
        if verdict.action == REDRAW:
            outcome.redraw.append(Attempt(attempt.row, attempt.number + 1, rejected))
        else:
            outcome.near_duplicates += verdict.reason == "near_duplicate"
            outcome.dropped.append(
                {
                    "sample_id": row["sample_id"],
                    "label": row["label"],
                    "reason": verdict.reason,
                    "near_duplicate_of": verdict.near_duplicate_of,
                    "attempts": rejected,
                }
            )
    return outcome
