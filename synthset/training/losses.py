"""Balanced Softmax (Ren et al. 2020), as paper B trains on ImageNet-LT.

On a long-tailed training set the softmax learns the label prior: head classes win ties. Balanced Softmax
adds log p(y) to each logit during training only, so the network's raw logits fit a balanced prior and are
used as they are at test time. Paper B takes the prior from the *real* class frequencies even though the
synthetic fill-up makes the mixed training set nearly balanced: the real counts are what made the
network's classes unequal, and they are what the reported many / medium / few buckets are defined by.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def log_prior(class_counts: torch.Tensor) -> torch.Tensor:
    """log(n_c / sum n); a class with no real image counts as one, so its logit stays finite and trainable."""
    counts = class_counts.to(torch.float64).clamp(min=1.0)
    return (counts / counts.sum()).log().to(torch.float32)


def balanced_softmax_loss(
    logits: torch.Tensor, targets: torch.Tensor, log_prior: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Cross-entropy of softmax(logits + log prior): the mean over the batch."""
    return F.cross_entropy(logits + log_prior.to(logits.dtype), targets, label_smoothing=label_smoothing)


class BalancedSoftmaxLoss(nn.Module):
    """`balanced_softmax_loss` with the prior held as a buffer, so it follows the model to its device."""

    def __init__(self, class_counts: torch.Tensor, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("log_prior", log_prior(class_counts))
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return balanced_softmax_loss(logits, targets, self.log_prior, self.label_smoothing)
