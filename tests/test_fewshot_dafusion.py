"""DA-Fusion's few-shot protocol: the split per trial, the replacement, the metric, the BatchNorm mode, a run."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from test_train_runs import COLOURS, REAL_COUNTS, _config, one_cpu_thread, squares  # noqa: F401 - fixtures

from synthset.classes.dafusion import dafusion_split
from synthset.errors import SynthsetError
from synthset.run.paths import RunDir
from synthset.run.shots import write_shots
from synthset.training.config import train_config_from_dict
from synthset.training.fewshot import swap_with_synthetic
from synthset.training.fewshot_dafusion import (
    best_epoch_summary,
    mean_per_class_accuracy,
    per_trial_best_summary,
    shot_seed,
    trial_split,
    validation_items,
)
from synthset.training.run import run


def dafusion_reference(class_sizes: list[int], seed: int, halves: bool, k: int) -> list[list[int]]:
    """DA-Fusion's dataset code, written out: one generator, a permutation per class in order, halves, ids[:k]."""
    rng = np.random.default_rng(seed)
    ids = {c: rng.permutation(n) for c, n in enumerate(class_sizes)}
    if halves:
        ids = {c: np.array_split(v, 2)[0] for c, v in ids.items()}
    return [ids[c][:k].tolist() for c in range(len(class_sizes))]


@pytest.mark.parametrize("halves", [True, False])
@pytest.mark.parametrize("seed", [0, 3])
def test_split_is_dafusions_draw(halves: bool, seed: int):
    sizes = [7, 1, 12, 4, 0, 9]
    ids = {c: [f"img-{c}-{i}" for i in range(n)] for c, n in enumerate(sizes)}
    splits = dafusion_split(ids, len(sizes), seed, halves)
    for k in (1, 2, 4):
        expected = dafusion_reference(sizes, seed, halves, k)
        assert [[int(x.rsplit("-", 1)[1]) for x in splits[c].shots(k)] for c in range(len(sizes))] == expected
    for c, n in enumerate(sizes):
        assert sorted(splits[c].train + splits[c].val) == sorted(ids[c])  # a partition of the class
        assert len(splits[c].val) == (n // 2 if halves else 0)
    # The draw of a class does not depend on which classes a run generates: every class takes its draw.
    assert dafusion_split(ids, len(sizes), seed, halves)[5] == splits[5]


def test_mean_per_class_accuracy_counts_undrawn_classes_as_zero():
    assert mean_per_class_accuracy(np.array([3, 0, 5]), np.array([4, 0, 5])) == pytest.approx((0.75 + 0 + 1) / 3)


def test_best_epoch_is_the_best_mean_over_trials():
    records = [
        {"k": 1, "trial": 0, "epoch_accuracy": [0.1, 0.5, 0.4], "swapped_fraction": 0.5, "real_images": 4},
        {"k": 1, "trial": 1, "epoch_accuracy": [0.2, 0.3, 0.6], "swapped_fraction": 0.5, "real_images": 4},
    ]
    summary = best_epoch_summary(records)["1"]
    assert summary["best_epoch"] == 3  # means 0.15, 0.40, 0.50: not either trial's own best
    assert summary["trials"] == [0.4, 0.6] and summary["mean"] == pytest.approx(0.5)
    assert summary["std"] == pytest.approx(np.std([0.4, 0.6], ddof=1))


def test_per_real_replacement_takes_only_images_made_from_the_drawn_real_image():
    rng = np.random.default_rng(0)
    shots = np.arange(20)
    pool = {int(s): np.arange(10 * s, 10 * s + 10) for s in shots if s != 7}  # real 7 has no synthetic image
    drawn = rng.integers(0, 20, 50000)
    swapped, rows = swap_with_synthetic(shots[drawn], pool, 0.5, rng)
    assert not swapped[drawn == 7].any()
    assert swapped[drawn != 7].mean() == pytest.approx(0.5, abs=0.01)
    assert ((rows[swapped] // 10) == drawn[swapped]).all(), "a swap must come from the drawn real image"


def _backbone(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    weights = tmp_path / "backbone.pth"
    torch.save(timm.create_model("test_resnet", num_classes=1000).state_dict(), weights)
    return weights


def _dafusion_config(squares: Path, tmp_path: Path, **few_shot) -> dict:  # noqa: F811
    data = _config(
        squares, tmp_path / "fs", mode="few_shot", model={"name": "test_resnet", "weights": str(_backbone(tmp_path))}
    )
    data.pop("train")
    data.pop("eval")
    data["few_shot"] = {
        "shots": [1, 2], "trials": 2, "epochs": 2, "iterations_per_epoch": 3, "batch_size": 8, "lr": 1e-2,
        "halves": True, "synthetic_pool": "per_class", "synthetic_per_class": 4, "image_size": 32,
        "eval_draws": None, "num_workers": 0, **few_shot,
    }  # fmt: skip
    return data


def test_dafusion_probe_trains_on_the_trials_shots_and_scores_the_other_half(squares, tmp_path):  # noqa: F811
    output = tmp_path / "fs"
    results = run(train_config_from_dict(_dafusion_config(squares, tmp_path), "x"))
    assert results["protocol"] == "dafusion" and results["metric"] == "mean per-class accuracy at the best epoch"
    starts = np.cumsum([0, *REAL_COUNTS])  # the real split holds each class's rows contiguously
    for k in (1, 2):
        for trial in range(2):
            record = json.loads((output / "few_shot" / f"k{k:03d}-trial{trial:02d}.json").read_text())
            expected = dafusion_reference(REAL_COUNTS, trial, True, k)
            assert record["real_rows"] == sorted(int(starts[c]) + i for c in range(4) for i in expected[c])
            assert record["eval_images"] == sum(n // 2 for n in REAL_COUNTS)
            assert len(record["epoch_accuracy"]) == 2 and all(0 <= a <= 1 for a in record["epoch_accuracy"])
            assert record["swapped_fraction"] == pytest.approx(0.5, abs=0.15)
            assert record["eval_swapped_fraction"] == 0.0 and record["shot_seed"] == trial
        summary = results["few_shot"][str(k)]
        assert summary["best_epoch"] in (1, 2) and len(summary["trials"]) == 2


def test_batchnorm_adapts_while_the_backbone_stays_frozen(squares, tmp_path):  # noqa: F811
    from accelerate import Accelerator

    from synthset.training.data import load_split
    from synthset.training.fewshot_dafusion import Trial
    from synthset.training.models import build_model

    config = train_config_from_dict(_dafusion_config(squares, tmp_path, swap_probability=0.0), "x")
    real = load_split(config.real, "real")
    backbone = build_model(config.model, num_classes=0).requires_grad_(False)
    before = {name: t.clone() for name, t in backbone.state_dict().items()}
    split = trial_split(real, 4, 0, True)
    shots = np.array(sorted(p for s in split.values() for p in s.shots(2)))
    val = np.array(sorted(p for s in split.values() for p in s.val))
    curve, swapped, eval_swapped = Trial(config, Accelerator(cpu=True), backbone, 4, 2, 0).run(
        real, None, shots, real.labels[shots], {}, real, val
    )
    assert swapped == 0 == eval_swapped and len(curve) == 2
    after = backbone.state_dict()
    running = [n for n in before if n.endswith("running_mean")]
    assert running and all(not torch.equal(before[n], after[n]) for n in running), "BN must use batch statistics"
    weights = [n for n in before if n.endswith("weight")]
    assert all(torch.equal(before[n], after[n]) for n in weights), "the backbone's weights must not train"


def _synthetic_with_cond_images(root: Path, real_source: str, per_real: dict[int, int], labels: dict[int, int]) -> Path:
    from datasets import ClassLabel, Dataset, Features, List, Value
    from datasets import Image as ImageFeature
    from PIL import Image

    images, out_labels, cond = [], [], []
    for row, count in per_real.items():
        for i in range(count):
            buffer = io.BytesIO()
            Image.new("RGB", (32, 32), (row % 255, i * 40, 90)).save(buffer, format="PNG")
            images.append({"bytes": buffer.getvalue(), "path": None})
            out_labels.append(labels[row])
            cond.append([f"{real_source}:train:{row}"])
    features = Features(
        {"image": ImageFeature(), "label": ClassLabel(names=list(COLOURS)), "cond_images": List(Value("string"))}
    )
    (root / "augcond").mkdir(parents=True)
    Dataset.from_dict({"image": images, "label": out_labels, "cond_images": cond}, features=features).to_parquet(
        str(root / "augcond" / "train-00000-of-00001.parquet")
    )
    readme = "configs:\n- config_name: augcond\n  data_files:\n  - split: train\n    path: augcond/train-*.parquet\n"
    (root / "README.md").write_text(f"---\n{readme}---\n")
    return root


def test_recorded_shots_must_be_the_trials_dafusion_shots(squares, tmp_path):  # noqa: F811
    starts = np.cumsum([0, *REAL_COUNTS])
    source = str(squares / "real")
    shots0 = dafusion_reference(REAL_COUNTS, 0, True, 1)
    rows = {c: int(starts[c]) + shots0[c][0] for c in range(4)}
    synthetic = _synthetic_with_cond_images(
        tmp_path / "synthetic", source, {r: 3 for r in rows.values()}, {r: c for c, r in rows.items()}
    )
    recorded = [
        {"config": "c1", "label": c, "class_name": n, "seed": 0, "real_ids": [f"{source}:train:{rows[c]}"]}
        for c, n in enumerate(COLOURS)
    ]
    write_shots(RunDir(tmp_path / "dataset"), recorded)
    data = _dafusion_config(squares, tmp_path, shots=[1], trials=1, synthetic_pool="per_real", swap_probability=1.0)
    data["synthetic"] = {"path": str(synthetic), "name": "augcond"}
    data["few_shot"]["real_shots"] = {"path": str(tmp_path / "dataset"), "config": "c1"}
    results = run(train_config_from_dict(data, "x"))
    assert results["synthetic_pool"] == "per_real"
    assert results["few_shot"]["1"]["swapped_fraction"] == 1.0  # every real shot has images made from it

    # A draw that is not the trial's DA-Fusion draw (here: another image of class 0) is refused in one line.
    recorded[0]["real_ids"] = [f"{source}:train:{rows[0] + 1 if shots0[0][0] == 0 else int(starts[0])}"]
    write_shots(RunDir(tmp_path / "dataset"), recorded)
    data["output_dir"] = str(tmp_path / "fs2")
    with pytest.raises(SynthsetError) as error:
        run(train_config_from_dict(data, "x"))
    assert str(error.value) == (
        "few_shot.real_shots: config 'c1' class 0: the recorded shots are not DA-Fusion's shots for numpy seed 0; "
        "make the dataset with shot_draw: {trial: 0} (and the same halves), or use protocol: fast"
    )


def test_per_real_needs_conditioning_ids(squares, tmp_path):  # noqa: F811
    data = _dafusion_config(squares, tmp_path, synthetic_pool="per_real")
    with pytest.raises(
        SynthsetError, match="^few_shot.synthetic_pool: per_real needs a synthetic set whose rows record"
    ):
        run(train_config_from_dict(data, "x"))


def test_protocol_fields_are_checked(squares, tmp_path):  # noqa: F811
    data = _dafusion_config(squares, tmp_path, steps=5)
    with pytest.raises(SynthsetError, match="few_shot: steps is the fast probe's"):
        train_config_from_dict(data, "x")
    data = _dafusion_config(squares, tmp_path, protocol="fast")
    with pytest.raises(SynthsetError, match="few_shot: epochs is for protocol dafusion"):
        train_config_from_dict(data, "x")
    data = _dafusion_config(squares, tmp_path)
    data["eval"] = {"path": str(squares / "real"), "split": "validation"}
    with pytest.raises(SynthsetError, match="eval: few_shot.halves scores the second half of `real`; leave eval out"):
        train_config_from_dict(data, "x")


def test_a_synthset_fewshot_set_and_the_probe_fit_together(write_recipe, tmp_path):
    """Plan -> generate -> build a tiny augcond few-shot set from DA-Fusion's trial-0 shots, then probe it:
    the probe trains on exactly the recorded shots and swaps each for images made from that very shot."""
    from test_fewshot_sources import caltech_folder

    from synthset.builders.assemble import build_dataset
    from synthset.generation.plan import plan_run
    from synthset.generation.runner import generate_run
    from synthset.recipe import load_recipe

    folder = caltech_folder(tmp_path / "101_ObjectCategories", {"accordion": 6, "airplanes": 5, "anchor": 4})
    name = "caltech101_dafusion_1shot_t0"
    recipe = load_recipe(
        write_recipe(
            {
                "name": "fs",
                "builder": "synth_fewshot",
                "classes": {"set": "caltech101_dafusion", "limit": 3},
                "configs": [
                    {
                        "name": name,
                        "strategy": "augcond",
                        "images_per_class": 2,
                        "shots": 1,
                        "shot_draw": {"trial": 0, "halves": True},
                        "augcond": {"augmentations": {"embed_mixup+dropout": 1}, "prompt": "a photo of a {class_name}"},
                    }
                ],
                "generator": {"model": "synthset-testing:tiny-unclip", "guidance": 10.0, "width": 64, "height": 64},
                "real_images": {"dataset": str(folder), "match": "name"},
            },
            "fs.yaml",
        )
    )
    plan_run(recipe)
    assert generate_run(recipe.run_dir).images_made == 6
    dataset_dir, _ = build_dataset(recipe.run_dir)

    torch.manual_seed(0)
    weights = tmp_path / "backbone.pth"
    torch.save(timm.create_model("test_resnet", num_classes=1000).state_dict(), weights)
    data = {
        "mode": "few_shot",
        "output_dir": str(tmp_path / "probe"),
        "model": {"name": "test_resnet", "weights": str(weights)},
        "real": {"path": str(folder), "classes": "caltech101_dafusion"},
        "synthetic": {"path": str(dataset_dir), "name": "caltech101_dafusion_{k}shot_t{trial}"},
        "few_shot": {
            "shots": [1], "trials": 1, "epochs": 1, "iterations_per_epoch": 2, "batch_size": 4, "image_size": 32,
            "swap_probability": 1.0, "halves": True, "eval_draws": None, "num_workers": 0,
            "real_shots": {"path": str(dataset_dir), "config": "caltech101_dafusion_{k}shot_t{trial}"},
        },
    }  # fmt: skip
    results = run(train_config_from_dict(data, "x"))
    assert results["synthetic_pool"] == "per_real" and results["few_shot"]["1"]["swapped_fraction"] == 1.0
    record = json.loads((tmp_path / "probe" / "few_shot" / "k001-trial00.json").read_text())
    recorded = pq_rows(dataset_dir / "real_shots.parquet")
    assert sorted(record["real_rows"]) == sorted(int(i.rsplit(":", 1)[1]) for r in recorded for i in r["real_ids"])
    assert record["eval_images"] == 3 + 2 + 2  # the second halves of 6, 5 and 4 images


def pq_rows(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


# ---------------------------------------------------------------- paper_b_code: the authors' fine_tune.py


def test_paper_b_code_validation_draws_swap_for_their_class():
    """fine_tune.py:73-75 builds the val set with the default synthetic_probability 0.5, and the dataset's
    __getitem__ swaps whatever the split (data/coco.py:167-170): so validation draws are swapped like training."""
    labels = np.repeat(np.arange(4), 25)  # eval rows 0..99, 25 per class
    pool = {c: np.arange(100 * c, 100 * c + 16) for c in range(3)}  # class 3 has no synthetic image
    positions = np.random.default_rng(1).integers(0, 100, 20000)
    items, swapped = validation_items(labels, positions, pool, 0.5, np.random.default_rng(2))
    synthetic = np.array([i.source == 1 for i in items])
    assert swapped == synthetic.sum() and synthetic[labels[positions] < 3].mean() == pytest.approx(0.5, abs=0.02)
    assert not synthetic[labels[positions] == 3].any(), "a class without synthetic images is never swapped"
    assert all(i.index // 100 == labels[p] for i, p in zip(items, positions, strict=True) if i.source == 1)
    assert [i.index for i in items if i.source == 0] == positions[~synthetic].tolist()
    # dafusion (no pool) and p = 0 keep every draw real, in order.
    for no_swap in (validation_items(labels, positions, {}, 0.5, np.random.default_rng(2)),
                    validation_items(labels, positions, pool, 0.0, np.random.default_rng(2))):  # fmt: skip
        assert [i.index for i in no_swap[0]] == positions.tolist() and no_swap[1] == 0


def test_paper_b_code_every_trial_uses_the_seed_0_shots():
    """fine_tune.py:60-63 passes no seed to the train set (default 0); the val set gets the trial (line 75)."""
    for trial in range(4):
        dafusion = train_config_from_dict({**_minimal_few_shot(), "seed": 2}, "x")
        authors = train_config_from_dict({**_minimal_few_shot(protocol="paper_b_code"), "seed": 2}, "x")
        assert shot_seed(dafusion, trial) == 2 + trial and shot_seed(authors, trial) == 2


def test_paper_b_code_reports_each_trials_own_best_epoch():
    """FineTuneResults.ipynb: `acc = val_accs.max()` per trial, then the mean over trials."""
    records = [
        {"k": 1, "trial": 0, "epoch_accuracy": [0.1, 0.5, 0.4], "swapped_fraction": 0.5, "real_images": 4,
         "eval_swapped_fraction": 0.5},
        {"k": 1, "trial": 1, "epoch_accuracy": [0.2, 0.3, 0.6], "swapped_fraction": 0.5, "real_images": 4,
         "eval_swapped_fraction": 0.5},
    ]  # fmt: skip
    summary = per_trial_best_summary(records)["1"]
    assert summary["trials"] == [0.5, 0.6] and summary["best_epoch"] == [2, 3]
    assert summary["mean"] == pytest.approx(0.55)
    assert best_epoch_summary(records)["1"]["mean"] == pytest.approx(0.5), "dafusion: one epoch for all trials"
    assert summary["std"] == pytest.approx(np.std([0.5, 0.6], ddof=1))


def _minimal_few_shot(**few_shot) -> dict:
    return {
        "mode": "few_shot", "output_dir": "out", "model": {"name": "test_resnet", "pretrained": True},
        "real": {"path": "data/real"}, "synthetic": {"path": "data/synthetic"},
        "few_shot": {"halves": True, **few_shot},
    }  # fmt: skip


def test_paper_b_code_probe_run(squares, tmp_path):  # noqa: F811
    """A whole run: seed-0 shots in every trial, the trial's own validation half, validation draws all synthetic
    at p = 1, and the reported mean the mean of each trial's best epoch."""
    output = tmp_path / "fs"
    data = _dafusion_config(squares, tmp_path, protocol="paper_b_code", swap_probability=1.0)
    results = run(train_config_from_dict(data, "x"))
    assert results["protocol"] == "paper_b_code" and results["metric"].startswith("mean over trials of each trial's")
    starts = np.cumsum([0, *REAL_COUNTS])
    assert dafusion_reference(REAL_COUNTS, 0, True, 2) != dafusion_reference(REAL_COUNTS, 1, True, 2)
    for k in (1, 2):
        records = [json.loads((output / "few_shot" / f"k{k:03d}-trial{t:02d}.json").read_text()) for t in range(2)]
        seed_0_shots = dafusion_reference(REAL_COUNTS, 0, True, k)
        for record in records:
            assert record["shot_seed"] == 0 and record["trial_seed"] == record["trial"]
            assert record["real_rows"] == sorted(int(starts[c]) + i for c in range(4) for i in seed_0_shots[c])
            assert record["eval_images"] == sum(n // 2 for n in REAL_COUNTS)
            assert record["swapped_fraction"] == 1.0 and record["eval_swapped_fraction"] == 1.0
        summary = results["few_shot"][str(k)]
        assert summary["trials"] == [max(r["epoch_accuracy"]) for r in records]
        assert summary["mean"] == pytest.approx(np.mean(summary["trials"]))
        assert summary["best_epoch"] == [int(np.argmax(r["epoch_accuracy"])) + 1 for r in records]
    with pytest.raises(SynthsetError, match="few_shot: protocol paper_b_code pools synthetic images per class"):
        train_config_from_dict(
            _dafusion_config(squares, tmp_path, protocol="paper_b_code", synthetic_pool="per_real"), "x"
        )
