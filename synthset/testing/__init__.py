"""Offline stand-ins for the Hub models synthset uses, built from configs: imported by tests, bench and the
`synthset tiny-models` command only, never by the product (lint-imports holds that).

- `tiny`: tiny models (a 64 px SD pipeline, an unCLIP pipeline, an open_clip CLIP, a chat LM) that the test
  suite and the demo run in seconds; `build_all` builds them.
- `replicas`: architecture-true replicas of the real generators (SD 1.5, 2.1-base, 2.1 768-v, 2.1-unCLIP,
  SDXL base, the SDXL fp16-fix VAE, the CompVis safety checker): the published configs with random
  weights, at full size or scaled down.
- `slurm_cluster`: a real one-node SLURM cluster on loopback (Debian's slurm-wlm and munge), for the tests
  and the bench of `synthset submit --slurm`.

Each is saved with `save_pretrained` under `$SYNTHSET_HOME/models/<name>` and loaded by the code under test
through `from_pretrained`, the path a Hub id takes. Recipes name them `synthset-testing:<name>`.
"""

from __future__ import annotations

from pathlib import Path

from synthset.errors import SynthsetError
from synthset.models import synthset_home
from synthset.testing.replicas import REPLICAS, replica_names, replica_path
from synthset.testing.store import build_atomically
from synthset.testing.tiny import (
    TINY_LM,
    TINY_MODELS,
    TINY_OPEN_CLIP,
    TINY_SAFETY_CHECKER,
    TINY_SD,
    TINY_UNCLIP,
    UNCLIP_EMBED_DIM,
    tiny_lm_path,
    tiny_open_clip_path,
    tiny_sd_path,
    tiny_unclip_path,
)

__all__ = [
    "REPLICAS",
    "TINY_LM",
    "TINY_MODELS",
    "TINY_OPEN_CLIP",
    "TINY_SAFETY_CHECKER",
    "TINY_SD",
    "TINY_UNCLIP",
    "UNCLIP_EMBED_DIM",
    "build_all",
    "build_atomically",
    "build_replicas",
    "replica_path",
    "synthset_home",
    "tiny_lm_path",
    "tiny_model_path",
    "tiny_open_clip_path",
    "tiny_sd_path",
    "tiny_unclip_path",
]


def tiny_model_path(name: str, home: Path | None = None) -> Path:
    """The directory of the model ``name`` (a tiny model, or a replica as `replica-<name>[-small]`), building
    it on first use. Recipes name it ``synthset-testing:<name>``; ``synthset.models`` resolves that to the
    same directory (never building)."""
    if name in TINY_MODELS:
        return TINY_MODELS[name](home)
    replica = replica_names().get(name)
    if replica is not None:
        return replica_path(*replica, home=home)
    known = ", ".join(sorted(TINY_MODELS) + sorted(replica_names()))
    raise SynthsetError(f"unknown tiny model 'synthset-testing:{name}' (known: {known})")


def build_all(home: Path | None = None) -> dict[str, Path]:
    """Build (or reuse) every tiny model, e.g. to warm the cache before an offline run (not the replicas)."""
    return {name: path_of(home) for name, path_of in TINY_MODELS.items()}


def build_replicas(scale: str, names: list[str] | None = None, home: Path | None = None) -> dict[str, Path]:
    """Build (or reuse) the replicas `names` (default: all) at `scale`; each full one takes gigabytes."""
    return {name: replica_path(name, scale, home) for name in names or list(REPLICAS)}
