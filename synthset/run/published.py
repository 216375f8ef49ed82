"""Which configs a run publishes, and which shard files each one is.

A generation config with one band publishes itself. One with bands publishes `<name>` (every band) and
`<name>_<k>x` for k = 1..bands (bands 0..k-1): nested scales that are sets of whole shard files, so the
2x config lists the 1x shards plus the next band's and no image is stored twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from synthset.recipe import Recipe
from synthset.run.ids import parse_shard_name


@dataclass(frozen=True)
class PublishedConfig:
    name: str
    generation_config: str
    split: str
    bands: int  # bands 0..bands-1 are included


@dataclass(frozen=True)
class ShardFile:
    """A generation shard and the path it is published under (relative to dataset/)."""

    shard: str
    config: str
    split: str
    band: int
    published_path: str


def published_configs(recipe: Recipe) -> list[PublishedConfig]:
    configs = []
    for config in recipe.configs:
        configs.append(PublishedConfig(config.name, config.name, config.split, config.bands))
        if config.bands > 1:
            configs += [
                PublishedConfig(f"{config.name}_{k}x", config.name, config.split, k) for k in range(1, config.bands + 1)
            ]
    return configs


def shard_files(recipe: Recipe, shard_names: list[str]) -> list[ShardFile]:
    """Published paths: `<config>/<split>-NNNNN-of-MMMMM.parquet`, with `-b<band>` when the config has bands.

    Numbering is per band, so the names of a band's files never change when later bands are added.
    """
    bands = {c.name: c.bands for c in recipe.configs}
    parsed = [(name, parse_shard_name(name)) for name in shard_names]
    per_band: dict[tuple[str, str, int], int] = {}
    for _, shard in parsed:
        key = (shard.config, shard.split, shard.band)
        per_band[key] = per_band.get(key, 0) + 1
    files = []
    for name, shard in parsed:
        total = per_band[(shard.config, shard.split, shard.band)]
        stem = f"{shard.split}-b{shard.band}" if bands[shard.config] > 1 else shard.split
        path = f"{shard.config}/{stem}-{shard.index:05d}-of-{total:05d}.parquet"
        files.append(ShardFile(name, shard.config, shard.split, shard.band, path))
    return files


def files_of(config: PublishedConfig, files: list[ShardFile]) -> list[ShardFile]:
    return [f for f in files if f.config == config.generation_config and f.band < config.bands]
