"""Which configs a run publishes, where each shard file goes, and the `data_files` globs that select them.

A generation config with one band publishes itself. One with bands publishes `<name>` (every band) and
`<name>_<k>x` for k = 1..bands (bands 0..k-1): nested scales that are sets of whole shard files, so the
2x config is the 1x folder plus the next band's and no image is stored twice.

Layout: one folder per scale band, `<config>/b<band>/<split>-NNNNN-of-MMMMM.parquet`, so no folder holds
more than one band's files; a band with more files than the Hub allows in one folder (10k) is spread over
`<config>/b<band>/p<k>/` sub-folders of at most that many. A published config's README entry is then a
short list of globs, one per folder (`naive/b0/train-*.parquet`), whatever the number of files: the README
stays small, and `datasets` resolves the globs to the files in sorted order, band after band.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from synthset.recipe import Recipe
from synthset.run.hub_limits import FOLDER_ENTRIES_MAX, folder_chunks
from synthset.run.ids import parse_shard_name


@dataclass(frozen=True)
class PublishedConfig:
    name: str
    generation_config: str
    split: str
    bands: int  # bands 0..bands-1 are included
    strategy: str  # its generation config's prompt strategy (the card's table names it)


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
        scales = [(config.name, config.bands)]
        if config.bands > 1:
            scales += [(f"{config.name}_{k}x", k) for k in range(1, config.bands + 1)]
        configs += [PublishedConfig(name, config.name, config.split, bands, config.strategy) for name, bands in scales]
    return configs


def band_folder(config: str, band: int, chunk: int | None = None) -> str:
    """`<config>/b<band>`, or its `p<chunk>` sub-folder when the band needs several folders."""
    return f"{config}/b{band}" if chunk is None else f"{config}/b{band}/p{chunk:02d}"


def published_path(config: str, split: str, band: int, index: int, total: int) -> str:
    """Where shard `index` of a band of `total` shards is published. Numbering is per band, so a band's
    names never change when later bands are added; a band over the per-folder limit is chunked in order."""
    digits = max(5, len(str(total)))
    chunk = index // FOLDER_ENTRIES_MAX if folder_chunks(total) > 1 else None
    return f"{band_folder(config, band, chunk)}/{split}-{index:0{digits}d}-of-{total:0{digits}d}.parquet"


def shard_files(recipe: Recipe, shard_names: list[str]) -> list[ShardFile]:
    """The published path of every shard (see `published_path`)."""
    parsed = [(name, parse_shard_name(name)) for name in shard_names]
    per_band: dict[tuple[str, str, int], int] = {}
    for _, shard in parsed:
        key = (shard.config, shard.split, shard.band)
        per_band[key] = per_band.get(key, 0) + 1
    files = []
    for name, shard in parsed:
        total = per_band[(shard.config, shard.split, shard.band)]
        path = published_path(shard.config, shard.split, shard.band, shard.index, total)
        files.append(ShardFile(name, shard.config, shard.split, shard.band, path))
    return files


def files_of(config: PublishedConfig, files: list[ShardFile]) -> list[ShardFile]:
    return [f for f in files if f.config == config.generation_config and f.band < config.bands]


def data_file_patterns(config: PublishedConfig, files: list[ShardFile]) -> list[str]:
    """The README `data_files` globs of a published config: one per folder of its files, in band order."""
    folders: list[str] = []
    for file in files_of(config, files):
        pattern = f"{file.published_path.rsplit('/', 1)[0]}/{file.split}-*.parquet"
        if pattern not in folders:
            folders.append(pattern)
    return sorted(folders, key=lambda p: [int(n) if n.isdigit() else n for n in re.split(r"(\d+)", p)])


@functools.lru_cache(maxsize=1024)
def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    for token in re.split(r"(\*\*/?|\*|\?)", pattern):
        if token.startswith("**"):
            out += "(?:.*/)?" if token.endswith("/") else ".*"
        elif token == "*":
            out += "[^/]*"
        elif token == "?":
            out += "[^/]"
        else:
            out += re.escape(token)
    return re.compile(out + r"\Z")


def pattern_matches(pattern: str, path: str) -> bool:
    """Whether a README `data_files` glob selects `path`, as fsspec's glob (and so `datasets`) resolves it:
    `*` and `?` stay within one folder, `**` crosses folders."""
    return _pattern_regex(pattern).match(path) is not None


_PUBLISHED = re.compile(
    r"^(?P<config>[^/]+)/b(?P<band>\d+)(?:/p\d+)?/(?P<split>[a-z0-9_]+)-(?P<index>\d+)-of-\d+\.parquet$"
)


def shard_of(path: str) -> str | None:
    """The generation shard a published Parquet path is (`naive/b0/train-00003-of-00012.parquet` ->
    `naive/train-b0-00003`), or None for any other file."""
    from synthset.run.ids import shard_name

    match = _PUBLISHED.match(path)
    if match is None:
        return None
    return shard_name(match["config"], match["split"], int(match["band"]), int(match["index"]))
