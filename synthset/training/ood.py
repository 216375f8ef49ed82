"""Label maps for out-of-domain evaluation splits (ImageNet-R, ImageNet-A, or any subset of the classes).

ImageNet-R and ImageNet-A cover 200 of the 1,000 ImageNet classes and label them 0..199. The standard
protocol (timm's validate.py) keeps only those 200 logits, so the model competes among the classes the
split has; the prediction's position in the subset is compared with the split's label. timm ships the
subsets as `imagenet_{r,a}_indices.txt` (model class per subset position) and `imagenet_{r,a}_synsets.txt`
(the wnids in that order).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from synthset.errors import SynthsetError

logger = logging.getLogger(__name__)

NAMED_SUBSETS = {"imagenet-r": "imagenet_r", "imagenet-a": "imagenet_a"}
_WNID = re.compile(r"^n\d{8}$")


def _timm_info_file(name: str) -> Path:
    from synthset.classes.imagenet import timm_info_dir

    return timm_info_dir() / name


def _read_ints(path: Path, field: str) -> np.ndarray:
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except FileNotFoundError:
        raise SynthsetError(f"{field}: no such label map file: {str(path)!r}") from None
    try:
        return np.array([int(line) for line in lines], dtype=np.int64)
    except ValueError:
        raise SynthsetError(f"{field}: {path} must hold one model class index per line") from None


def subset_indices(
    label_map: str, split_class_names: list[str] | None, num_model_classes: int, field: str
) -> np.ndarray | None:
    """Model class index for each of the split's labels, or None when the labels are the model's own.

    A named subset whose split labels are wnids (ClassLabel names like n01443537) is matched by wnid, so
    the split's label order does not matter; otherwise the split's labels are taken in timm's order.
    """
    if label_map == "identity":
        if split_class_names is not None and len(split_class_names) != num_model_classes:
            raise SynthsetError(
                f"{field}: identity, but the split has {len(split_class_names)} classes and the model "
                f"{num_model_classes}; give imagenet-r, imagenet-a or a file of model class indices"
            )
        return None
    if label_map in NAMED_SUBSETS:
        prefix = NAMED_SUBSETS[label_map]
        indices = _read_ints(_timm_info_file(f"{prefix}_indices.txt"), field)
        wnids = _timm_info_file(f"{prefix}_synsets.txt").read_text(encoding="utf-8").split()
        if split_class_names and all(_WNID.match(name) for name in split_class_names):
            position = {wnid: i for i, wnid in enumerate(wnids)}
            unknown = [name for name in split_class_names if name not in position]
            if unknown:
                raise SynthsetError(f"{field}: class {unknown[0]!r} of the split is not in {label_map}")
            indices = indices[[position[name] for name in split_class_names]]
        else:
            logger.info("%s: split labels taken in timm's %s order", field, label_map)
    else:
        indices = _read_ints(Path(label_map), field)
    if split_class_names is not None and len(split_class_names) != len(indices):
        raise SynthsetError(
            f"{field}: the label map has {len(indices)} classes but the split's label has {len(split_class_names)}"
        )
    if indices.min() < 0 or indices.max() >= num_model_classes:
        bad = int(indices.min() if indices.min() < 0 else indices.max())
        raise SynthsetError(f"{field}: the label map names class {bad} but the model has {num_model_classes} classes")
    return indices
