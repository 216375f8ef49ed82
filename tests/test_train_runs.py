"""Whole training runs on tiny separable data: coloured squares, a real long-tailed set and a shifted synthetic one.

The real split has 40 / 24 / 12 / 6 images of red, green, blue and yellow squares on grey noise; the
synthetic set (a `datasets` config `naive`, laid out like `synthset build` writes it) has 20 per class on
a brighter background with more colour jitter, so the two domains have visibly different statistics.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import timm
import torch
import yaml
from helpers import REPO, accelerate_launch_command
from PIL import Image

from synthset.cli import main
from synthset.errors import SynthsetError
from synthset.run.paths import RunDir
from synthset.training.config import train_config_from_dict
from synthset.training.data import ImageSettings, MixedRows, eval_transform, load_split
from synthset.training.results import format_table
from synthset.training.run import run
from synthset.training.sampler import MixedBatchSampler

COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 70, 220), "yellow": (230, 220, 50)}
REAL_COUNTS = [40, 24, 12, 6]


@pytest.fixture(autouse=True, scope="module")
def one_cpu_thread():
    """Tiny models on a shared 2-core machine: two OpenMP threads contending with other processes run up to 20x
    slower than one (measured), so these tests pin one thread and restore the setting afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _squares(counts: list[int], seed: int, background: tuple[int, int], jitter: int, names: list[str] | None = None):
    from datasets import ClassLabel, Dataset, Features
    from datasets import Image as ImageFeature

    names = names or list(COLOURS)
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label, n in enumerate(counts):
        colour = np.array(COLOURS[names[label]])
        for _ in range(n):
            pixels = rng.integers(background[0], background[1], (32, 32, 3))
            side = int(rng.integers(12, 22))
            x, y = rng.integers(0, 32 - side, 2)
            pixels[y : y + side, x : x + side] = np.clip(colour + rng.integers(-jitter, jitter, 3), 0, 255)
            buffer = io.BytesIO()
            Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="PNG")
            images.append({"bytes": buffer.getvalue(), "path": None})
            labels.append(label)
    features = Features({"image": ImageFeature(), "label": ClassLabel(names=names)})
    return Dataset.from_dict({"image": images, "label": labels}, features=features)


@pytest.fixture(scope="module")
def squares(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("squares")
    (root / "real").mkdir()
    (root / "synthetic" / "naive").mkdir(parents=True)
    (root / "ood").mkdir()
    _squares(REAL_COUNTS, 1, (60, 140), 25).to_parquet(str(root / "real" / "train-00000-of-00001.parquet"))
    _squares([10] * 4, 2, (60, 140), 25).to_parquet(str(root / "real" / "validation-00000-of-00001.parquet"))
    _squares([20] * 4, 3, (120, 200), 40).to_parquet(str(root / "synthetic" / "naive" / "train-00000-of-00001.parquet"))
    (root / "synthetic" / "README.md").write_text(
        "---\nconfigs:\n- config_name: naive\n  data_files:\n  - split: train\n    path: naive/train-*.parquet\n---\n"
    )
    # An out-of-domain split with two of the four classes, labelled 0..1 in its own label space.
    _squares([8, 8], 4, (0, 60), 25, names=["green", "yellow"]).to_parquet(str(root / "ood" / "test-00000.parquet"))
    (root / "ood_map.txt").write_text("1\n3\n")
    return root


def _config(squares: Path, output_dir: Path, **sections: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "mode": "aux_bn",
        "seed": 0,
        "output_dir": str(output_dir),
        "model": {"name": "test_resnet"},
        "real": {"path": str(squares / "real")},
        "synthetic": {"path": str(squares / "synthetic"), "name": "naive"},
        "eval": {"path": str(squares / "real"), "split": "validation"},
        "train": {
            "epochs": 3, "batch_size": 16, "synthetic_fraction": 0.5, "optimizer": "adamw", "lr": 3e-3,
            "weight_decay": 0.0, "image_size": 32, "augment": "flip", "num_workers": 0,
        },
        "buckets": {"many_above": 30, "few_below": 10},
    }  # fmt: skip
    for key, value in sections.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) and isinstance(data.get(key), dict) else value
    return data


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _predict(
    weights: Path, split_dir: Path, split: str, keep: list[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Load the exported weights into a plain timm model and predict a split, independently of the harness."""
    import datasets

    model = timm.create_model("test_resnet", num_classes=4, checkpoint_path=str(weights)).eval()
    rows = datasets.load_dataset(str(split_dir), split=split)
    transform = eval_transform(ImageSettings.for_model(model, 32))
    with torch.no_grad():
        logits = model(torch.stack([transform(row["image"].convert("RGB")) for row in rows]))
    if keep is not None:
        logits = logits[:, keep]
    return logits.argmax(1).numpy(), np.array(rows["label"])


def test_batches_from_the_loader_are_half_real_half_synthetic(squares):
    real = load_split(train_config_from_dict(_config(squares, Path("x")), "x").real, "real")
    synthetic = load_split(train_config_from_dict(_config(squares, Path("x")), "x").synthetic, "synthetic")
    settings = ImageSettings(size=32, mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=1.0, interpolation="bilinear")
    sampler = MixedBatchSampler(len(real), len(synthetic), 8, 8, 3, epoch=0, seed=0)
    loader = torch.utils.data.DataLoader(MixedRows(real, synthetic, eval_transform(settings)), batch_sampler=sampler)
    for batch_items, (images, labels, is_synthetic) in zip(sampler, loader, strict=True):
        assert images.shape == (16, 3, 32, 32)
        assert is_synthetic.tolist() == [False] * 8 + [True] * 8
        expected = [(real if item.source == 0 else synthetic).labels[item.index] for item in batch_items]
        assert labels.tolist() == expected


def test_tiny_cnn_learns_with_aux_bn_through_the_cli(squares, tmp_path, capsys):
    output = tmp_path / "run"
    config = _write(tmp_path / "train.yaml", _config(squares, output))
    assert main(["train", str(config), "--stop-after-epoch", "1"]) == 0
    assert capsys.readouterr().out.strip() == "stopped after epoch 1 of 3; run the same command to continue"
    card_run = tmp_path / "synthetic-run"
    assert main(["train", str(config), "--to-card", str(card_run)]) == 0  # resumes at epoch 2
    printed = capsys.readouterr().out
    assert "aux_bn · test_resnet · 3 epochs" in printed and "many" in printed
    results = json.loads((output / "results.json").read_text())
    assert results["complete"] and results["dual_bn_layers"] > 0
    assert results["batch"] == {"size": 16, "real": 8, "synthetic": 8}
    assert [h["epoch"] for h in results["history"]] == [1, 2, 3]
    assert results["eval"]["images"] == 40
    assert results["eval"]["top1"] >= 0.85, results["history"]  # chance is 0.25
    assert results["history"][-1]["train_loss"] < results["history"][0]["train_loss"]
    # The exported weights are the evaluated model (main BNs) and load into plain timm.
    predicted, labels = _predict(output / "model.safetensors", squares / "real", "validation")
    assert (predicted == labels).mean() == pytest.approx(results["eval"]["top1"])
    assert "aux BN:" in (output / "train.log").read_text()
    # --to-card stores the results beside the dataset; the card renders them as a table.
    from synthset.cards.render import evaluation_tables
    from synthset.training.results import format_table

    stored = json.loads((card_run / "dataset" / "evaluation" / "run.json").read_text())
    assert stored["eval"] == results["eval"]
    assert evaluation_tables(RunDir(card_run)) == [("run", format_table(results))]


def _state(output: Path, epoch: int) -> dict[str, Any]:
    return torch.load(output / "checkpoints" / f"epoch-{epoch:04d}.pt", weights_only=True)


def _without_timing(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in h.items() if k != "train_seconds"} for h in history]


def test_resumed_run_matches_an_uninterrupted_one(squares, tmp_path):
    # Random crops, drop-path and weight decay: everything a resumption could get wrong is in play.
    changes = {
        "model": {"name": "test_resnet", "kwargs": {"drop_path_rate": 0.1}},
        "train": {"epochs": 2, "augment": "rrc_flip", "weight_decay": 0.01, "warmup_epochs": 0.5},
    }
    straight = run(train_config_from_dict(_config(squares, tmp_path / "straight", **changes), "x"))
    resumed_config = train_config_from_dict(_config(squares, tmp_path / "resumed", **changes), "x")
    partial = run(resumed_config, stop_after_epoch=1)
    assert partial["complete"] is False and partial["epochs_done"] == 1
    assert not (tmp_path / "resumed" / "results.json").exists()
    assert sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir()) == ["epoch-0001.pt"]
    resumed = run(resumed_config)
    a, b = _state(tmp_path / "straight", 2), _state(tmp_path / "resumed", 2)
    assert a["model"].keys() == b["model"].keys()
    different = [k for k in a["model"] if not torch.equal(a["model"][k], b["model"][k])]
    assert not different, f"weights differ after resuming: {different[:5]}"
    assert _without_timing(straight["history"]) == _without_timing(resumed["history"])
    assert straight["eval"] == resumed["eval"]
    assert "resumed from" in (tmp_path / "resumed" / "train.log").read_text()
    # A finished run started again trains nothing and reports the same numbers.
    again = run(resumed_config)
    assert _without_timing(again["history"]) == _without_timing(resumed["history"]) and again["eval"] == resumed["eval"]
    # Resuming under a config that trains something else is refused in one line.
    changed = train_config_from_dict(_config(squares, tmp_path / "resumed", **{**changes, "seed": 1}), "x")
    with pytest.raises(SynthsetError, match="made with another training config"):
        run(changed)


def test_long_tail_reports_buckets_and_scores_an_ood_subset(squares, tmp_path):
    output = tmp_path / "lt"
    ood = {"path": str(squares / "ood"), "split": "test", "title": "dark", "label_map": str(squares / "ood_map.txt")}
    config = _config(squares, output, mode="long_tail", ood=[ood], train={"epochs": 2})
    results = run(train_config_from_dict(config, "x"))
    assert results["loss"] == "balanced_softmax" and results["dual_bn_layers"] == 0
    assert results["eval"]["classes_per_bucket"] == {"many": 1, "medium": 2, "few": 1}
    assert all(results["eval"][b] is not None for b in ("many", "medium", "few"))
    # The OOD split's labels 0..1 are model classes 1 and 3; only those two logits compete.
    predicted, labels = _predict(output / "model.safetensors", squares / "ood", "test", keep=[1, 3])
    assert results["ood"]["dark"]["images"] == 16
    assert results["ood"]["dark"]["top1"] == pytest.approx((predicted == labels).mean())
    assert json.loads((output / "results.json").read_text())["ood"]["dark"] == results["ood"]["dark"]


def test_few_shot_probe_swaps_at_p_and_resumes_per_trial(squares, tmp_path, monkeypatch):
    torch.manual_seed(0)
    weights = tmp_path / "backbone.pth"
    torch.save(timm.create_model("test_resnet", num_classes=1000).state_dict(), weights)
    output = tmp_path / "fs"
    data = _config(squares, output, mode="few_shot", model={"name": "test_resnet", "weights": str(weights)})
    data.pop("train")
    data["few_shot"] = {
        "protocol": "fast", "shots": [1, 4], "trials": 2, "steps": 40, "batch_size": 16, "lr": 1e-2,
        "swap_probability": 0.5,
        "synthetic_per_class": 4, "image_size": 32, "num_workers": 0,
    }  # fmt: skip
    config = train_config_from_dict(data, "x")
    results = run(config)
    assert set(results["few_shot"]) == {"1", "4"}
    for k, summary in results["few_shot"].items():
        assert len(summary["trials"]) == 2
        assert summary["mean"] == pytest.approx(np.mean(summary["trials"]))
        assert summary["std"] == pytest.approx(np.std(summary["trials"], ddof=1))
        assert summary["swapped_fraction"] == pytest.approx(0.5, abs=0.1)
        assert summary["real_images"] == 4 * min(int(k), 6)
    assert len(list((output / "few_shot").glob("*.json"))) == 4
    table = format_table(results).splitlines()
    assert table[0] == "few_shot · test_resnet · fast" and [line.split()[0] for line in table[3:]] == ["1", "4"]
    # A rerun finds every trial done and trains no head.
    import synthset.training.fewshot_fast as fewshot_fast

    def no_training(*args, **kwargs):
        raise AssertionError("a finished trial was trained again")

    monkeypatch.setattr(fewshot_fast, "train_linear_head", no_training)
    assert run(config)["few_shot"] == results["few_shot"]


def test_few_shot_probe_trains_on_the_recorded_real_shots(squares, tmp_path):
    """With few_shot.real_shots the head sees exactly the real images a synthset few-shot set was made from."""
    from synthset.run.paths import RunDir
    from synthset.run.shots import write_shots

    torch.manual_seed(0)
    weights = tmp_path / "backbone.pth"
    torch.save(timm.create_model("test_resnet", num_classes=1000).state_dict(), weights)
    starts = np.cumsum([0, *REAL_COUNTS])  # the real split holds each class's rows contiguously
    expected = {k: sorted(int(starts[c + 1]) - 1 - i for c in range(4) for i in range(k)) for k in (1, 4)}
    source = str(squares / "real")
    shots = [
        {"config": f"c{k}", "label": c, "class_name": name, "seed": 0,
         "real_ids": [f"{source}:train:{int(starts[c + 1]) - 1 - i}" for i in range(k)]}
        for k in (1, 4) for c, name in enumerate(COLOURS)
    ]  # fmt: skip
    write_shots(RunDir(tmp_path / "dataset"), shots)
    output = tmp_path / "fs"
    data = _config(squares, output, mode="few_shot", model={"name": "test_resnet", "weights": str(weights)})
    data.pop("train")
    data["few_shot"] = {
        "protocol": "fast", "shots": [1, 4], "trials": 2, "steps": 5, "synthetic_per_class": 4, "image_size": 32,
        "num_workers": 0,
        "real_shots": {"path": str(tmp_path / "dataset"), "config": "c{k}"},
    }  # fmt: skip
    results = run(train_config_from_dict(data, "x"))
    assert results["data"]["real_shots"] == str(tmp_path / "dataset")
    for k in (1, 4):
        for trial in range(2):
            record = json.loads((output / "few_shot" / f"k{k:03d}-trial{trial:02d}.json").read_text())
            assert record["real_rows"] == expected[k]

    # A draw recorded against another label order is refused with the id at fault, before any training.
    shots[0]["real_ids"] = [f"{source}:train:45"]  # row 45 is green (1), the record says red (0)
    write_shots(RunDir(tmp_path / "dataset"), shots)
    data["output_dir"] = str(tmp_path / "fs2")
    with pytest.raises(SynthsetError) as error:
        run(train_config_from_dict(data, "x"))
    assert str(error.value) == (
        f"few_shot.real_shots: config 'c1': '{source}:train:45' is class 0 but row 45 of real is label 1: "
        "is `real` the recipe's real_images dataset and split?"
    )
    # A k that the recorded draw does not have names the config.
    data["few_shot"]["real_shots"]["config"] = "c4"
    with pytest.raises(SynthsetError, match="^few_shot.real_shots: config 'c4' drew 4 images of class 0, not k=1$"):
        run(train_config_from_dict(data, "x"))


def test_bad_data_is_one_line(squares, tmp_path, capsys):
    cases = [
        ({"real": {"path": str(tmp_path / "missing")}}, "real.path: no such dataset directory"),
        ({"synthetic": {"path": str(squares / "synthetic"), "name": "lar"}}, "synthetic.name: cannot load"),
        ({"eval": {"path": str(squares / "real"), "split": "test"}}, "eval.split: cannot load"),
        ({"eval": {"path": str(squares / "real"), "image_column": "img"}}, "eval.image_column: no column 'img'"),
        (
            {"ood": [{"path": str(squares / "ood"), "split": "test"}], "train": {"epochs": 1}},
            "ood[0].label_map: identity, but the split has 2 classes",
        ),
    ]
    for changes, expected in cases:
        config = _write(tmp_path / "train.yaml", _config(squares, tmp_path / "out", **changes))
        assert main(["train", str(config)]) == 2
        err = capsys.readouterr().err.strip().splitlines()  # datasets' own progress lines may come first
        errors = [line for line in err if line.startswith("synthset: error: ")]
        assert errors == [err[-1]] and expected in err[-1], err
        assert not any("Traceback" in line for line in err)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_under_accelerate_launch(squares, tmp_path):
    output = tmp_path / "ddp"
    config = _write(tmp_path / "train.yaml", _config(squares, output, train={"epochs": 2}))
    command = accelerate_launch_command(2, "train", str(config))
    command[2:2] = ["--main_process_port", str(_free_port())]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=os.environ.copy(), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("aux_bn · test_resnet · 2 epochs") == 1, "only the main process prints"
    assert result.stderr.count("synthset train: mode aux_bn") == 1, "only the main process logs progress"
    results = json.loads((output / "results.json").read_text())
    assert results["world_size"] == 2 and results["complete"]
    assert results["eval"]["images"] == 40, "every eval row counted exactly once over both ranks"
    steps = results["steps_per_epoch"]
    assert steps == 11  # ceil(82 real / 8 real per global batch)
    assert results["history"][-1]["eval_top1"] == results["eval"]["top1"]
    assert sorted(p.name for p in (output / "checkpoints").iterdir()) == ["epoch-0002.pt"]
