"""Auxiliary BatchNorm (paper A): real rows normalise with the main BN, synthetic rows with their own.

Synthetic images have other low-level statistics than photographs; when both share a BatchNorm, its
running mean and variance describe neither, and the network evaluated on real images is normalised with
the mixture. Paper A, after AdvProp's `MixBatchNorm2d`, gives each BatchNorm a twin: the main BN sees
only real rows and is the one used at evaluation; the auxiliary BN sees only synthetic rows. Convolution
and classifier weights are shared, so the synthetic data still trains them.

A batch is laid out real rows first (the sampler guarantees it); before the forward pass the caller
says how many leading rows are real (`mixed_batch`), or that the whole batch is one domain (`domain`).
Each `DualBatchNorm` then splits the batch at that row. In eval mode the main BN is always used.

`DualBatchNorm` wraps any `_BatchNorm` subclass, including timm's `BatchNormAct2d` (BN fused with its
activation), by holding two copies of the original module, so what each copy computes is exactly what the
original did. Models without BatchNorm (ViT, DeiT: LayerNorm) convert nothing; the caller falls back to
plain mixing and says so.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterator
from typing import Literal

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

logger = logging.getLogger(__name__)

Domain = Literal["real", "synthetic"]


class DualBatchNorm(nn.Module):
    """A main BN for real rows and an auxiliary BN (initialised as a copy) for synthetic rows."""

    def __init__(self, bn: _BatchNorm) -> None:
        super().__init__()
        self.main = bn
        self.aux = copy.deepcopy(bn)
        # How many leading rows of the next training batch are real; None: all of them.
        self.real_rows: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.real_rows is None or self.real_rows >= x.shape[0]:
            return self.main(x)
        if self.real_rows <= 0:
            return self.aux(x)
        n = self.real_rows
        return torch.cat([self.main(x[:n]), self.aux(x[n:])], dim=0)

    def extra_repr(self) -> str:
        return "main: real rows and eval; aux: synthetic rows"


def convert_to_dual_bn(model: nn.Module) -> int:
    """Replace every BatchNorm of `model` in place by a `DualBatchNorm`; returns how many were converted.

    Call it after loading pretrained weights (both BNs start from them) and before building the optimizer
    (the auxiliary BNs' affine parameters are new parameters).
    """
    converted = 0
    for name, child in list(model.named_children()):
        if isinstance(child, DualBatchNorm):
            continue
        if isinstance(child, _BatchNorm):
            setattr(model, name, DualBatchNorm(child))
            converted += 1
        else:
            converted += convert_to_dual_bn(child)
    return converted


def prepare_aux_bn(model: nn.Module, model_name: str) -> int:
    """`convert_to_dual_bn`, and say in the run log what happened: dual BN, or plain mixing without BatchNorm."""
    converted = convert_to_dual_bn(model)
    if converted:
        logger.info("aux BN: %d BatchNorm layers made dual (main: real rows and eval; aux: synthetic rows)", converted)
    else:
        logger.warning(
            "aux BN: %s has no BatchNorm; falling back to plain mixing (real and synthetic rows share all norm layers)",
            model_name,
        )
    return converted


def to_single_bn(model: nn.Module) -> nn.Module:
    """Replace every `DualBatchNorm` by its main BN in place, so the state_dict loads into a plain timm model."""
    for name, child in list(model.named_children()):
        if isinstance(child, DualBatchNorm):
            setattr(model, name, child.main)
        else:
            to_single_bn(child)
    return model


def dual_bn_modules(model: nn.Module) -> list[DualBatchNorm]:
    return [m for m in model.modules() if isinstance(m, DualBatchNorm)]


def _set_real_rows(model: nn.Module, real_rows: int | None) -> None:
    for module in dual_bn_modules(model):
        module.real_rows = real_rows


@contextlib.contextmanager
def mixed_batch(model: nn.Module, real_rows: int) -> Iterator[None]:
    """Within the block, the first `real_rows` rows of each training batch use the main BN, the rest the aux BN."""
    _set_real_rows(model, real_rows)
    try:
        yield
    finally:
        _set_real_rows(model, None)


@contextlib.contextmanager
def domain(model: nn.Module, which: Domain) -> Iterator[None]:
    """Within the block, whole training batches are `real` (main BN) or `synthetic` (aux BN)."""
    if which not in ("real", "synthetic"):
        raise ValueError(f"domain must be 'real' or 'synthetic', got {which!r}")
    _set_real_rows(model, 0 if which == "synthetic" else None)
    try:
        yield
    finally:
        _set_real_rows(model, None)
