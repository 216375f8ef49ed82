"""The harness's parts, each against a direct statement of what it must do (no data, no training run)."""

from __future__ import annotations

import copy
import logging
import math

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
import yaml

from synthset.cli import build_parser, main
from synthset.errors import SynthsetError
from synthset.training.config import batch_composition, config_fingerprint, train_config_from_dict
from synthset.training.dual_bn import (
    DualBatchNorm,
    convert_to_dual_bn,
    domain,
    dual_bn_modules,
    mixed_batch,
    prepare_aux_bn,
    to_single_bn,
)
from synthset.training.fewshot import swap_with_synthetic, synthetic_pool
from synthset.training.fewshot_fast import kshot_indices, summarize
from synthset.training.losses import BalancedSoftmaxLoss, balanced_softmax_loss, log_prior
from synthset.training.metrics import ClassTally, accuracy_report, shot_buckets
from synthset.training.ood import subset_indices
from synthset.training.sampler import REAL, SYNTHETIC, MixedBatchSampler, default_steps_per_epoch, steps_per_epoch


@pytest.fixture(autouse=True, scope="module")
def one_cpu_thread():
    """Tiny models on a shared 2-core machine: two OpenMP threads contending with other processes run up to 20x
    slower than one (measured), so these tests pin one thread and restore the setting afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- dual BN


def _bn_stats(model: torch.nn.Module, which: str) -> list[torch.Tensor]:
    out = []
    for module in dual_bn_modules(model):
        bn = getattr(module, which)
        out += [bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone()]
    return out


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def _all_differ(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(not torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.fixture
def dual_resnet() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    plain = timm.create_model("test_resnet", num_classes=3)
    dual = copy.deepcopy(plain)
    assert convert_to_dual_bn(dual) == sum(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    return plain, dual


def test_dual_bn_routes_running_stats_by_domain(dual_resnet):
    _, model = dual_resnet
    model.train()
    synthetic, real = torch.randn(6, 3, 32, 32) * 2 + 1, torch.randn(6, 3, 32, 32)
    main0, aux0 = _bn_stats(model, "main"), _bn_stats(model, "aux")
    with domain(model, "synthetic"):
        model(synthetic)
    main1, aux1 = _bn_stats(model, "main"), _bn_stats(model, "aux")
    assert _same(main0, main1), "a synthetic batch changed the main BN's running stats"
    assert _all_differ(aux0, aux1), "a synthetic batch did not update every auxiliary BN"
    with domain(model, "real"):
        model(real)
    main2, aux2 = _bn_stats(model, "main"), _bn_stats(model, "aux")
    assert _same(aux1, aux2), "a real batch changed the auxiliary BN's running stats"
    assert _all_differ(main1, main2), "a real batch did not update every main BN"
    # Outside a routing block a training batch counts as real.
    model(real)
    assert _same(aux2, _bn_stats(model, "aux"))


def test_dual_bn_mixed_batch_equals_separate_passes(dual_resnet):
    _, model = dual_resnet
    model.train()
    x = torch.cat([torch.randn(5, 3, 32, 32), torch.randn(3, 3, 32, 32) * 3 - 1])
    separate, mixed = copy.deepcopy(model), copy.deepcopy(model)
    with domain(separate, "real"):
        out_real = separate(x[:5])
    with domain(separate, "synthetic"):
        out_synthetic = separate(x[5:])
    with mixed_batch(mixed, real_rows=5):
        out_mixed = mixed(x)
    torch.testing.assert_close(out_mixed, torch.cat([out_real, out_synthetic]), rtol=1e-5, atol=1e-5)
    for which in ("main", "aux"):
        for a, b in zip(_bn_stats(mixed, which), _bn_stats(separate, which), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert all(m.real_rows is None for m in dual_bn_modules(mixed)), "routing leaked out of the block"


def test_dual_bn_eval_uses_main_and_real_path_is_the_original_model(dual_resnet):
    plain, model = dual_resnet
    x = torch.randn(4, 3, 32, 32)
    # In train mode a real batch through the dual model is exactly the original model.
    plain.train(), model.train()
    with domain(model, "real"):
        torch.testing.assert_close(model(x), plain(x))
    # Give the aux BNs very different statistics, then evaluate: the output must follow the main BNs.
    with domain(model, "synthetic"):
        for _ in range(3):
            model(torch.randn(8, 3, 32, 32) * 5 + 3)
    model.eval()
    main_only = to_single_bn(copy.deepcopy(model)).eval()
    aux_only = copy.deepcopy(model)
    for module in dual_bn_modules(aux_only):
        module.main = module.aux
    aux_only = to_single_bn(aux_only).eval()
    with torch.no_grad(), domain(model, "synthetic"):
        out = model(x)
    torch.testing.assert_close(out, main_only(x))
    assert not torch.allclose(out, aux_only(x), atol=1e-3), "test cannot tell main from aux"
    # The exported single-BN model loads into a fresh timm model with the same keys.
    fresh = timm.create_model("test_resnet", num_classes=3)
    fresh.load_state_dict(main_only.state_dict())


def test_dual_bn_wraps_timm_batchnormact_and_falls_back_without_bn(caplog):
    efficientnet = timm.create_model("test_efficientnet", num_classes=3)
    kinds = {type(m).__name__ for m in efficientnet.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert kinds == {"BatchNormAct2d"}
    count = len([m for m in efficientnet.modules() if isinstance(m, torch.nn.BatchNorm2d)])
    with caplog.at_level(logging.INFO, logger="synthset"):
        assert prepare_aux_bn(efficientnet, "test_efficientnet") == count
        vit = timm.create_model("test_vit", num_classes=3, img_size=32)
        assert prepare_aux_bn(vit, "test_vit") == 0
    assert not dual_bn_modules(vit)
    assert any("test_vit has no BatchNorm; falling back to plain mixing" in r.message for r in caplog.records)
    # Every BN is inside a DualBatchNorm; no BN was left behind or wrapped twice.
    assert all(
        isinstance(parent, DualBatchNorm)
        for parent in efficientnet.modules()
        for child in parent.children()
        if isinstance(child, torch.nn.BatchNorm2d)
    )
    assert convert_to_dual_bn(efficientnet) == 0


# ---------------------------------------------------------------- Balanced Softmax


def test_balanced_softmax_equals_its_formula():
    torch.manual_seed(1)
    counts = torch.tensor([500, 120, 30, 7, 1])
    logits = torch.randn(16, 5, dtype=torch.float64) * 3
    targets = torch.randint(0, 5, (16,))
    # Direct: -log( n_y e^{z_y} / sum_j n_j e^{z_j} ), averaged over the batch.
    expected = 0.0
    for z, y in zip(logits.tolist(), targets.tolist(), strict=True):
        denominator = sum(n * math.exp(zj) for n, zj in zip(counts.tolist(), z, strict=True))
        expected += -math.log(counts[y].item() * math.exp(z[y]) / denominator)
    expected /= len(targets)
    got = balanced_softmax_loss(logits.float(), targets, log_prior(counts))
    assert got.item() == pytest.approx(expected, rel=1e-5)
    module = BalancedSoftmaxLoss(counts)
    assert module(logits.float(), targets).item() == pytest.approx(expected, rel=1e-5)
    assert abs(F.cross_entropy(logits, targets).item() - expected) > 0.1, "prior made no difference"
    # A class without a real image counts as one: finite loss, trainable logit.
    zero = balanced_softmax_loss(logits.float(), torch.full((16,), 4), log_prior(torch.tensor([5, 5, 5, 5, 0])))
    assert torch.isfinite(zero)


# ---------------------------------------------------------------- sampler


def test_half_real_half_synthetic_batches_compose_exactly():
    real_n, synthetic_n = 37, 50
    real_per, synthetic_per = batch_composition(8, 0.5)
    assert (real_per, synthetic_per) == (4, 4)
    assert batch_composition(10, 0.3) == (7, 3)
    steps = default_steps_per_epoch(real_n, synthetic_n, real_per, synthetic_per)
    assert steps == 13  # ceil(50 / 4): the synthetic set is seen once, the real one cycles
    sampler = MixedBatchSampler(real_n, synthetic_n, real_per, synthetic_per, steps, epoch=0, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == steps
    for batch in batches:
        assert [item.source for item in batch] == [REAL] * 4 + [SYNTHETIC] * 4
    real_seen = [i.index for b in batches for i in b if i.source == REAL]
    synthetic_seen = [i.index for b in batches for i in b if i.source == SYNTHETIC]
    assert sorted(synthetic_seen[:synthetic_n]) == list(range(synthetic_n)), "a pass is a permutation"
    assert sorted(real_seen[:real_n]) == list(range(real_n))
    assert len(set(real_seen[real_n:])) == len(real_seen) - real_n, "the second pass repeats no row"
    assert len({i.seed for b in batches for i in b}) == 8 * steps, "augmentation seeds must differ per row"
    # Deterministic in the seed; epochs and seeds differ.
    again = list(MixedBatchSampler(real_n, synthetic_n, real_per, synthetic_per, steps, epoch=0, seed=3))
    assert again == batches
    assert list(MixedBatchSampler(real_n, synthetic_n, real_per, synthetic_per, steps, epoch=1, seed=3)) != batches
    assert list(MixedBatchSampler(real_n, synthetic_n, real_per, synthetic_per, steps, epoch=0, seed=4)) != batches


def test_weight_decay_skips_norm_and_bias_unless_asked():
    from synthset.training.loop import make_optimizer

    model = timm.create_model("test_resnet", num_classes=3)
    one_d = {id(p) for p in model.parameters() if p.ndim <= 1}
    for decay_all in (False, True):
        spec = train_config_from_dict(_with({"train.decay_norm_and_bias": decay_all, "train.weight_decay": 0.05}), "x")
        groups = make_optimizer(model, spec.train).param_groups
        decayed = {id(p) for g in groups if g["weight_decay"] == 0.05 for p in g["params"]}
        undecayed = {id(p) for g in groups if g["weight_decay"] == 0.0 for p in g["params"]}
        assert len(decayed) + len(undecayed) == len(list(model.parameters()))
        assert undecayed == (set() if decay_all else one_d), "biases and norm weights: decayed only when asked"


def test_epoch_length_is_the_configured_pass_or_step_count():
    # 1,000 real and 3,000 synthetic rows, batches of 8 real + 8 synthetic
    assert steps_per_epoch("real", 1000, 3000, 8, 8) == 125
    assert steps_per_epoch("synthetic", 1000, 3000, 8, 8) == 375
    assert steps_per_epoch("longest", 1000, 3000, 8, 8) == 375 == default_steps_per_epoch(1000, 3000, 8, 8)
    assert steps_per_epoch("real", 1001, 3000, 8, 8) == 126  # the last partial batch counts
    assert steps_per_epoch(4547, 1000, 3000, 8, 8) == 4547
    assert steps_per_epoch("real", 1000, 6 * 3000, 8, 8) == 125, "a real epoch does not grow with the synthetic set"
    with pytest.raises(ValueError, match="an epoch of real rows needs real rows in every batch"):
        steps_per_epoch("real", 1000, 3000, 0, 16)
    # The default: real, or synthetic when batches hold synthetic rows only; given values are kept.
    assert train_config_from_dict(BASE, "x").epoch_length == "real"
    assert train_config_from_dict(_with({"train.synthetic_fraction": 1.0}), "x").epoch_length == "synthetic"
    assert train_config_from_dict(_with({"train.epoch": "synthetic"}), "x").epoch_length == "synthetic"
    assert train_config_from_dict(_with({"train.epoch": 12}), "x").epoch_length == 12


def test_sampler_ranks_draw_disjoint_rows_and_real_only_baseline():
    per_rank = [list(MixedBatchSampler(40, 40, 2, 2, 10, epoch=0, seed=0, rank=r, world_size=2)) for r in range(2)]
    for source in (REAL, SYNTHETIC):
        rows = [i.index for sampler in per_rank for b in sampler for i in b if i.source == source]
        assert sorted(rows) == list(range(40)), "two ranks together see each row once per pass"
    baseline = list(MixedBatchSampler(40, 0, 8, 0, 5, epoch=0, seed=0))
    assert all(item.source == REAL for b in baseline for item in b) and all(len(b) == 8 for b in baseline)


# ---------------------------------------------------------------- metrics and OOD maps


def test_shot_buckets_and_bucket_accuracy():
    assert shot_buckets(np.array([150, 101, 100, 50, 20, 19, 0])).tolist() == [
        "many", "many", "medium", "medium", "medium", "few", "few",
    ]  # fmt: skip
    tally = ClassTally.zeros(4)
    logits = torch.eye(4)[[0, 0, 1, 2, 2, 2, 3, 0]] * 5  # predictions
    targets = torch.tensor([0, 0, 1, 2, 2, 3, 3, 3])
    tally.update(logits, targets)
    assert tally.seen.tolist() == [2, 1, 2, 3] and tally.correct1.tolist() == [2, 1, 2, 1]
    report = accuracy_report(tally, np.array([200, 50, 50, 5]))
    assert report["top1"] == pytest.approx(6 / 8)
    assert report["many"] == 1.0 and report["medium"] == 1.0 and report["few"] == pytest.approx(1 / 3)
    assert report["classes_per_bucket"] == {"many": 1, "medium": 2, "few": 1}
    assert report["top5"] == 1.0


def test_ood_subset_maps(tmp_path):
    r = subset_indices("imagenet-r", None, 1000, "ood[0].label_map")
    assert len(r) == 200 and r[0] == 1 and list(r) == sorted(r)
    from synthset.classes.imagenet import timm_info_dir

    wnids = (timm_info_dir() / "imagenet_r_synsets.txt").read_text().split()
    reordered = subset_indices("imagenet-r", wnids[::-1], 1000, "ood[0].label_map")
    assert list(reordered) == list(r[::-1]), "wnid labels must be matched by wnid, not position"
    assert subset_indices("identity", None, 1000, "x") is None
    with pytest.raises(SynthsetError, match=r"ood\[0\]\.label_map: the label map has 200 classes but the split"):
        subset_indices("imagenet-a", ["a", "b"], 1000, "ood[0].label_map")
    custom = tmp_path / "map.txt"
    custom.write_text("3\n1\n")
    assert subset_indices(str(custom), ["x", "y"], 4, "m").tolist() == [3, 1]
    with pytest.raises(SynthsetError, match="names class 3 but the model has 3 classes"):
        subset_indices(str(custom), ["x", "y"], 3, "m")


# ---------------------------------------------------------------- few-shot protocol


def test_kshot_draws_k_per_class_deterministically():
    labels = np.array([0] * 10 + [1] * 3 + [2] * 7)
    chosen = kshot_indices(labels, 4, seed=0, trial=0)
    assert np.bincount(labels[chosen]).tolist() == [4, 3, 4]
    assert np.array_equal(chosen, kshot_indices(labels, 4, seed=0, trial=0))
    assert not np.array_equal(chosen, kshot_indices(labels, 4, seed=0, trial=1))
    pool = synthetic_pool(labels, 2, seed=0, trial=0)
    assert {c: len(rows) for c, rows in pool.items()} == {0: 2, 1: 2, 2: 2}
    assert all((labels[rows] == c).all() for c, rows in pool.items())


def test_fewshot_swap_probability_and_same_class_only():
    synthetic_labels = np.repeat(np.arange(5), 16)
    pool = synthetic_pool(synthetic_labels, None, seed=0, trial=0)
    del pool[4]  # class 4 has no synthetic image: never swapped
    rng = np.random.default_rng(0)
    real_labels = rng.integers(0, 5, 40000)
    for p in (0.0, 0.5, 1.0):
        swapped, rows = swap_with_synthetic(real_labels, pool, p, np.random.default_rng(1))
        eligible = real_labels != 4
        assert not swapped[~eligible].any()
        assert swapped[eligible].mean() == pytest.approx(p, abs=0.01)
        assert (rows[~swapped] == -1).all()
        assert (synthetic_labels[rows[swapped]] == real_labels[swapped]).all(), "swapped in another class's image"
    swapped, rows = swap_with_synthetic(real_labels, pool, 0.5, np.random.default_rng(2))
    used = set(rows[swapped].tolist())
    assert len(used) == 64, "picks must spread over every pooled image"


def test_fewshot_summary_mean_and_std():
    records = [
        {"k": 1, "trial": t, "top1": v, "swapped_fraction": 0.5, "real_images": 4}
        for t, v in enumerate([0.5, 0.7, 0.6])
    ]
    summary = summarize(records)["1"]
    assert summary["mean"] == pytest.approx(0.6) and summary["std"] == pytest.approx(0.1)


# ---------------------------------------------------------------- config


BASE = {
    "mode": "aux_bn",
    "output_dir": "out",
    "model": {"name": "test_resnet"},
    "real": {"path": "data/real"},
    "synthetic": {"path": "data/synthetic", "name": "naive"},
    "eval": {"path": "data/real", "split": "validation"},
    "train": {"batch_size": 8},
}


def _with(changes: dict) -> dict:
    data = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        *parents, key = dotted.split(".")
        node = data
        for parent in parents:
            node = node.setdefault(parent, {})
        if value is _DELETE:
            node.pop(key)
        else:
            node[key] = value
    return data


_DELETE = object()


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"train.epochz": 3}, "{cfg}: train.epochz: unknown key"),
        (
            {"train.synthetic_fraction": 1.0, "train.epoch": "real"},
            "{cfg}: train.epoch: real, but train.synthetic_fraction leaves no real image in a batch",
        ),
        (
            {"train.synthetic_fraction": 0, "synthetic": _DELETE, "train.epoch": "synthetic"},
            "{cfg}: train.epoch: synthetic, but train.synthetic_fraction leaves no synthetic image in a batch",
        ),
        (
            {"train.epoch": 0},
            "{cfg}: train.epoch: expected real, synthetic, longest or a positive number of steps (got 0)",
        ),
        (
            {"train.epoch": "passes"},
            "{cfg}: train.epoch: expected real, synthetic, longest or a positive number of steps",
        ),
        ({"mode": "fancy"}, "{cfg}: mode: Input should be 'aux_bn', 'long_tail' or 'few_shot' (got 'fancy')"),
        ({"model.name": "resnet5000"}, "{cfg}: model.name: unknown timm model 'resnet5000'"),
        ({"train.optimizer": "sgdd"}, "{cfg}: train.optimizer: unknown timm optimizer 'sgdd'"),
        ({"train.synthetic_fraction": 1.5}, "{cfg}: train.synthetic_fraction: Input should be less than or equal"),
        ({"eval": _DELETE}, "{cfg}: eval: missing: give the real evaluation split"),
        ({"synthetic": _DELETE}, "{cfg}: synthetic: missing while train.synthetic_fraction is 0.5"),
        (
            {"train.synthetic_fraction": 0.05},
            "{cfg}: train.synthetic_fraction: 0.05 of batch_size 8 leaves no synthetic",
        ),
        ({"mode": "few_shot", "train": _DELETE}, "{cfg}: model: few_shot probes a frozen pretrained backbone"),
        ({"mode": "few_shot"}, "{cfg}: train: not used in few_shot mode"),
        ({"few_shot.trials": 2}, "{cfg}: few_shot: only used in few_shot mode (mode is aux_bn)"),
        (
            {
                "mode": "few_shot",
                "train": _DELETE,
                "model.pretrained": True,
                "synthetic": _DELETE,
                "few_shot.swap_probability": 0,
                "few_shot.real_shots": {"path": "data/synthetic"},
            },
            "{cfg}: few_shot.real_shots.config: missing: name the few-shot config (e.g. caltech101_{{k}}shot)",
        ),
        (
            {
                "mode": "few_shot",
                "train": _DELETE,
                "model.pretrained": True,
                "few_shot.real_shots": {"path": "data/synthetic", "config": "c{n}"},
            },
            "{cfg}: few_shot.real_shots.config: 'c{{n}}': the only placeholders are {{k}} and {{trial}}",
        ),
    ],
)
def test_bad_config_is_one_line(tmp_path, capsys, changes, expected):
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(_with(changes)))
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("synthset: error: " + expected.format(cfg=path)), err[0]


def test_missing_and_unparsable_config_files(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope.yaml")]) == 2
    assert capsys.readouterr().err.strip() == f"synthset: error: {tmp_path / 'nope.yaml'}: no such training config file"
    bad = tmp_path / "bad.yaml"
    bad.write_text("mode: [aux_bn\n")
    assert main(["train", str(bad)]) == 2
    assert capsys.readouterr().err.startswith(f"synthset: error: {bad}: line ")


def test_fingerprint_ignores_operational_fields_only():
    base = train_config_from_dict(BASE, "x")
    same = train_config_from_dict(_with({"train.num_workers": 0, "output_dir": "elsewhere"}), "x")
    other = train_config_from_dict(_with({"train.lr": 0.5}), "x")
    assert config_fingerprint(base) == config_fingerprint(same) != config_fingerprint(other)
    assert base.use_dual_bn and base.loss_name == "cross_entropy"
    long_tail = train_config_from_dict(_with({"mode": "long_tail"}), "x")
    assert not long_tail.use_dual_bn and long_tail.loss_name == "balanced_softmax"


def test_train_help_explains_modes_and_launch(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = capsys.readouterr().out
    for needle in ("aux_bn", "long_tail", "few_shot", "accelerate launch -m synthset train", "--stop-after-epoch"):
        assert needle in text
