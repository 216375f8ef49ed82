"""The training config: what `synthset train` runs, read from YAML into a pydantic model.

One file says which question is asked of a synthetic set (`mode`), with which model, on which real and
synthetic data, and how it is scored. It is validated whole before any data is read or any model built:
a misspelt key or an impossible combination (aux BN without synthetic data, a batch too small to hold a
synthetic image) fails with one line naming the file and the key, never an hour into a run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from synthset.errors import RecipeError
from synthset.recipe import LargestObjectSpec, Strict, describe_validation_error

Mode = Literal["aux_bn", "long_tail", "few_shot"]
LossName = Literal["cross_entropy", "balanced_softmax"]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveInt = Annotated[int, Field(gt=0)]
EPOCH_UNITS = ("real", "synthetic", "longest")
EpochLength = Literal["real", "synthetic", "longest"] | PositiveInt


class DataSource(Strict):
    """One split of a `datasets` dataset: a local directory of Parquet files or a Hub dataset id."""

    path: str = Field(
        description="A local dataset directory (e.g. runs/demo/dataset) or a Hub dataset id (org/name). "
        "A path that starts with '/', '.' or '~', has more than one '/', or exists here is local."
    )
    name: str | None = Field(
        None,
        description="The dataset config, e.g. lar_cd_sd. In few_shot mode the synthetic name may contain "
        "{k} and {trial}, for a synthetic set made per shot count and trial.",
    )
    revision: str | None = Field(None, description="Hub branch, tag or commit (Hub ids only).")
    split: str = "train"
    image_column: str = "image"
    label_column: str = Field("label", description="A ClassLabel (or integer) column.")
    limit: PositiveInt | None = Field(None, description="Use only the first N rows (a quick check).")
    classes: str | None = Field(
        None,
        description="A synthset class set (e.g. caltech101_dafusion, coco) whose label order this split is put "
        "in: label names are matched lowercased with '_' as a space; rows of other classes are left out.",
    )
    label_from: LargestObjectSpec | None = Field(
        None,
        description="Label rows by their largest object (COCO, PASCAL VOC), as real_images.label_from does; "
        "needs classes. Rows without an object are left out (their row numbers are kept for recorded shot ids).",
    )

    @model_validator(mode="after")
    def _label_from_needs_classes(self) -> DataSource:
        if self.label_from is not None and self.classes is None:
            raise ValueError("label_from needs classes (the class set the objects' categories are matched to)")
        return self

    def describe(self) -> str:
        where = self.path + (f"@{self.revision}" if self.revision else "")
        return f"{where} [{self.name or 'default'}/{self.split}]"


class OODSource(DataSource):
    """An extra evaluation split whose labels map onto the model's classes (e.g. ImageNet-R)."""

    title: str | None = Field(None, description="The row name in the results (default: path/split).")
    label_map: str = Field(
        "identity",
        description="identity: the split's label i is model class i; imagenet-r / imagenet-a: the split has "
        "the 200-class subset (timm's index files); or a text file with one model class index per line, "
        "line i for the split's label i. With a subset, only those classes' logits compete.",
    )

    @property
    def display_name(self) -> str:
        return self.title or f"{self.path}/{self.split}"


class ModelSpec(Strict):
    name: str = Field(description="A timm model name, e.g. resnet50 or deit_small_patch16_224.")
    pretrained: bool = Field(False, description="Load timm's pretrained weights (from the Hub).")
    weights: Path | None = Field(
        None,
        description="A local weights file (.safetensors or .pth state_dict) loaded through timm's pretrained "
        "loader; the classifier is re-initialised when its class count differs.",
    )
    kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Extra timm.create_model arguments, e.g. {drop_path_rate: 0.1}."
    )

    @field_validator("name")
    @classmethod
    def _known_to_timm(cls, value: str) -> str:
        import timm

        if not timm.is_model(value):
            raise ValueError(f"unknown timm model {value!r} (see timm.list_models())")
        return value


class TrainSpec(Strict):
    """Supervised training from real + synthetic batches (modes aux_bn and long_tail)."""

    epochs: PositiveInt = 90
    batch_size: PositiveInt = Field(256, description="Global batch size, split evenly over processes.")
    synthetic_fraction: Fraction = Field(
        0.5, description="Share of every batch drawn from the synthetic set; 0 is the real-only baseline."
    )
    epoch: EpochLength | None = Field(
        None,
        description="What one epoch is (the unit of epochs, warmup_epochs and eval_every). real: one pass over the "
        "real set (its share of each batch), the same compute whatever the synthetic set's size, so a scale curve "
        "compares more data at equal compute; synthetic: one pass over the synthetic set (grows with it); longest: "
        "whichever of the two needs more steps; or a number of steps. The other source cycles, reshuffled every "
        "pass. Default: real, or synthetic when no batch holds a real row.",
    )
    optimizer: str = Field("momentum", description="A timm optimizer name: momentum (SGD), sgd (Nesterov), adamw...")
    lr: Annotated[float, Field(gt=0)] = 0.1
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    weight_decay: Annotated[float, Field(ge=0)] = 1e-4
    decay_norm_and_bias: bool = Field(
        False,
        description="Apply weight_decay to biases and norm parameters too. Default false: timm's recipe exempts "
        "them; paper B's authors decay all (their optimizer gets model.parameters() in one group).",
    )
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_epochs: Annotated[float, Field(ge=0)] = 0.0
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.0
    loss: LossName | None = Field(None, description="Default: balanced_softmax in long_tail mode, else cross_entropy.")
    dual_bn: bool | None = Field(None, description="Auxiliary BatchNorm for synthetic rows. Default: on in aux_bn.")
    clip_grad_norm: Annotated[float, Field(gt=0)] | None = None
    image_size: PositiveInt | None = Field(None, description="Default: the model's input size.")
    augment: Literal["rrc_flip", "rrc_flip_jitter", "flip", "none"] = Field(
        "rrc_flip",
        description="rrc_flip: RandomResizedCrop + flip; rrc_flip_jitter: the same + ColorJitter(brightness, "
        "contrast, saturation 0.4; hue 0), paper B's ImageNet-LT training (BALMS); flip: center crop + flip; none.",
    )
    num_workers: Annotated[int, Field(ge=0)] = 4
    shuffle_buffer: PositiveInt = Field(
        16384,
        description="Rows shuffled together when a split is read in place from Parquet: row groups come in a "
        "seeded order and rows are permuted within windows of this many rows. Each DataLoader worker holds the "
        "window's row groups (encoded images), so memory grows with it and a batch mixes more row groups.",
    )
    checkpoint_every: PositiveInt | None = Field(
        None, description="Also checkpoint every N steps within an epoch; a killed run resumes at that step."
    )
    eval_every: PositiveInt = Field(1, description="Evaluate every N epochs (and always after the last).")
    eval_batch_size: PositiveInt | None = Field(None, description="Per process. Default: the training share.")
    keep_checkpoints: PositiveInt = 1

    @field_validator("epoch", mode="before")
    @classmethod
    def _epoch_unit_or_steps(cls, value: Any) -> Any:
        """One readable line for a bad value (a union's error lists every member's)."""
        is_steps = isinstance(value, int) and not isinstance(value, bool) and value > 0
        if value is None or is_steps or value in EPOCH_UNITS:
            return value
        raise ValueError(f"expected {', '.join(EPOCH_UNITS)} or a positive number of steps (got {value!r})")

    @field_validator("optimizer")
    @classmethod
    def _known_optimizer(cls, value: str) -> str:
        from timm.optim import list_optimizers

        if value.lower() not in list_optimizers():
            raise ValueError(f"unknown timm optimizer {value!r} (e.g. momentum, sgd, adamw, lamb)")
        return value.lower()


class RealShotsSpec(Strict):
    """The k-shot draws a synthset few-shot dataset recorded, to train the probe on the same real images."""

    path: Path = Field(
        description="real_shots.parquet, or the directory holding it (a dataset built by `synthset build`)."
    )
    config: str | None = Field(
        None,
        description="The few-shot config whose draw a (k, trial) uses; may contain {k} and {trial}. "
        "Default: the synthetic name. A name without {trial} gives every trial of a k the same real images.",
    )


class FewShotSpec(Strict):
    """The few-shot probe: a linear head on a frozen pretrained backbone, k real images per class, per trial.

    protocol dafusion (default) is DA-Fusion's train_classifier.py as DA-Fusion runs it: DA-Fusion's split per
    trial, images resized to 256x256 with flips and 15-degree rotations, BatchNorm in training mode (batch
    statistics, running stats updated) while the head trains, Adam 1e-4, 50 epochs x 200 steps of 32, each
    drawn real image swapped with p for a synthetic one (of that very real image, or of its class), and the
    mean per-class accuracy on the validation split after every epoch, reported at the best epoch over the
    trials' mean. protocol fast caches eval-mode features once and reports last-step top-1: minutes instead
    of hours, not comparable with DA-Fusion's tables.

    protocol paper_b_code is dafusion with the three quirks of paper B's authors' fine_tune.py
    (JiahuiKChen/LT-classification), the code behind paper B's few-shot numbers: (1) validation draws are
    swapped for a synthetic image of their class with the training swap_probability, as their datasets'
    __getitem__ swaps whatever the split, so the number mixes real and synthetic accuracy; (2) every trial
    trains on the seed-0 shots (their train set is built with the default seed), so trials differ only in
    head init, draws and validation half (on Caltech101/Flowers102 a later trial's validation half can hold
    its training shots); (3) the reported number is the mean over trials of each trial's own best epoch
    (their FineTuneResults notebook), an optimistic pick. Use it to compare with their published numbers
    only; see docs/papers.md.
    """

    protocol: Literal["dafusion", "paper_b_code", "fast"] = "dafusion"
    shots: Annotated[list[PositiveInt], Field(min_length=1)] = [1, 2, 4, 8, 16]
    trials: PositiveInt = Field(
        4, description="Trial t draws DA-Fusion's split with numpy seed `seed + t` (DA-Fusion: 8, paper B: 4)."
    )
    swap_probability: Fraction = Field(
        0.5, description="Chance that a drawn real image is replaced by a synthetic image (DA-Fusion: 0.5)."
    )
    synthetic_pool: Literal["per_real", "per_class"] | None = Field(
        None,
        description="per_real (dafusion's default): a real image is swapped for a synthetic image made from it "
        "(its cond_images); per_class (paper B's probe, fast's only option): for any synthetic image of its class.",
    )
    synthetic_per_real: PositiveInt | None = Field(
        10, description="per_real: synthetic images per real image (DA-Fusion's M = 10); null: all of them."
    )
    synthetic_per_class: PositiveInt | None = Field(
        16, description="per_class: synthetic pool per class (paper B: 16); null: all of them."
    )
    halves: bool = Field(
        False,
        description="dafusion: split `real` into DA-Fusion's per-trial halves (Caltech101, Flowers102): train on "
        "shots of the first half, score the second half; give no eval split then.",
    )
    epochs: PositiveInt = Field(50, description="dafusion: epochs per trial (DA-Fusion: 50).")
    iterations_per_epoch: PositiveInt = Field(200, description="dafusion: head updates per epoch (DA-Fusion: 200).")
    eval_draws: PositiveInt | None = Field(
        6400,
        description="dafusion: validation images drawn with replacement per epoch (DA-Fusion: 32 x 200); null: "
        "every validation image once (the same expectation without the sampling noise).",
    )
    steps: PositiveInt | None = Field(None, description="fast: head updates per trial (default 10,000).")
    batch_size: PositiveInt = 32
    lr: Annotated[float, Field(gt=0)] = 1e-4
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    image_size: PositiveInt | None = Field(None, description="Default: 256 (dafusion), the model's input size (fast).")
    feature_batch_size: PositiveInt = Field(64, description="fast: images per feature batch.")
    num_workers: Annotated[int, Field(ge=0)] = 4
    real_shots: RealShotsSpec | None = Field(
        None,
        description="Train on the real images the synthetic set was conditioned on (its real_shots.parquet). "
        "Its ids must be rows of `real` (`<dataset>:<split>:<row>`); dafusion also checks they are its trial's "
        "DA-Fusion shots (the recipe's shot_draw), so validation never sees them.",
    )

    @field_validator("shots")
    @classmethod
    def _unique(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError("shot counts must be unique")
        return sorted(value)

    @property
    def epoch_based(self) -> bool:
        """dafusion and paper_b_code train epochs x iterations and validate every epoch; fast trains steps."""
        return self.protocol != "fast"

    @property
    def pool_kind(self) -> str:
        return self.synthetic_pool or ("per_real" if self.protocol == "dafusion" else "per_class")

    @property
    def fast_steps(self) -> int:
        return self.steps or 10000

    @property
    def input_size(self) -> int | None:
        return self.image_size or (256 if self.epoch_based else None)

    @model_validator(mode="after")
    def _protocol_fields(self) -> FewShotSpec:
        given = self.model_fields_set
        if self.epoch_based:
            if "steps" in given:
                raise ValueError(f"steps is the fast probe's; {self.protocol} trains epochs x iterations_per_epoch")
        else:
            for key in ("epochs", "iterations_per_epoch", "eval_draws", "halves", "synthetic_per_real"):
                if key in given:
                    raise ValueError(f"{key} is for protocol dafusion or paper_b_code (protocol is fast)")
        if self.protocol != "dafusion" and self.synthetic_pool == "per_real":
            raise ValueError(
                f"protocol {self.protocol} pools synthetic images per class; use protocol dafusion for per_real"
            )
        return self


class Buckets(Strict):
    """ImageNet-LT's split of classes by real training images: many > 100, few < 20, medium between."""

    many_above: Annotated[int, Field(ge=0)] = 100
    few_below: Annotated[int, Field(ge=0)] = 20


class TrainConfig(Strict):
    mode: Mode = Field(
        description="aux_bn: paper A, real + synthetic with auxiliary BatchNorm; long_tail: paper B, "
        "Balanced Softmax with real class frequencies; few_shot: DA-Fusion linear probe."
    )
    seed: int = 0
    output_dir: Path = Field(description="Checkpoints, train.log, results.json and model.safetensors go here.")
    model: ModelSpec
    real: DataSource = Field(description="Real training split (its class frequencies drive long_tail and buckets).")
    synthetic: DataSource | None = Field(None, description="Synthetic training split; omit for a real-only baseline.")
    eval: DataSource | None = Field(
        None, description="Real evaluation split, e.g. ImageNet validation (none for few_shot.halves)."
    )
    ood: list[OODSource] = Field(default_factory=list, description="Extra evaluation splits, after training.")
    train: TrainSpec = TrainSpec()
    few_shot: FewShotSpec = FewShotSpec()
    buckets: Buckets = Buckets()

    @property
    def loss_name(self) -> LossName:
        if self.train.loss is not None:
            return self.train.loss
        return "balanced_softmax" if self.mode == "long_tail" else "cross_entropy"

    @property
    def epoch_length(self) -> str | int:
        """`train.epoch` as given, or its default: real, or synthetic for a batch of synthetic rows only."""
        if self.train.epoch is not None:
            return self.train.epoch
        return "synthetic" if self.train.synthetic_fraction == 1.0 else "real"

    @property
    def use_dual_bn(self) -> bool:
        """Dual BN only when batches really hold both domains; otherwise the aux BN would never train."""
        wanted = self.train.dual_bn if self.train.dual_bn is not None else self.mode == "aux_bn"
        return wanted and 0.0 < self.train.synthetic_fraction < 1.0


# Fields that change what is trained; the rest (workers, eval batch size, OOD splits, where the output goes)
# may change between a killed run and its resumption.
_OPERATIONAL = {
    "output_dir": True,
    "ood": True,
    "eval": True,
    "buckets": True,
    "train": {"num_workers", "eval_batch_size", "keep_checkpoints", "eval_every", "checkpoint_every"},
    "few_shot": {"num_workers", "feature_batch_size"},
}


def config_fingerprint(config: TrainConfig) -> str:
    """A hash of everything that shapes the trained weights, stored in checkpoints to refuse a mismatched resume."""
    data = config.model_dump(mode="json", exclude=_OPERATIONAL)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def batch_composition(batch_size: int, synthetic_fraction: float) -> tuple[int, int]:
    """(real, synthetic) rows of a batch of `batch_size` with the given synthetic share."""
    synthetic = round(batch_size * synthetic_fraction)
    return batch_size - synthetic, synthetic


def _check_epoch(epoch: str | int | None, real: int, synthetic: int, fail: Callable[[str, str], None]) -> None:
    """An epoch counted in passes over a source needs that source in every batch."""
    for name, rows in (("real", real), ("synthetic", synthetic)):
        if epoch == name and rows == 0:
            fail("train.epoch", f"{name}, but train.synthetic_fraction leaves no {name} image in a batch")


def _check_consistency(config: TrainConfig, source: str) -> None:
    """Cross-field rules, each reported as `<file>: <key>: <problem>`."""

    def fail(key: str, message: str) -> None:
        raise RecipeError(f"{source}: {key}: {message}")

    def check_placeholders(key: str, name: str) -> None:
        try:
            name.format(k=1, trial=0)
        except (KeyError, IndexError, ValueError):
            fail(key, f"{name!r}: the only placeholders are {{k}} and {{trial}}")

    given = config.model_fields_set
    halves = config.mode == "few_shot" and config.few_shot.halves
    if config.eval is None and not halves:
        fail("eval", "missing: give the real evaluation split")
    if config.eval is not None and halves:
        fail("eval", "few_shot.halves scores the second half of `real`; leave eval out")
    if config.mode == "few_shot":
        if "train" in given:
            fail("train", "not used in few_shot mode (its settings go under few_shot)")
        if config.ood:
            fail("ood", "not used in few_shot mode (the probe's classes are the few-shot set's own)")
        if config.synthetic is None and config.few_shot.swap_probability > 0:
            fail("synthetic", "missing; give a synthetic split or set few_shot.swap_probability: 0 for a baseline")
        synthetic_name = config.synthetic.name if config.synthetic is not None else None
        if synthetic_name:
            check_placeholders("synthetic.name", synthetic_name)
        shots = config.few_shot.real_shots
        if shots is not None:
            if not (shots.config or synthetic_name):
                fail("few_shot.real_shots.config", "missing: name the few-shot config (e.g. caltech101_{k}shot)")
            check_placeholders("few_shot.real_shots.config", shots.config or synthetic_name)
        if not (config.model.pretrained or config.model.weights):
            fail("model", "few_shot probes a frozen pretrained backbone: set model.pretrained: true or model.weights")
    else:
        if "few_shot" in given:
            fail("few_shot", f"only used in few_shot mode (mode is {config.mode})")
        fraction = config.train.synthetic_fraction
        if config.synthetic is None and fraction > 0:
            fail(
                "synthetic",
                f"missing while train.synthetic_fraction is {fraction}; give a synthetic split "
                "or set train.synthetic_fraction: 0 for a real-only baseline",
            )
        real, synthetic = batch_composition(config.train.batch_size, fraction)
        if 0 < fraction < 1 and (real == 0 or synthetic == 0):
            fail(
                "train.synthetic_fraction",
                f"{fraction} of batch_size {config.train.batch_size} leaves no "
                f"{'real' if real == 0 else 'synthetic'} image in a batch",
            )
        _check_epoch(config.train.epoch, real, synthetic, fail)
        if config.synthetic is not None and config.synthetic.name and "{" in config.synthetic.name:
            fail("synthetic.name", "{k}/{trial} placeholders are only for few_shot mode")
    if config.buckets.few_below > config.buckets.many_above + 1:
        fail("buckets", "few_below must not exceed many_above + 1")


def train_config_from_dict(data: Any, source: str) -> TrainConfig:
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: a training config must be a YAML mapping, got {type(data).__name__}")
    try:
        config = TrainConfig.model_validate(data)
    except ValidationError as error:
        raise RecipeError(describe_validation_error(error, source)) from None
    _check_consistency(config, source)
    return config


def apply_overrides(data: Any, overrides: list[str], source: str) -> Any:
    """`key.sub=value` settings (value read as YAML) applied to a config's data, e.g. synthetic.name=lar_cd.

    One config file then serves every row of a paper's table (`synthset train CONFIG --set ...`).
    """
    import yaml

    if not isinstance(data, dict):
        return data
    for override in overrides:
        key, sep, text = override.partition("=")
        if not sep or not key.strip():
            raise RecipeError(f"--set {override!r}: expected KEY=VALUE, e.g. synthetic.name=lar_cd")
        target = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            if not isinstance(target.get(part, {}), dict):
                raise RecipeError(f"--set {override!r}: {part!r} in {source} is not a section")
            target = target.setdefault(part, {})
        try:
            target[parts[-1]] = yaml.safe_load(text)
        except yaml.YAMLError:
            raise RecipeError(f"--set {override!r}: the value is not valid YAML") from None
    return data


def load_train_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read and validate a training config; every problem is one `SynthsetError` line naming file and key."""
    from synthset.recipe import read_yaml_file

    path = Path(path)
    data = apply_overrides(read_yaml_file(path, "training config"), overrides or [], str(path))
    return train_config_from_dict(data, str(path))
