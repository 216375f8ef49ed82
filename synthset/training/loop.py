"""One training epoch and one evaluation pass, under `accelerate`.

Every rank runs the same number of steps per epoch (the sampler makes it so), which is what DDP needs to
never hang; the only cross-process calls are one sum per evaluation and one per epoch's statistics.
Evaluation uses the unwrapped model in eval mode (main BNs), each rank scoring every W-th row and the
per-class tallies summed, so no row is counted twice and no padding is needed.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from synthset.training.config import TrainSpec
from synthset.training.data import ImageRows, LoadedSplit
from synthset.training.dual_bn import mixed_batch
from synthset.training.metrics import ClassTally

POSTFIX_SECONDS = 2.0


def make_optimizer(model: nn.Module, spec: TrainSpec) -> torch.optim.Optimizer:
    """timm's optimizer factory. Biases and norm parameters (every 1-d parameter) go without weight decay, as timm
    trains, unless `decay_norm_and_bias` (paper B's authors put every parameter in one SGD group)."""
    from timm.optim import create_optimizer_v2

    return create_optimizer_v2(
        model,
        opt=spec.optimizer,
        lr=spec.lr,
        weight_decay=spec.weight_decay,
        momentum=spec.momentum,
        filter_bias_and_bn=not spec.decay_norm_and_bias,
    )


def lr_factor(schedule: str, total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Multiplier of the base LR at each optimizer step: linear warmup, then cosine to zero or constant."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def make_scheduler(
    optimizer: torch.optim.Optimizer, spec: TrainSpec, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = int(round(spec.warmup_epochs * steps_per_epoch))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(spec.schedule, spec.epochs * steps_per_epoch, warmup))


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """The global torch seed for an epoch on a rank (dropout, drop-path): a function of (seed, epoch, rank)."""
    return int(np.random.default_rng([seed, 3, epoch, rank]).integers(0, 2**62))


def step_seed(seed: int, global_step: int, rank: int) -> int:
    """The global torch seed for one training step on a rank: a function of (seed, step, rank), so a run resumed
    at any step draws the same dropout and drop-path as an uninterrupted one."""
    return int(np.random.default_rng([seed, 9, global_step, rank]).integers(0, 2**62))


@dataclass(frozen=True)
class EpochStats:
    loss: float
    top1: float
    steps: int
    images: int
    seconds: float


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    criterion: nn.Module,
    loader: torch.utils.data.DataLoader,
    accelerator,
    dual_bn: bool,
    clip_grad_norm: float | None = None,
    desc: str = "train",
    after_step: Callable[[int], None] | None = None,
    step_seed: Callable[[int], int] | None = None,
) -> EpochStats:
    """One pass over the loader's batches (real rows first, then synthetic); returns loss and top-1 over all ranks.
    `step_seed(n)` seeds torch's global RNG (dropout, drop-path) before the n-th step of this pass, so a run
    resumed mid-epoch draws what an uninterrupted one would; `after_step(n)` runs after it (a checkpoint)."""
    model.train()
    device = accelerator.device
    started = time.monotonic()
    sums = torch.zeros(2, dtype=torch.float64, device=device)  # loss * rows, correct: summed without a sync
    seen = 0
    bar = tqdm(loader, desc=desc, unit="step", dynamic_ncols=True, disable=not accelerator.is_main_process)
    shown = 0.0
    for done, (images, labels, synthetic) in enumerate(bar, start=1):
        if step_seed is not None:
            torch.manual_seed(step_seed(done))
        real_rows = int((~synthetic).sum())
        if synthetic[:real_rows].any():
            raise RuntimeError("a batch must hold its real rows first")
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        route = mixed_batch(model, real_rows) if dual_bn else contextlib.nullcontext()
        with route:
            logits = model(images)
        loss = criterion(logits.float(), labels)
        accelerator.backward(loss)
        if clip_grad_norm is not None:
            accelerator.clip_grad_norm_(model.parameters(), clip_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            seen += labels.numel()
            sums += torch.stack([loss.detach().double() * labels.numel(), (logits.argmax(1) == labels).sum().double()])
        if after_step is not None:
            after_step(done)
        if not bar.disable and time.monotonic() - shown > POSTFIX_SECONDS:  # .item() waits for the device
            shown = time.monotonic()
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{scheduler.get_last_lr()[0]:.3g}", refresh=False)
    if not bar.disable and len(loader):  # the epoch's mean on this rank, one wait for the device per epoch
        bar.set_postfix(loss=f"{float(sums[0]) / seen:.3f}", lr=f"{scheduler.get_last_lr()[0]:.3g}")
    bar.close()
    totals = torch.cat([sums, sums.new_tensor([seen])])
    if accelerator.num_processes > 1:
        totals = accelerator.reduce(totals, "sum")
    rows = max(1.0, float(totals[2]))
    return EpochStats(
        loss=float(totals[0]) / rows,
        top1=float(totals[1]) / rows,
        steps=len(loader),
        images=int(totals[2]),
        seconds=time.monotonic() - started,
    )


def evaluate(
    model: nn.Module,
    split: LoadedSplit,
    transform,
    accelerator,
    num_classes: int,
    batch_size: int,
    num_workers: int = 0,
    class_indices: np.ndarray | None = None,
    desc: str = "eval",
) -> ClassTally:
    """Per-class tallies of `split` summed over ranks; with `class_indices`, only those logits compete."""
    net = accelerator.unwrap_model(model)
    net.eval()
    device = accelerator.device
    rows = ImageRows(split, transform, np.arange(accelerator.process_index, len(split), accelerator.num_processes))
    loader = torch.utils.data.DataLoader(rows, batch_size=batch_size, num_workers=num_workers)
    size = num_classes if class_indices is None else len(class_indices)
    tally = ClassTally.zeros(size, device)
    keep = None if class_indices is None else torch.as_tensor(class_indices, device=device)
    with torch.no_grad(), accelerator.autocast():
        for images, labels in tqdm(loader, desc=desc, leave=False, disable=not accelerator.is_main_process):
            logits = net(images.to(device)).float()
            if keep is not None:
                logits = logits[:, keep]
            tally.update(logits, labels.to(device))
    if accelerator.num_processes > 1:
        tally = ClassTally.from_stacked(accelerator.reduce(tally.stacked(), "sum"))
    return tally
