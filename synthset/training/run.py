"""`synthset train CONFIG`: build everything the config names, train (or probe), evaluate, report.

The order matters for resumption: the model is built and converted (dual BN) exactly as in the first
session, then the newest checkpoint, if any, replaces weights, optimizer and schedule state, and training
continues at the next epoch. A finished run that is started again skips training and only re-evaluates
(so an OOD split added later gets scored), which also makes the command safe to repeat.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthset.errors import SynthsetError
from synthset.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from synthset.training.config import OODSource, TrainConfig, batch_composition, config_fingerprint
from synthset.training.data import (
    ImageSettings,
    LoadedSplit,
    MixedRows,
    eval_transform,
    label_space,
    load_split,
    train_transform,
)
from synthset.training.dual_bn import prepare_aux_bn
from synthset.training.fewshot_protocols import run_few_shot
from synthset.training.loop import epoch_seed, evaluate, make_optimizer, make_scheduler, step_seed, train_epoch
from synthset.training.losses import BalancedSoftmaxLoss
from synthset.training.metrics import accuracy_report, class_counts
from synthset.training.models import build_model, export_weights
from synthset.training.ood import subset_indices
from synthset.training.results import write_results
from synthset.training.sampler import MixedBatchSampler, steps_per_epoch

logger = logging.getLogger(__name__)

LOG_FILE = "train.log"
MODEL_FILE = "model.safetensors"


def make_accelerator():
    """An Accelerator that sees every launched process, also on a machine without CUDA (see design.md)."""
    from accelerate import Accelerator

    try:
        accelerator = Accelerator(cpu=not torch.cuda.is_available())
    except ValueError as error:
        raise SynthsetError(f"accelerate could not set up the processes: {str(error).splitlines()[0]}") from None
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != accelerator.num_processes:
        raise SynthsetError(
            f"the launcher started {launched} processes but accelerate sees {accelerator.num_processes}; "
            "on CPU launch with `accelerate launch --multi_gpu --num_processes N` or `torchrun --nproc_per_node N`"
        )
    return accelerator


@contextlib.contextmanager
def run_log(output_dir: Path, main_process: bool) -> Iterator[None]:
    """Copy synthset's log lines (the run log: fallbacks, resumptions, per-epoch results) to OUTPUT/train.log.

    Other processes keep only their warnings, so N processes do not print every line N times.
    """
    if not main_process:
        harness = logging.getLogger("synthset.training")
        level = harness.level
        harness.setLevel(logging.WARNING)
        try:
            yield
        finally:
            harness.setLevel(level)
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(output_dir / LOG_FILE, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger("synthset")
    previous = root.level
    root.addHandler(handler)
    if root.getEffectiveLevel() > logging.INFO:
        root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
        handler.close()


def run(config: TrainConfig, stop_after_epoch: int | None = None) -> dict[str, Any] | None:
    """Run the config's mode; the results on the main process (also written to results.json), else None.

    `stop_after_epoch` ends the session once that many epochs are finished (a scheduler's time slice);
    the returned results then have `complete: false` and a later call continues from the checkpoint.
    """
    accelerator = make_accelerator()
    with run_log(config.output_dir, accelerator.is_main_process):
        logger.info(
            "synthset train: mode %s, model %s, %d process(es)",
            config.mode,
            config.model.name,
            accelerator.num_processes,
        )
        if config.mode == "few_shot":
            results = run_few_shot(config, accelerator)
        else:
            results = run_supervised(config, accelerator, stop_after_epoch)
        if accelerator.is_main_process and results is not None and results.get("complete", True):
            write_results(config.output_dir, results)
    return results if accelerator.is_main_process else None


def load_ood_split(source: OODSource, i: int, num_classes: int) -> tuple[OODSource, LoadedSplit, np.ndarray | None]:
    """An OOD split and its label map, checked against each other and the model's classes."""
    split = load_split(source, f"ood[{i}]")
    indices = subset_indices(source.label_map, split.class_names, num_classes, f"ood[{i}].label_map")
    size = num_classes if indices is None else len(indices)
    if split.labels.max() >= size:
        raise SynthsetError(f"ood[{i}].label_map: label {split.labels.max()} but {size} classes in the map")
    return source, split, indices


@dataclass
class SupervisedData:
    """Every split a supervised run reads, loaded and checked before any model is built."""

    real: LoadedSplit
    synthetic: LoadedSplit | None  # None for a real-only baseline
    eval: LoadedSplit
    ood: list[tuple[OODSource, LoadedSplit, np.ndarray | None]]
    num_classes: int
    train_counts: np.ndarray  # real images per class: Balanced Softmax prior and shot buckets


def load_supervised_data(config: TrainConfig) -> SupervisedData:
    real = load_split(config.real, "real")
    fraction = config.train.synthetic_fraction
    synthetic = load_split(config.synthetic, "synthetic") if config.synthetic and fraction else None
    eval_split = load_split(config.eval, "eval")
    num_classes, _ = label_space([s for s in (real, synthetic, eval_split) if s is not None])
    ood = [load_ood_split(source, i, num_classes) for i, source in enumerate(config.ood)]  # fail before training
    return SupervisedData(real, synthetic, eval_split, ood, num_classes, class_counts(real.labels, num_classes))


def plan_batches(config: TrainConfig, data: SupervisedData, world: int) -> tuple[int, int, int]:
    """(real rows, synthetic rows) of the global batch, and steps per epoch; each share splits evenly over ranks."""
    spec = config.train
    real_rows, synthetic_rows = batch_composition(spec.batch_size, spec.synthetic_fraction)
    if real_rows % world or synthetic_rows % world:
        raise SynthsetError(
            f"train.batch_size: {spec.batch_size} ({real_rows} real + {synthetic_rows} synthetic) cannot be split "
            f"evenly over {world} processes"
        )
    num_synthetic = len(data.synthetic) if data.synthetic else 0
    steps = steps_per_epoch(config.epoch_length, len(data.real), num_synthetic, real_rows, synthetic_rows)
    logger.info(
        "an epoch is %s: %d steps of %d real + %d synthetic", config.epoch_length, steps, real_rows, synthetic_rows
    )
    return real_rows, synthetic_rows, steps


def size_row_group_caches(data: SupervisedData, buffer: int) -> None:
    """Let each worker hold a whole shuffle window's row groups (plus the boundary ones) of a split read in place."""
    for split in (data.real, data.synthetic):
        if split is not None and split.row_groups:
            split.dataset.cache_groups = -(-buffer // min(split.row_groups)) + 2


def seed_of_step(seed: int, before_first: int, rank: int, done: int) -> int:
    """The torch seed of the `done`-th step of a pass that starts after global step `before_first`."""
    return step_seed(seed, before_first + done, rank)


def mid_epoch_saver(
    every: int | None, steps: int, first_step: int, save: Callable[[int], None]
) -> Callable[[int], None] | None:
    """After every `every`-th step of the epoch (not its last: the epoch checkpoint follows), save that step."""
    if every is None:
        return None

    def after_step(done: int) -> None:
        step = first_step + done
        if step % every == 0 and step < steps:
            save(step)

    return after_step


def make_criterion(config: TrainConfig, train_counts: np.ndarray) -> torch.nn.Module:
    if config.loss_name == "balanced_softmax":
        if (train_counts == 0).any():
            logger.warning("balanced softmax: %d classes have no real image; counted as one", (train_counts == 0).sum())
        return BalancedSoftmaxLoss(torch.as_tensor(train_counts), config.train.label_smoothing)
    return torch.nn.CrossEntropyLoss(label_smoothing=config.train.label_smoothing)


def run_supervised(config: TrainConfig, accelerator, stop_after_epoch: int | None = None) -> dict[str, Any]:
    """aux_bn and long_tail: train on real + synthetic batches, evaluate each epoch, checkpoint each epoch."""
    spec, fingerprint = config.train, config_fingerprint(config)
    rank, world = accelerator.process_index, accelerator.num_processes
    started = time.monotonic()
    data = load_supervised_data(config)
    real_rows, synthetic_rows, steps = plan_batches(config, data, world)

    torch.manual_seed(config.seed)
    model = build_model(config.model, data.num_classes)
    settings = ImageSettings.for_model(model, spec.image_size)
    converted = 0
    if config.use_dual_bn:
        converted = prepare_aux_bn(model, config.model.name)  # before the optimizer: aux BNs add parameters
    elif config.mode == "aux_bn":
        logger.warning("aux BN: off, train.synthetic_fraction is %s (one domain per batch)", spec.synthetic_fraction)
    criterion = make_criterion(config, data.train_counts).to(accelerator.device)
    optimizer = make_optimizer(model, spec)
    scheduler = make_scheduler(optimizer, spec, steps)
    model, optimizer = accelerator.prepare(model, optimizer)

    start_epoch, start_step, history = 0, 0, []
    latest = latest_checkpoint(config.output_dir)
    if latest is not None:
        state = load_checkpoint(latest, fingerprint)
        accelerator.unwrap_model(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, start_step, history = state["epoch"], state.get("step", 0), state["history"]
        logger.info(
            "resumed from %s (epoch %d of %d done, %d steps of the next)", latest, start_epoch, spec.epochs, start_step
        )
    size_row_group_caches(data, spec.shuffle_buffer)

    def save(epoch: int, step: int = 0) -> None:
        """Checkpoint `epoch` finished epochs and `step` steps of the next (main process only, no barrier)."""
        if accelerator.is_main_process:
            state = {
                "epoch": epoch,
                "step": step,
                "fingerprint": fingerprint,
                "model": accelerator.unwrap_model(model).state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "history": history,
            }
            save_checkpoint(config.output_dir, epoch, state, spec.keep_checkpoints, step)

    eval_tf = eval_transform(settings)
    dataset = MixedRows(data.real, data.synthetic, train_transform(settings, spec.augment))
    eval_batch = spec.eval_batch_size or max(1, spec.batch_size // world)

    def score_eval() -> dict[str, Any]:
        tally = evaluate(model, data.eval, eval_tf, accelerator, data.num_classes, eval_batch, spec.num_workers)
        return accuracy_report(tally, data.train_counts, config.buckets.many_above, config.buckets.few_below)

    last_report = None
    for epoch in range(start_epoch, spec.epochs):
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            break
        torch.manual_seed(epoch_seed(config.seed, epoch, rank))  # dropout / drop-path: same on resume
        sampler = MixedBatchSampler(
            num_real=len(data.real),
            num_synthetic=len(data.synthetic) if data.synthetic else 0,
            real_per_batch=real_rows // world,
            synthetic_per_batch=synthetic_rows // world,
            steps_per_epoch=steps,
            epoch=epoch,
            seed=config.seed,
            rank=rank,
            world_size=world,
            row_groups=(data.real.row_groups, data.synthetic.row_groups if data.synthetic else None),
            buffer=spec.shuffle_buffer,
        )
        sampler.first_step, first_step, start_step = start_step, start_step, 0
        loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=sampler, num_workers=spec.num_workers, pin_memory=torch.cuda.is_available()
        )
        stats = train_epoch(
            model,
            optimizer,
            scheduler,
            criterion,
            loader,
            accelerator,
            dual_bn=converted > 0,
            clip_grad_norm=spec.clip_grad_norm,
            desc=f"epoch {epoch + 1}/{spec.epochs}",
            after_step=mid_epoch_saver(spec.checkpoint_every, steps, first_step, functools.partial(save, epoch)),
            step_seed=functools.partial(seed_of_step, config.seed, epoch * steps + first_step - 1, rank),
        )
        entry: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": stats.loss,
            "train_top1": stats.top1,
            "lr": scheduler.get_last_lr()[0],
            "train_seconds": stats.seconds,
        }
        if (epoch + 1) % spec.eval_every == 0 or epoch + 1 == spec.epochs:
            last_report = score_eval()
            entry["eval_top1"] = last_report["top1"]
        history.append(entry)
        numbers = ", ".join(f"{k} {v:.4g}" for k, v in entry.items() if k != "epoch")
        logger.info("epoch %d/%d: %s", epoch + 1, spec.epochs, numbers)
        save(epoch + 1)
        accelerator.wait_for_everyone()

    done = history[-1]["epoch"] if history else 0
    summary: dict[str, Any] = {
        "mode": config.mode,
        "model": config.model.name,
        "fingerprint": fingerprint,
        "epochs": spec.epochs,
        "epochs_done": done,
        "complete": done == spec.epochs,
        "world_size": world,
        "epoch_length": config.epoch_length,
        "steps_per_epoch": steps,
        "batch": {"size": spec.batch_size, "real": real_rows, "synthetic": synthetic_rows},
        "loss": config.loss_name,
        "dual_bn_layers": converted,
        "num_classes": data.num_classes,
        "history": history,
    }
    if not summary["complete"]:
        logger.info("stopped after epoch %d of %d; run again to continue", done, spec.epochs)
        return summary
    if last_report is None:  # training finished in an earlier session: score the final weights again
        last_report = score_eval()
    ood = {}
    for source, split, indices in data.ood:
        size = data.num_classes if indices is None else len(indices)
        tally = evaluate(
            model, split, eval_tf, accelerator, size, eval_batch, spec.num_workers, indices, desc=source.display_name
        )
        ood[source.display_name] = accuracy_report(tally)
    if accelerator.is_main_process:
        export_weights(accelerator.unwrap_model(model), config.output_dir / MODEL_FILE)
    summary.update(
        eval=last_report,
        ood=ood,
        data={
            "real": {"source": config.real.describe(), "images": len(data.real)},
            "synthetic": {"source": config.synthetic.describe(), "images": len(data.synthetic)}
            if data.synthetic
            else None,
            "eval": {"source": config.eval.describe(), "images": len(data.eval)},
        },
        seconds=time.monotonic() - started,
    )
    return summary
