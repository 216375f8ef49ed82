"""Sample ids, per-sample seeds and shard names: the stable identities everything else keys on."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

_SHARD = re.compile(r"^(?P<config>[^/]+)/(?P<split>[a-z0-9_]+)-b(?P<band>\d+)-(?P<index>\d{5})$")


def make_sample_id(config: str, label: int, index: int) -> str:
    return f"{config}/{label:04d}/{index:06d}"


def sample_seed(recipe_seed: int, sample_id: str) -> int:
    """A 63-bit seed from (recipe seed, sample id) only: never from rank, world size or batch position."""
    digest = hashlib.sha256(f"{recipe_seed}/{sample_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def attempt_seed(recipe_seed: int, sample_id: str, attempt: int) -> int:
    """The seed of a sample's `attempt`-th draw: attempt 0 is the plan's seed; a redraw (the quality gate
    rejected the image) takes the next attempt. Like `sample_seed`, it depends on nothing but the recipe
    seed, the sample id and the attempt number, so a redrawn row regenerates from its own columns."""
    if attempt == 0:
        return sample_seed(recipe_seed, sample_id)
    digest = hashlib.sha256(f"{recipe_seed}/{sample_id}/attempt-{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def shard_name(config: str, split: str, band: int, index: int) -> str:
    """Shards are numbered within a scale band, so growing a run never renames a finished shard."""
    return f"{config}/{split}-b{band}-{index:05d}"


@dataclass(frozen=True)
class ShardName:
    config: str
    split: str
    band: int
    index: int


def parse_shard_name(name: str) -> ShardName:
    match = _SHARD.match(name)
    if match is None:
        raise ValueError(f"not a shard name: {name!r}")
    return ShardName(match["config"], match["split"], int(match["band"]), int(match["index"]))
