"""The quality gate: per-image scores, the keep / redraw / drop policy, near-duplicates, and exactly-once
with redraws (1 vs 2 processes, SIGKILL + resume, a redrawn row regenerated from its columns alone).

Every run uses the tiny offline models. Their scores are whatever random weights give, so the thresholds
that make a run interesting (some images flagged, some not) are calibrated on a `keep` run of the same
plan: attempt 0 of every sample is the same image in every run, whatever the policy.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import BASE_RECIPE, TINY_QUALITY, deep_update
from helpers import (
    REPO,
    accelerate_launch_command,
    generate_killed_after,
    images_by_sample,
    shard_hashes,
    synthset_cli,
    synthset_command,
)

from synthset.builders.assemble import build_dataset
from synthset.builders.validate import validate_run
from synthset.cards import write_card
from synthset.generation.plan import plan_run
from synthset.generation.runner import generate_run
from synthset.recipe import load_recipe
from synthset.run.ids import attempt_seed, sample_seed
from synthset.run.paths import RunDir
from synthset.run.records import read_records

# Class names as hostile as a class list (or an LLM) can make them: they reach prompts, cards and the review.
CLASS_NAMES = ["tench", '<script>alert("x")</script>', 'gold & "fish" | <b>bold</b>']
CONFIG = "custom_2shot"


def _write(root: Path, name: str, quality: dict | None, changes: dict | None = None) -> Path:
    classes = root / "classes.txt"
    classes.write_text("".join(f"{n}\n" for n in CLASS_NAMES))
    data = deep_update(
        {
            **BASE_RECIPE,
            "name": name,
            "output_dir": str(root / "runs"),
            "builder": "synth_fewshot",
            "classes": {"set": str(classes)},
            "configs": [{"name": CONFIG, "strategy": "naive", "images_per_class": 5}],
            **({"quality": quality} if quality is not None else {}),
        },
        changes or {},
    )
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _run(root: Path, name: str, quality: dict | None, changes: dict | None = None) -> Path:
    recipe = load_recipe(_write(root, name, quality, changes))
    plan_run(recipe)
    generate_run(recipe.run_dir)
    return Path(recipe.run_dir)


def rows_by_sample(run_dir: Path) -> dict[str, dict]:
    """sample_id -> the row's columns (not the image), over every recorded shard, with its shard and position."""
    rows = {}
    for name in sorted(read_records(RunDir(run_dir))):
        table = pq.read_table(RunDir(run_dir).shard_file(name)).drop_columns(["image"]).to_pylist()
        for position, row in enumerate(table):
            rows[row["sample_id"]] = {**row, "shard": name, "position": position}
    return rows


def dropped_by_sample(run_dir: Path) -> dict[str, dict]:
    return {
        e["sample_id"]: {**e, "shard": name} for name, r in read_records(RunDir(run_dir)).items() for e in r.dropped
    }


def midpoint_above(values: list[float], share: float) -> float:
    """A cut between two neighbouring values with about `share` of them above it, where their gap is widest."""
    ordered = sorted(values)
    low = max(1, int(len(ordered) * (1 - share)) - 2)
    high = min(len(ordered) - 1, low + 4)
    i = max(range(low, high), key=lambda k: ordered[k] - ordered[k - 1])
    return (ordered[i] + ordered[i - 1]) / 2


def clip_embeddings(images: dict[str, bytes]) -> dict[str, np.ndarray]:
    """The tiny CLIP's normalized image embeddings of stored images, to check near-duplicates independently."""
    import open_clip
    import torch
    from PIL import Image

    from synthset.models import open_clip_reference

    name, _, _ = open_clip_reference(TINY_QUALITY["clip_model"], None, "test")
    model, _, preprocess = open_clip.create_model_and_transforms(name)
    model.eval()
    ids = sorted(images)
    with torch.inference_mode():
        pixels = torch.stack([preprocess(Image.open(io.BytesIO(images[i])).convert("RGB")) for i in ids])
        embeddings = model.encode_image(pixels).float()
    embeddings = embeddings / embeddings.norm(dim=-1, keepdim=True)
    return dict(zip(ids, embeddings.numpy(), strict=True))


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("quality")


@pytest.fixture(scope="module")
def keep_run(root: Path) -> Path:
    """Every image scored and kept (`nsfw: keep`, no minimum): the scores of every sample's attempt 0."""
    return _run(root, "keep", {**TINY_QUALITY, "nsfw": "keep", "max_redraws": 0})


@pytest.fixture(scope="module")
def calibrated(keep_run: Path) -> dict:
    """Thresholds that flag some of the tiny models' images and not others."""
    rows = rows_by_sample(keep_run)
    embeddings = clip_embeddings(images_by_sample(keep_run))
    within = []
    for a, row in rows.items():
        for b, other in rows.items():
            if a < b and row["label"] == other["label"] and row["shard"] == other["shard"]:
                within.append(float(embeddings[a] @ embeddings[b]))
    return {
        "nsfw_adjustment": round(-midpoint_above([r["nsfw_score"] for r in rows.values()], 0.4), 4),
        "min_clip_score": round(midpoint_above([r["clip_score"] for r in rows.values()], 0.7), 3),
        "near_duplicates": {"threshold": round(midpoint_above(within, 0.3), 5)},
    }


@pytest.fixture(scope="module")
def redraw_quality(calibrated: dict) -> dict:
    return {**TINY_QUALITY, **calibrated, "nsfw": "redraw", "max_redraws": 2}


@pytest.fixture(scope="module")
def redraw_run(root: Path, redraw_quality: dict) -> Path:
    return _run(root, "redraw", redraw_quality)


@pytest.fixture(scope="module")
def drop_run(root: Path, calibrated: dict) -> Path:
    """NSFW dropped at once, low CLIP dropped after one redraw, near-duplicates dropped: every drop reason."""
    quality = {
        **TINY_QUALITY,
        **calibrated,
        "nsfw": "drop",
        "low_clip": "drop",
        "max_redraws": 1,
        "near_duplicates": {**calibrated["near_duplicates"], "drop": True},
    }
    run_dir = _run(root, "drop", quality)
    build_dataset(run_dir)
    write_card(run_dir, license="apache-2.0")
    return run_dir


# -- scores and seeds ------------------------------------------------------------------------------------
def test_keep_policy_scores_every_image_and_keeps_it(keep_run: Path):
    rows = rows_by_sample(keep_run)
    assert len(rows) == 15 and dropped_by_sample(keep_run) == {}
    assert {r["attempt"] for r in rows.values()} == {0} and all(r["rejected"] == [] for r in rows.values())
    assert all(0.0 <= r["clip_score"] <= 100.0 for r in rows.values())
    assert all(r["nsfw"] == (r["nsfw_score"] > 0) for r in rows.values())
    assert all(r["seed"] == sample_seed(7, sample_id) for sample_id, r in rows.items())
    assert not list(RunDir(keep_run).shards_dir.rglob("*.rejects.parquet"))


def test_checker_scores_are_the_diffusers_forward_decision(synthset_home: Path):
    """The gate computes the score that StableDiffusionSafetyChecker.forward thresholds; their flags agree."""
    import copy

    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from PIL import Image
    from transformers import CLIPImageProcessor

    from synthset.generation.screening import checker_scores

    path = synthset_home / "models" / "tiny-safety-checker"
    checker = StableDiffusionSafetyChecker.from_pretrained(path).eval()
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) // (1 + i % 4)) for i in range(16)]
    pixels = CLIPImageProcessor.from_pretrained(path)(images=images, return_tensors="pt").pixel_values
    base_scores, _ = checker_scores(checker, pixels)
    outcomes = set()
    for concept_cut in np.quantile(base_scores, [0.2, 0.5, 0.8]):
        for special_cut in (-1.0, float(concept_cut), 1.0):  # special care: always, sometimes, never
            moved = copy.deepcopy(checker)
            with torch.no_grad():
                moved.concept_embeds_weights += float(concept_cut)
                moved.special_care_embeds_weights += special_cut
            _, forward_flags = moved(clip_input=pixels, images=np.zeros((16, 1)))
            scores, flags = checker_scores(moved, pixels)
            assert flags.tolist() == forward_flags
            assert ((scores > 0) == flags).all()
            outcomes.update(flags.tolist())
    assert outcomes == {True, False}
    # the adjustment is the checker's own knob: higher flags a superset
    _, lenient = checker_scores(checker, pixels, adjustment=-0.05)
    _, strict = checker_scores(checker, pixels, adjustment=0.05)
    assert (lenient <= strict).all() and strict.sum() > lenient.sum()


def test_attempt_seeds_depend_on_the_sample_and_attempt_only():
    assert attempt_seed(7, "a/0000/000001", 0) == sample_seed(7, "a/0000/000001")
    seeds = {attempt_seed(7, "a/0000/000001", k) for k in range(5)}
    assert len(seeds) == 5 and all(0 <= s < 2**63 for s in seeds)
    assert attempt_seed(7, "a/0000/000001", 3) == attempt_seed(7, "a/0000/000001", 3)
    assert attempt_seed(8, "a/0000/000001", 3) != attempt_seed(7, "a/0000/000001", 3)


# -- redraws: exactly once, deterministic, regenerable ----------------------------------------------------
def test_redraws_replace_rejected_images_with_the_next_seed(redraw_run: Path, redraw_quality: dict):
    rows, dropped = rows_by_sample(redraw_run), dropped_by_sample(redraw_run)
    assert len(rows) + len(dropped) == 15 and not rows.keys() & dropped.keys()
    attempts = [r["attempt"] for r in rows.values()]
    assert 0 in attempts and max(attempts) >= 1, "calibration should make some samples redraw, not all"
    for sample_id, row in rows.items():
        assert row["seed"] == attempt_seed(7, sample_id, row["attempt"])
        assert [a["attempt"] for a in row["rejected"]] == list(range(row["attempt"]))
        for rejected in row["rejected"]:
            assert rejected["seed"] == attempt_seed(7, sample_id, rejected["attempt"])
            low = rejected["clip_score"] < redraw_quality["min_clip_score"]
            assert rejected["reason"] == ("nsfw" if rejected["nsfw"] else "low_clip") and (rejected["nsfw"] or low)
        final_ok = not row["nsfw"] and row["clip_score"] >= redraw_quality["min_clip_score"]
        assert final_ok or row["attempt"] == redraw_quality["max_redraws"]
        assert not row["nsfw"]  # a flagged image is never kept under `redraw`
    for entry in dropped.values():
        assert entry["reason"] == "nsfw" and len(entry["attempts"]) == 3 and entry["attempts"][-1]["nsfw"]
    rejects = pq.read_table(RunDir(redraw_run).shards_dir / CONFIG / "train-b0-00000.rejects.parquet")
    assert rejects.num_rows > 0 and set(rejects.column("reason").to_pylist()) <= {"nsfw", "low_clip"}


def test_two_processes_give_identical_bytes_and_attempts(root: Path, redraw_run: Path, redraw_quality: dict):
    run_dir = load_recipe(_write(root, "redraw-2", redraw_quality)).run_dir
    assert synthset_cli("plan", str(root / "redraw-2.yaml")).returncode == 0
    launched = subprocess.run(
        accelerate_launch_command(2, "generate", str(run_dir)), capture_output=True, text=True, cwd=REPO, timeout=600
    )
    assert launched.returncode == 0, launched.stderr[-2000:]
    assert {r.rank for r in read_records(RunDir(run_dir)).values()} == {0, 1}
    assert shard_hashes(run_dir) == shard_hashes(redraw_run)
    assert rejects_hashes(run_dir) == rejects_hashes(redraw_run) != {}
    two, one = rows_by_sample(run_dir), rows_by_sample(redraw_run)
    assert {s: r["attempt"] for s, r in two.items()} == {s: r["attempt"] for s, r in one.items()}
    assert dropped_by_sample(run_dir).keys() == dropped_by_sample(redraw_run).keys()


def rejects_hashes(run_dir: Path) -> dict[str, str]:
    return {name: r.rejects_sha256 for name, r in read_records(RunDir(run_dir)).items() if r.rejects_sha256}


def test_a_redrawn_row_regenerates_from_its_columns_alone(redraw_run: Path):
    """The row's seed, prompt and generator columns remake its image byte for byte, and its scores."""
    import torch

    from synthset.generation.diffusion import generate_images, load_generator
    from synthset.generation.screening import Screener
    from synthset.generation.writer import encode_image
    from synthset.run.lock import read_lock

    run = RunDir(redraw_run)
    lock = read_lock(run)
    rows = rows_by_sample(redraw_run)
    sample_id, row = next((s, r) for s, r in sorted(rows.items()) if r["attempt"] > 0)
    generator = load_generator(lock, torch.device("cpu"), run, show_progress=False)
    screener = Screener(lock, run, torch.device("cpu"), generator.dtype)
    batch = [row] * row["batch_size"]  # the row alone, at the batch size it records
    images, _ = generate_images(generator, batch)
    assert encode_image(images[0], lock.recipe.storage) == images_by_sample(redraw_run)[sample_id]
    scores = screener.score(images, batch)[0]
    assert (scores.clip_score, scores.nsfw_score, scores.nsfw) == (row["clip_score"], row["nsfw_score"], row["nsfw"])
    for rejected in row["rejected"]:  # and what it replaced scored as recorded
        attempt_row = {**row, "seed": rejected["seed"]}
        images, _ = generate_images(generator, [attempt_row] * row["batch_size"])
        scores = screener.score(images, [attempt_row] * row["batch_size"])[0]
        assert (scores.clip_score, scores.nsfw_score) == (rejected["clip_score"], rejected["nsfw_score"])


def test_sigkill_mid_run_then_resume_gives_the_same_dataset(root: Path, redraw_quality: dict):
    changes = {"storage": {"shard_size": 2}, "generator": {"steps": 12}}
    reference = _run(root, "kill-reference", redraw_quality, changes)
    recipe = load_recipe(_write(root, "killed", redraw_quality, changes))
    plan_run(recipe)
    finished = generate_killed_after(recipe.run_dir, shards=2, timeout_s=300)
    assert 2 <= finished < 8, f"the kill should land part-way, found {finished} finished shards"
    summary = generate_run(recipe.run_dir)
    assert summary.shards_made == 8 - finished
    assert not list(RunDir(recipe.run_dir).shards_dir.rglob(".tmp-*"))
    assert shard_hashes(recipe.run_dir) == shard_hashes(reference)
    assert rejects_hashes(recipe.run_dir) == rejects_hashes(reference)
    assert rows_by_sample(recipe.run_dir).keys() == rows_by_sample(reference).keys()


# -- drop, near-duplicates, and what validate, build and the card say ------------------------------------
def test_drop_leaves_the_right_counts(drop_run: Path, calibrated: dict):
    rows, dropped = rows_by_sample(drop_run), dropped_by_sample(drop_run)
    assert len(rows) + len(dropped) == 15 and not rows.keys() & dropped.keys()
    assert {e["reason"] for e in dropped.values()} <= {"nsfw", "low_clip", "near_duplicate"}
    assert dropped and rows, "calibration should drop some samples, not all"
    for entry in dropped.values():
        last = entry["attempts"][-1]
        if entry["reason"] == "nsfw":
            assert last["nsfw"] and all(a["reason"] == "low_clip" for a in entry["attempts"][:-1])  # never redrawn
        elif entry["reason"] == "low_clip":
            assert len(entry["attempts"]) == 2 and last["clip_score"] < calibrated["min_clip_score"]
        else:
            twin = rows[entry["near_duplicate_of"]]
            assert (twin["label"], twin["shard"]) == (entry["label"], entry["shard"])
    assert all(not r["nsfw"] and r["clip_score"] >= calibrated["min_clip_score"] for r in rows.values())
    assert all(r["near_duplicate_of"] is None for r in rows.values())  # under drop, none is published
    [report] = validate_run(drop_run)
    assert report.ok, report.problems
    assert (report.planned, report.found, report.dropped) == (15, len(rows), len(dropped))
    per_class = {label: sum(e["label"] == label for e in dropped.values()) for label in range(3)}
    for label, lost in per_class.items():
        assert any(note.startswith(f"label {label} ") and f"{lost} of 5" in note for note in report.notes) == (lost > 0)
    ds = datasets.load_dataset(str(drop_run / "dataset"), CONFIG, split="train")
    assert sorted(ds["sample_id"]) == sorted(rows)


def test_the_card_numbers_equal_the_dataset(drop_run: Path, calibrated: dict):
    readme = (drop_run / "dataset" / "README.md").read_text()
    ds = datasets.load_dataset(str(drop_run / "dataset"), CONFIG, split="train")
    dropped = dropped_by_sample(drop_run)
    reasons = {r: sum(e["reason"] == r for e in dropped.values()) for r in ("low_clip", "near_duplicate", "nsfw")}
    attempts = [a for e in dropped.values() for a in e["attempts"]] + [
        a for row in ds.remove_columns("image") for a in [*row["rejected"], row]
    ]
    flagged = sum(bool(a["nsfw"]) for a in attempts)
    below = sum(a["clip_score"] < calibrated["min_clip_score"] for a in attempts)
    redrawn = sum(r > 0 for r in ds["attempt"]) + sum(len(e["attempts"]) > 1 for e in dropped.values())
    why = ", ".join(f"{n} {reason}" for reason, n in reasons.items() if n)
    expected = (
        f"| `{CONFIG}` | 15 | {ds.num_rows} | {len(attempts)} | {flagged} | 0 | {below} | {redrawn} | "
        f"{len(dropped)} ({why}) | {reasons['near_duplicate']} |"
    )
    assert expected in readme
    assert f"adjustment {calibrated['nsfw_adjustment']}" in readme and "![CLIP score" in readme
    assert (drop_run / "dataset" / "clip_scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Not screened" not in readme
    assert "<script>" not in readme.split("## Screening")[1]  # class names are escaped in the card's tables


def test_near_duplicates_are_counted_against_earlier_images_of_the_class(redraw_run: Path, calibrated: dict):
    threshold = calibrated["near_duplicates"]["threshold"]
    rows = rows_by_sample(redraw_run)
    embeddings = clip_embeddings(images_by_sample(redraw_run))
    twins = 0
    for sample_id, row in rows.items():
        earlier = [
            other
            for other, o in rows.items()
            if (o["shard"], o["label"]) == (row["shard"], row["label"]) and o["position"] < row["position"]
        ]
        best = max((float(embeddings[sample_id] @ embeddings[o]) for o in earlier), default=-1.0)
        if row["near_duplicate_of"] is None:
            assert best < threshold + 1e-4, sample_id
        else:
            twins += 1
            assert row["near_duplicate_of"] in earlier
            assert float(embeddings[sample_id] @ embeddings[row["near_duplicate_of"]]) >= threshold - 1e-4
    assert twins > 0, "calibration should find some near-duplicates"


def test_a_class_that_keeps_failing_is_reported_not_silently_emptied(root: Path, caplog):
    quality = {**TINY_QUALITY, "nsfw": "redraw", "nsfw_adjustment": 1.0, "max_redraws": 1}  # flags everything
    run_dir = _run(root, "all-flagged", quality, {"configs": [{"name": CONFIG, "images_per_class": 2}]})
    [report] = validate_run(run_dir)
    assert report.ok and (report.found, report.dropped) == (0, 6)
    assert len([n for n in report.notes if n.endswith("2 of 2 planned images dropped (2 nsfw); NO image left")]) == 3
    with caplog.at_level("WARNING"):
        build_dataset(run_dir)
    assert "custom_2shot/train: 6 planned samples were dropped by the quality gate" in caplog.text
    assert "label 0 (tench): 2 of 2 planned images dropped (2 nsfw); NO image left" in caplog.text
    write_card(run_dir, license="apache-2.0")
    readme = (run_dir / "dataset" / "README.md").read_text()
    assert f"| `{CONFIG}` | tench | none left | 0 | 2 | 2 |" in readme


# -- recipe errors, the lock, and publishing --------------------------------------------------------------
@pytest.mark.parametrize(
    ("quality", "message"),
    [
        ({"nsfw": "delete"}, "quality.nsfw: Input should be 'drop', 'redraw' or 'keep' (got 'delete')"),
        ({"max_redraws": -1}, "quality.max_redraws: Input should be greater than or equal to 0 (got -1)"),
        ({"min_clip_score": 120}, "quality.min_clip_score: Input should be less than or equal to 100 (got 120)"),
        ({"nsfw_treshold": 0.1}, "quality.nsfw_treshold: unknown key"),
        ({"checker": None, "clip_model": None}, "quality: names neither a checker nor a clip_model"),
        ({"clip_model": None, "min_clip_score": 20}, "quality: min_clip_score needs a clip_model"),
        ({"checker": None, "nsfw": "drop"}, "quality: nsfw and nsfw_adjustment need a checker"),
        ({"low_clip": "drop"}, "quality: low_clip needs min_clip_score"),
        ({"near_duplicates": {"threshold": 1.5}}, "quality.near_duplicates.threshold: Input should be less than"),
    ],
)
def test_bad_policy_values_are_one_line_errors(tmp_path: Path, quality: dict, message: str):
    path = _write(tmp_path, "bad", {**TINY_QUALITY, **quality})
    result = synthset_cli("plan", str(path))
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"synthset: error: {path}: {message}")


def test_the_policy_is_part_of_the_generation_key(root: Path, keep_run: Path):
    lock_file = RunDir(keep_run).lock_file
    data = yaml.safe_load(lock_file.read_text())
    assert data["resolved"]["aux_models"]["safety_checker"]["revision"].startswith("sha256:")
    data["recipe"]["quality"]["nsfw"] = "drop"  # an edit that would change which images are kept
    edited = root / "edited-lock"
    edited.mkdir()
    for name in ("classes.parquet", "plan.parquet"):
        (edited / name).write_bytes((keep_run / name).read_bytes())
    (edited / "recipe.lock.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    result = synthset_cli("generate", str(edited))
    assert result.returncode == 2 and "edited after planning" in result.stderr


def test_push_refuses_an_unscreened_dataset_in_one_line(root: Path):
    run_dir = _run(root, "unscreened", None, {"configs": [{"name": CONFIG, "images_per_class": 1}]})
    build_dataset(run_dir)
    write_card(run_dir, license="apache-2.0")
    readme = (run_dir / "dataset" / "README.md").read_text()
    first_lines = [line for line in readme.split("---\n", 2)[2].splitlines() if line.strip()][:3]
    assert any(line.startswith("> **Not screened:** no NSFW checker looked at the images") for line in first_lines)
    result = synthset_cli("push", str(run_dir), "--repo", "org/x")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"synthset: error: {run_dir}: its images were never screened for NSFW content (the recipe has no "
        "quality.checker); add a quality section and generate again, or push with --allow-unscreened"
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")} | {"HF_HOME": str(root / "no-login")}
    allowed = subprocess.run(
        [*synthset_command(), "push", str(run_dir), "--repo", "org/x", "--allow-unscreened"],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=120,
    )  # fmt: skip
    assert allowed.returncode == 2  # past the screening check, stopped by the next one
    assert allowed.stderr.splitlines() == [
        "synthset: error: no Hugging Face token: set HF_TOKEN or run `hf auth login`"
    ]


def test_records_keep_the_dropped_samples(drop_run: Path):
    for name, record in read_records(RunDir(drop_run)).items():
        assert record.rows + len(record.dropped) == len(record.sample_ids)
        written = json.loads(RunDir(drop_run).record_file(name).read_text())
        assert written["dropped"] == record.dropped


# -- the review page, in a real headless Chromium ---------------------------------------------------------
CHROMIUM = os.environ.get("SYNTHSET_TEST_CHROMIUM", "/usr/bin/chromium")  # Debian's `chromium` package
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
PAGE_FACTS = """() => ({
  images: [...document.images].map(i => i.complete ? i.naturalWidth : -1),
  summary: Object.fromEntries([...document.querySelectorAll('tr[data-config] [data-count]')]
    .map(td => [td.dataset.count, td.textContent])),
  classes: [...document.querySelectorAll('section.cls')].map(s => ({
    label: +s.dataset.label, published: +s.dataset.published, dropped: +s.dataset.dropped,
    redrawn: +s.dataset.redrawn, shown: s.querySelectorAll('.sheet.published figure').length,
    name: s.querySelector('h3').firstChild.textContent.trim()})),
  scripts: document.scripts.length,
})"""


def open_in_chromium(page_file: Path, profile: Path, screenshot: Path) -> tuple[dict, list[str]]:
    """Load a page from disk in headless Chromium (a fresh profile); its facts, and every console error."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1000, "height": 800},
        )  # fmt: skip
        try:
            page = context.new_page()
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(page_file.as_uri(), wait_until="load")
            facts = page.evaluate(PAGE_FACTS)
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            context.close()
    return facts, errors


def test_review_page_in_headless_chromium(redraw_run: Path, tmp_path: Path):
    import re
    from collections import Counter

    from PIL import Image

    from synthset.cards.review import MAX_BYTES_PER_IMAGE

    build_dataset(redraw_run)
    result = synthset_cli("review", str(redraw_run), "--per-class", "3")
    assert result.returncode == 0, result.stderr
    page_file = redraw_run / "review.html"
    text = page_file.read_text(encoding="utf-8")
    figures = re.findall(r"<figure.*?</figure>", text, re.S)
    assert figures and max(len(f.encode()) for f in figures) <= MAX_BYTES_PER_IMAGE
    facts, errors = open_in_chromium(page_file, tmp_path / "profile", tmp_path / "review.png")
    assert errors == []
    assert facts["images"] and min(facts["images"]) > 0  # every thumbnail decoded
    assert facts["scripts"] == 0

    ds = datasets.load_dataset(str(redraw_run / "dataset"), CONFIG, split="train").remove_columns("image")
    dropped = dropped_by_sample(redraw_run)
    attempts = [a for e in dropped.values() for a in e["attempts"]] + [a for r in ds for a in [*r["rejected"], r]]
    redrawn = sum(r["attempt"] > 0 for r in ds) + sum(len(e["attempts"]) > 1 for e in dropped.values())
    assert facts["summary"] == {
        "planned": "15",
        "shards": "3 / 3",
        "published": str(ds.num_rows),
        "redrawn": str(redrawn),
        "dropped": str(len(dropped)),
        "flagged": str(sum(bool(a["nsfw"]) for a in attempts)),
        "near_duplicates": str(sum(r["near_duplicate_of"] is not None for r in ds)),
    }
    published = Counter(ds["label"])
    lost = Counter(e["label"] for e in dropped.values())
    assert sorted((c["label"], c["published"], c["dropped"], c["shown"]) for c in facts["classes"]) == [
        (label, published[label], lost[label], min(3, published[label])) for label in range(3)
    ]
    assert sorted(c["name"] for c in facts["classes"]) == sorted(CLASS_NAMES)  # shown as text, never as markup
    with Image.open(tmp_path / "review.png") as shot:
        assert shot.width == 1000 and shot.height > 800

    published_review = synthset_cli("review", str(redraw_run), "--publish")
    assert published_review.returncode == 0, published_review.stderr
    public = (redraw_run / "dataset" / "review.html").read_text(encoding="utf-8")
    rejected_figures = re.findall(r'<figure class="rejected[^"]*".*?</figure>', public, re.S)
    assert rejected_figures and not any("data:image" in f for f in rejected_figures)  # rejected images stay home


def test_clean_knows_a_shards_rejects_file(redraw_run: Path):
    from synthset.run.clean import find_unowned
    from synthset.run.paths import shard_of_file

    assert shard_of_file(CONFIG, "train-b0-00001.rejects.parquet") == f"{CONFIG}/train-b0-00001"
    assert shard_of_file(CONFIG, "train-b0-00001.parquet") == f"{CONFIG}/train-b0-00001"
    assert shard_of_file(CONFIG, "notes.txt") is None
    run = RunDir(redraw_run)
    assert find_unowned(run).stale_shards == []  # the rejects files of planned shards are owned
    stale = run.shards_dir / CONFIG / "train-b0-00099.rejects.parquet"
    stale.write_bytes(b"left by a larger plan")
    try:
        assert find_unowned(run).stale_shards == [stale]
    finally:
        stale.unlink()


def test_a_shown_image_stays_within_the_stated_page_size():
    """The size bound the README states (1,000 classes x 16 shown images under 59 MB) holds for the worst
    thumbnail (pure noise does not compress) and the worst caption (a prompt of quotes, escaped 6x)."""
    from PIL import Image

    from synthset.cards.review import MAX_BYTES_PER_IMAGE, THUMB_MAX_BYTES, Item, figure, thumbnail_data

    noise = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")
    uri = thumbnail_data(buffer.getvalue())
    assert len(uri) <= len("data:image/webp;base64,") + 4 * ((THUMB_MAX_BYTES + 2) // 3)
    item = Item(
        "lar_cd_sd_6x/0999/007799", 100, 2**63 - 1, '"' * 1000, 100.0, -0.123, True, "nsfw",
        "lar_cd_sd_6x/0999/007798", "lar_cd_sd_6x/train-b5-00199", uri,
    )  # fmt: skip
    html = figure(item, "rejected")
    assert len(html.encode()) <= MAX_BYTES_PER_IMAGE
    assert 1000 * 16 * MAX_BYTES_PER_IMAGE < 58e6


def test_status_counts_dropped_samples_as_done(drop_run: Path):
    from synthset.run.status import run_status

    status = run_status(drop_run)
    assert len(rows_by_sample(drop_run)) < 15  # some were dropped...
    assert (status.images_done, status.images, status.shards_done) == (15, 15, 3)  # ...and the run is complete
