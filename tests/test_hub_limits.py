"""The Hub's limits at plan time, and the published layout that keeps every folder inside them."""

from __future__ import annotations

from collections import Counter

import pytest

from synthset.errors import SynthsetError
from synthset.generation.plan import plan_run
from synthset.recipe import load_recipe
from synthset.run.hub_limits import FILES_PER_FOLDER, FOLDER_ENTRIES_MAX, folder_chunks, layout_figures, limit_problem
from synthset.run.published import pattern_matches, published_path, shard_of

SIX_X = [
    {"name": s, "strategy": s, "images_per_class": 1300, "bands": 6} for s in ("naive", "lar", "lar_cd", "lar_cd_sd")
]


def six_x_rows() -> dict[tuple[str, int], int]:
    return {(c["name"], band): 1300 * 1000 for c in SIX_X for band in range(6)}


def test_the_6x_imagenet_recipe_fits_at_1000_per_shard_and_is_refused_at_100():
    fits = layout_figures(six_x_rows(), 1000, 512 * 512, "jpeg")
    assert (fits.data_files, fits.largest_folder, fits.folders) == (31_200, 1_300, 24)
    assert limit_problem(fits, 1000) is None
    small = layout_figures(six_x_rows(), 100, 512 * 512, "jpeg")
    assert small.largest_folder == FOLDER_ENTRIES_MAX and small.folders == 48  # bands of 13k files: two folders each
    assert limit_problem(small, 100) == (
        "312,006 files, more than the Hub's 100,000 per repo; raise storage.shard_size (now 100) to at least 313"
    )
    huge = layout_figures(six_x_rows(), 100_000, 4096 * 4096, "png")
    assert limit_problem(huge, 100_000).endswith("per file; lower storage.shard_size (or set storage.resize)")


def test_plan_refuses_a_recipe_the_hub_would_refuse_before_writing_anything(write_recipe, tmp_path):
    path = write_recipe(
        {"classes": {"set": "imagenet-1k", "limit": None}, "configs": SIX_X, "storage": {"shard_size": 100}}
    )
    recipe = load_recipe(path)
    with pytest.raises(SynthsetError) as error:
        plan_run(recipe)
    assert str(error.value) == (
        "t: the Hub would refuse this dataset: 312,006 files, more than the Hub's 100,000 per repo; "
        "raise storage.shard_size (now 100) to at least 313"
    )
    assert not (tmp_path / "runs" / "t").exists()  # refused before anything was written


def test_plan_says_what_the_hub_will_hold(write_recipe):
    summary = plan_run(load_recipe(write_recipe()))
    assert summary.hub_layout.startswith("hub: 9 files in 1 data folders (fullest: 7 of 9,000 entries), about ")


def test_a_band_over_the_folder_limit_is_spread_over_subfolders():
    total = 2 * FOLDER_ENTRIES_MAX + 1
    paths = [published_path("naive", "train", 2, i, total) for i in range(total)]
    folders = sorted({p.rsplit("/", 1)[0] for p in paths})
    assert folders == ["naive/b2/p00", "naive/b2/p01", "naive/b2/p02"]
    assert paths[FOLDER_ENTRIES_MAX] == "naive/b2/p01/train-09000-of-18001.parquet"
    assert paths == sorted(paths)  # file order is band order, folder after folder
    assert [shard_of(p) for p in paths[:2]] == ["naive/train-b2-00000", "naive/train-b2-00001"]
    assert published_path("naive", "train", 0, 3, 12) == "naive/b0/train-00003-of-00012.parquet"
    assert pattern_matches("naive/b2/p01/train-*.parquet", paths[FOLDER_ENTRIES_MAX])
    assert not pattern_matches("naive/b2/train-*.parquet", paths[0])  # `*` stays within a folder
    assert pattern_matches("naive/**/train-*.parquet", paths[0])


def test_no_folder_is_filled_to_the_hubs_10k_entries():
    """The Hub's table says entries per folder "< 10k": a band of exactly 10,000 files is already over."""
    paths = [published_path("naive", "train", 0, i, FILES_PER_FOLDER) for i in range(FILES_PER_FOLDER)]
    per_folder = Counter(p.rsplit("/", 1)[0] for p in paths)
    assert per_folder == {"naive/b0/p00": FOLDER_ENTRIES_MAX, "naive/b0/p01": FILES_PER_FOLDER - FOLDER_ENTRIES_MAX}
    assert FOLDER_ENTRIES_MAX < FILES_PER_FOLDER and folder_chunks(FOLDER_ENTRIES_MAX) == 1
    assert folder_chunks(FOLDER_ENTRIES_MAX + 1) == 2
    wide = layout_figures({(f"c{i}", 0): 10 for i in range(FOLDER_ENTRIES_MAX + 1)}, 10, 64 * 64, "jpeg")
    assert limit_problem(wide, 10) == (
        "a folder would hold 9,007 entries, more than 9,000 (a margin below the Hub's 10,000 per folder); "
        "use fewer configs or bands"
    )
