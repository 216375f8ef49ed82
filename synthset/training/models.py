"""Models from timm by name, and the exported weights a user loads back into plain timm.

Every model goes through `timm.create_model`, pretrained weights included: a local weights file is handed
to timm's own pretrained loader (`pretrained_cfg_overlay=dict(file=...)`), so the classifier adaptation
(a different class count re-initialises the head) is timm's, not ours.
"""

from __future__ import annotations

import copy
from pathlib import Path

from torch import nn

from synthset.errors import SynthsetError
from synthset.fsutil import atomic_path
from synthset.training.config import ModelSpec
from synthset.training.dual_bn import to_single_bn


def build_model(spec: ModelSpec, num_classes: int) -> nn.Module:
    """`timm.create_model(spec.name, ...)` with `num_classes` outputs (0: the pooled features)."""
    import timm

    kwargs = dict(spec.kwargs)
    pretrained = spec.pretrained or spec.weights is not None
    if spec.weights is not None:
        if not spec.weights.is_file():
            raise SynthsetError(f"model.weights: no such file: {str(spec.weights)!r}")
        kwargs["pretrained_cfg_overlay"] = dict(file=str(spec.weights))
    try:
        return timm.create_model(spec.name, pretrained=pretrained, num_classes=num_classes, **kwargs)
    except TypeError as error:
        raise SynthsetError(f"model.kwargs: {spec.name} does not accept them: {error}") from None
    except Exception as error:
        if not pretrained:
            raise
        key = "weights" if spec.weights is not None else "pretrained"
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SynthsetError(f"model.{key}: cannot load weights for {spec.name!r}: {first}") from None


def export_weights(model: nn.Module, path: Path) -> None:
    """Save the evaluation model (main BNs only) as safetensors that load into `timm.create_model(name)`."""
    from safetensors.torch import save_file

    plain = to_single_bn(copy.deepcopy(model)).cpu()
    tensors = {name: tensor.detach().contiguous() for name, tensor in plain.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
