"""Checkpoints: one file per finished epoch (`epoch-NNNN.pt`, NNNN epochs done) and, with
`train.checkpoint_every`, the newest mid-epoch one (`epoch-NNNN-step-SSSSSSS.pt`: NNNN epochs and SSSSSSS steps
of the next one done), each written to a temp name and renamed into place.

A killed run leaves at worst a stray temp file, never a half-written `epoch-NNNN.pt`, so "the newest
checkpoint" is always a whole one. A checkpoint holds everything the next epoch depends on: weights
(both BNs), optimizer and LR-schedule state, the epoch and step, the per-epoch history and the config
fingerprint. No RNG state is needed: the sampler, the augmentations and each epoch's global RNG are all
seeded from (seed, epoch/step, rank), so epoch e+1 of a resumed run sees exactly what an uninterrupted one
would have.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from synthset.errors import SynthsetError
from synthset.fsutil import atomic_path

CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^epoch-(\d{4,})(?:-step-(\d+))?\.pt$")


def checkpoint_path(output_dir: Path, epoch: int, step: int = 0) -> Path:
    name = f"epoch-{epoch:04d}.pt" if step == 0 else f"epoch-{epoch:04d}-step-{step:07d}.pt"
    return output_dir / CHECKPOINT_DIR / name


def list_positions(output_dir: Path) -> dict[tuple[int, int], Path]:
    """(epochs done, steps of the next epoch done) -> its checkpoint file."""
    found = {}
    directory = output_dir / CHECKPOINT_DIR
    if directory.is_dir():
        for path in directory.iterdir():
            match = _NAME.match(path.name)
            if match:
                found[(int(match.group(1)), int(match.group(2) or 0))] = path
    return found


def list_checkpoints(output_dir: Path) -> dict[int, Path]:
    """Finished epoch -> its checkpoint file."""
    return {epoch: path for (epoch, step), path in list_positions(output_dir).items() if step == 0}


def latest_checkpoint(output_dir: Path) -> Path | None:
    found = list_positions(output_dir)
    return found[max(found)] if found else None


def save_checkpoint(output_dir: Path, epoch: int, state: dict[str, Any], keep: int = 1, step: int = 0) -> Path:
    """Write the checkpoint of `epoch` epochs and `step` more steps done atomically; then drop every older
    mid-epoch checkpoint and all but the newest `keep` finished-epoch ones."""
    path = checkpoint_path(output_dir, epoch, step)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    for (old_epoch, old_step), old in list_positions(output_dir).items():
        if old_step and (old_epoch, old_step) < (epoch, step):
            old.unlink(missing_ok=True)
    for old_epoch, old in sorted(list_checkpoints(output_dir).items())[:-keep]:
        if old_epoch < epoch:
            old.unlink(missing_ok=True)
    for stale in (output_dir / CHECKPOINT_DIR).glob(".tmp-*"):
        if stale.stat().st_mtime < path.stat().st_mtime - 3600:  # a killed writer's leftover, not a live one
            stale.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path, fingerprint: str) -> dict[str, Any]:
    """Read a checkpoint and refuse it when it was made by a config that trains something else."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("fingerprint") != fingerprint:
        raise SynthsetError(
            f"{path}: made with another training config (fingerprint {state.get('fingerprint')} vs {fingerprint}); "
            "restore that config or choose a new output_dir"
        )
    return state
