"""The Hugging Face Hub's documented limits, in one place, each with its source; and the plan-time check.

Both ends import this: `synthset plan` refuses a recipe whose published layout would break a limit
(before any GPU hour is spent), and `synthset push` sizes its commits and API calls by it. The Hub's
pages have changed over time (three versions of the numbers are on record), so where they disagree the
strictest is kept and the others are named.

Repository limits, from "Repository limitations and recommendations"
(https://huggingface.co/docs/hub/storage-limits, hub-docs `docs/hub/storage-limits.md`; the older page
https://huggingface.co/docs/hub/repositories-recommendations has the same table):
- files per folder: "The maximum number of files per folder cannot exceed 10k files per folder." (hard)
- files per repo: "we recommend keeping the total number of files under 100k, and ideally much less"
- files per commit: "there is no hard limit here ... When pushing data through HTTP, a timeout of 60s is
  set on the request ... we recommend adding around 50-100 files per commit" (table: "< 100 files")
- file size: recommended < 5 GB (older page), < 20 GB (live page), < 200 GB (newest stored copy); hard
  limit 50 GB (older page: "no single LFS file will be able to be >50GB") or 500 GB (newest)
- commits per repo: no hard limit; "the user experience on the Hub starts to degrade after a few
  thousand commits"
- repo size: public repos of free accounts are "best-effort ... usually up to 5TB"; the older page asks
  to "let us know in advance" for hundreds of GB and more, the newest one: "If you would like to upload
  more than 1TB, you will need to subscribe to Team/Enterprise or ask us to grant more storage"
- README / YAML metadata size: not documented. `create_commit` sends README.md to /api/validate-yaml
  first, and a large card has met "413 Payload Too Large" there (embeddings-benchmark/mteb#1892).

Per-call limits of the Hub API, as huggingface_hub 2.4 states and obeys them:
- preupload: 256 files per POST (`_upload_pipeline.PREUPLOAD_BATCH_SIZE = 256  # (server-side limit)`)
- LFS batch: 256 objects per call (`_commit_api.UPLOAD_BATCH_MAX_NUM_FILES`)
- paths-info: "Max is 1,000 per request on the Hub for HfApi.get_paths_info. Otherwise we get 413"
  (`_commit_api.py`, huggingface_hub#1503); `get_paths_info` itself does not page, so callers must
- tree listing: 1000 entries per page (50 with expand=True), cursor-paginated
- create_commit: "limited to 25k LFS files and a 1GB payload for regular files" (its docstring)
- rate limits per 5-minute window (https://huggingface.co/docs/hub/rate-limits): API calls 1,000 (free)
  to 6,000 (Enterprise); a 429 names its wait in `RateLimit` / `Retry-After` headers
"""

from __future__ import annotations

import math
from dataclasses import dataclass

FILES_PER_FOLDER = 10_000  # hard, and the table says "< 10k": a folder of exactly 10,000 is already over
# What synthset fills a folder to: 10 % below the Hub's figure. Why a margin: the docs' numbers have
# changed three times (above), the table's "< 10k" and the text's "cannot exceed 10k" disagree at 10,000,
# and a push leaves other writers' files in place (a README or notes added to a band folder would push
# a full folder over). 9,000 is a guess at a margin enough for those, not a documented number.
FOLDER_ENTRIES_MAX = 9_000
FILES_PER_REPO = 100_000  # recommended maximum; treated as a limit
FILES_PER_COMMIT = 50  # the low end of "around 50-100 files per commit" (datasets' push_to_hub uses 50 too)
FILE_SIZE_RECOMMENDED = 5 * 10**9  # the strictest published recommendation
FILE_SIZE_HARD = 50 * 10**9  # the strictest published hard limit
COMMITS_DEGRADE = 2_000  # "a few thousand commits": said in the plan's summary, not refused
REPO_SIZE_ASK_FIRST = 10**12  # above ~1 TB the Hub asks to be told / a paid plan
PREUPLOAD_FILES_PER_CALL = 256
PATHS_INFO_PER_CALL = 1_000
PATHS_INFO_PAGE = 500  # what huggingface_hub itself sends per call: half the cap
TREE_PAGE = 1_000
LFS_FILES_PER_COMMIT = 25_000
SIDE_FILES = 6  # README.md, manifest, recipe.lock.yaml, samples.jpg, real_shots.parquet, .gitattributes

# Bytes of a stored image per pixel, typical of diffusion images (measured on SD 512 px outputs: JPEG q95
# ~70 KB, PNG ~420 KB, WebP q95 ~45 KB); raw RGB is the upper bound a stored image cannot much exceed.
TYPICAL_BYTES_PER_PIXEL = {"jpeg": 0.27, "png": 1.6, "webp": 0.17}
RAW_BYTES_PER_PIXEL = 3.0


@dataclass(frozen=True)
class LayoutFigures:
    """What a recipe will publish, counted before anything is generated."""

    files: int  # every file of the repo
    data_files: int
    largest_folder: int  # entries of the fullest folder
    folders: int
    typical_file_bytes: int  # the largest shard, at typical compression
    max_file_bytes: int  # the largest shard, at the raw upper bound
    typical_repo_bytes: int
    commits: int  # commits of one version at FILES_PER_COMMIT


def folder_chunks(files_in_band: int) -> int:
    """How many sub-folders a scale band's files are spread over so that none holds more than
    FOLDER_ENTRIES_MAX (a margin below the Hub's per-folder limit)."""
    return max(1, math.ceil(files_in_band / FOLDER_ENTRIES_MAX))


def human_bytes(size: float) -> str:
    """A size as people read it, in powers of 1000 as the Hub shows sizes: `4.2 GB`, `512 B`."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def layout_figures(
    band_rows: dict[tuple[str, int], int], shard_size: int, pixels: int, image_format: str
) -> LayoutFigures:
    """Count files, folders and bytes of the published layout from the rows of each (config, band)."""
    band_files = {key: math.ceil(rows / shard_size) for key, rows in band_rows.items() if rows}
    data_files = sum(band_files.values())
    configs = {config for config, _ in band_rows}
    per_folder = [min(n, FOLDER_ENTRIES_MAX) for n in band_files.values()] or [0]
    folders = sum(folder_chunks(n) for n in band_files.values())
    bands_per_config = max((sum(1 for c, _ in band_files if c == config) for config in configs), default=0)
    largest = max(max(per_folder), bands_per_config, len(configs) + SIDE_FILES)
    rows_per_file = min(shard_size, max(band_rows.values(), default=0))
    typical = TYPICAL_BYTES_PER_PIXEL[image_format] * pixels
    files = data_files + SIDE_FILES
    return LayoutFigures(
        files=files,
        data_files=data_files,
        largest_folder=largest,
        folders=folders,
        typical_file_bytes=int(rows_per_file * typical),
        max_file_bytes=int(rows_per_file * RAW_BYTES_PER_PIXEL * pixels),
        typical_repo_bytes=int(sum(band_rows.values()) * typical),
        commits=math.ceil(files / FILES_PER_COMMIT),
    )


def limit_problem(figures: LayoutFigures, shard_size: int) -> str | None:
    """The first Hub limit the layout breaks, with the recipe setting that fixes it; None if within all."""
    if figures.largest_folder > FOLDER_ENTRIES_MAX:
        return (
            f"a folder would hold {figures.largest_folder:,} entries, more than {FOLDER_ENTRIES_MAX:,} (a margin "
            f"below the Hub's {FILES_PER_FOLDER:,} per folder); use fewer configs or bands"
        )
    if figures.files > FILES_PER_REPO:
        needed = math.ceil(shard_size * figures.data_files / (FILES_PER_REPO - SIDE_FILES))
        return (
            f"{figures.files:,} files, more than the Hub's {FILES_PER_REPO:,} per repo; raise storage.shard_size "
            f"(now {shard_size}) to at least {needed}"
        )
    if figures.max_file_bytes > FILE_SIZE_HARD:
        return (
            f"a shard of {shard_size} images can reach {human_bytes(figures.max_file_bytes)}, more than the Hub's "
            f"{human_bytes(FILE_SIZE_HARD)} per file; lower storage.shard_size (or set storage.resize)"
        )
    if figures.typical_file_bytes > FILE_SIZE_RECOMMENDED:
        return (
            f"a shard of {shard_size} images would be about {human_bytes(figures.typical_file_bytes)}, more than "
            f"the Hub's recommended {human_bytes(FILE_SIZE_RECOMMENDED)} per file; lower storage.shard_size"
        )
    return None


def layout_summary(figures: LayoutFigures) -> str:
    """One line for the plan's output: what the Hub will hold, and the soft limits it comes near."""
    text = (
        f"hub: {figures.files:,} files in {figures.folders:,} data folders (fullest: {figures.largest_folder:,} of "
        f"{FOLDER_ENTRIES_MAX:,} entries), about {human_bytes(figures.typical_repo_bytes)}, "
        f"{figures.commits:,} commits of {FILES_PER_COMMIT} files per version"
    )
    if figures.typical_repo_bytes > REPO_SIZE_ASK_FIRST:
        text += "; over ~1 TB: the Hub asks to be told first (or a Team/Enterprise plan)"
    if figures.commits > COMMITS_DEGRADE:
        text += f"; over {COMMITS_DEGRADE:,} commits the Hub's pages slow down: raise storage.shard_size"
    return text
