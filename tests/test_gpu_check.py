"""`python -m benchmarks.gpu --selftest`: the GPU check's code runs on CPU and writes rows a reader can use."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import gpu

KNOBS = {"attention", "compile", "channels_last", "vae_slicing", "vae_tiling", "vae"}


def test_selftest_writes_one_json_with_every_knob_in_every_row(tmp_path: Path, synthset_home: Path) -> None:
    out = tmp_path / "gpu-check.json"
    gpu.main(["--selftest", "--only", "sd21-unclip", "--batches", "1", "--variant-batch", "1", "--steps", "25",
              "--no-compile", "--out", str(out)])  # fmt: skip
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert result["dtype"] == "float16" and set(result["matmul_flops_per_s"]) == {"float16", "bfloat16"}
    assert [(r["batch"], r["attention"], r["channels_last"], r["vae_slicing"], r["vae_tiling"]) for r in rows] == [
        (1, "sdpa", False, False, False), (1, "sdpa", True, False, False), (1, "xformers", False, False, False),
        (1, "sdpa", False, True, False), (1, "sdpa", False, False, True),
    ]  # fmt: skip
    assert all(set(row) >= KNOBS for row in rows)
    assert rows[2]["skipped"] == "xformers needs CUDA and the xformers package" and result["skipped_rows"] == 1
    for row in (r for r in rows if "skipped" not in r):
        assert row["images_per_s"] > 0 and row["unet_call_s"] > 0 and row["vae_decode_s"] > 0
        assert row["peak_source"] == "cpu process peak RSS" and row["peak_bytes"] > 0
        assert row["formula_bytes"] is None  # the formula's figures are the full models'
        assert row["flops_per_image"] > row["flops_breakdown"]["vae_and_after"] > 0
        assert row["fraction_of_matmul_peak"] > 0
        expected = row["batch"] / (row["other_s"] + 25 * row["unet_call_s"] + row["vae_decode_s"])
        assert abs(row["images_per_s"] - expected) < 1e-9
