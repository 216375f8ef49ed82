"""The LAR stage of planning: resolve the meaning of every selected class, resumably.

Results are appended, one JSON line per class, to `cache/lar-<key>.jsonl` as they are computed (only
the single plan process writes it), so a killed plan resumes at the next class; the finished results
land in classes.parquet. The key covers everything that decides them: LAR and real-image settings,
the LLM when it contributes meanings, and the selected classes.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from synthset.generation.lar import load_clip, meanings_request, parse_meanings, resolve_class_meaning
from synthset.run.classes_table import LARResult, read_lar_results
from synthset.run.ids import sample_seed

if TYPE_CHECKING:
    from synthset.classes import ClassInfo
    from synthset.generation.llm import LLMCache
    from synthset.recipe import Recipe
    from synthset.run.paths import RunDir

logger = logging.getLogger(__name__)
# Classes whose meanings are asked for in one call: enough to keep several LLM servers busy, few enough
# that a stopped plan loses little (each class's result is appended to the partial file once scored).
MEANINGS_AT_ONCE = 64


def lar_key(recipe: Recipe, selected: list[ClassInfo], with_llm: bool) -> str:
    data = {
        "lar": recipe.lar.model_dump(mode="json"),
        "real_images": recipe.real_images.model_dump(mode="json") if recipe.real_images else None,
        "llm": recipe.prompts.llm.model_dump(mode="json") if with_llm else None,
        "candidates": recipe.lar_candidates(),
        "labels": [info.label for info in selected],
        "seed": recipe.seed,
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _read_partial(path: Path) -> dict[int, LARResult]:
    done = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                data = json.loads(line)
            except ValueError:
                break  # a line cut by a crash: everything after it is redone
            label = data.pop("label")
            done[label] = LARResult(**data)
    return done


def resolve_meanings(
    recipe: Recipe, run: RunDir, classes: list[ClassInfo], selected: list[ClassInfo], llm: LLMCache | None
) -> tuple[dict[int, LARResult], str, int]:
    """(label -> LARResult for every selected class, the LAR key, real images that failed to decode)."""
    from tqdm.auto import tqdm

    key = lar_key(recipe, selected, llm is not None)
    stored = read_lar_results(run, key)
    if stored is not None and all(info.label in stored for info in selected):
        return stored, key, 0
    partial_path = run.cache_dir / f"lar-{key}.jsonl"
    partial_path.parent.mkdir(parents=True, exist_ok=True)
    results = _read_partial(partial_path)
    real_images = None
    if recipe.real_images is not None:
        from synthset.generation.real_images import open_real_images

        real_images = open_real_images(recipe.real_images, classes)
    scorer = None

    def scorer_factory():
        nonlocal scorer
        if scorer is None:
            scorer = load_clip(recipe.lar)
        return scorer

    todo = [info for info in selected if info.label not in results]
    source = recipe.lar_candidates()
    ask_llm = llm is not None and source in ("llm", "both")
    with (
        open(partial_path, "a", encoding="utf-8") as partial,
        tqdm(total=len(todo), desc="label ambiguity resolution", unit="class", disable=None if todo else True) as bar,
    ):
        for start in range(0, len(todo), MEANINGS_AT_ONCE):
            chunk = todo[start : start + MEANINGS_AT_ONCE]
            extras: list[list[str] | None] = [None] * len(chunk)
            if ask_llm and llm is not None:  # one call for the chunk: the LLM servers answer its classes concurrently
                requests = [meanings_request(info, sample_seed(recipe.seed, f"lar/{info.label}")) for info in chunk]
                extras = [parse_meanings(text) for text in llm.complete(requests)]
            for info, extra in zip(chunk, extras, strict=True):
                result = resolve_class_meaning(
                    info, real_images, scorer_factory, recipe.lar.images_per_class, extra, source
                )
                results[info.label] = result
                partial.write(json.dumps({"label": info.label, **asdict(result)}) + "\n")
                partial.flush()
                bar.update(1)
    failures = real_images.decode_failures if real_images is not None else 0
    if failures:
        logger.warning("%d real images could not be decoded and were skipped", failures)
    return results, key, failures
