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


def test_a_spent_budget_skips_every_row_in_plan_order_and_each_row_is_saved_as_it_comes(
    tmp_path: Path, synthset_home: Path, monkeypatch
) -> None:
    writes: list[dict] = []
    monkeypatch.setattr(gpu, "write_json", lambda out, result: writes.append(json.loads(json.dumps(result))))
    gpu.main(["--selftest", "--only", "sd21-unclip,sd15", "--batches", "1,2", "--variant-batch", "1",
              "--compile", "sd21-unclip", "--budget-seconds", "0", "--out", str(tmp_path / "out.json")])  # fmt: skip
    final = writes[-1]
    rows = [(r["replica"], r["batch"], r["compile"], r["skipped"]) for r in final["rows"]]
    model = [(1, False), (2, False), (1, False), (1, False), (2, False), (2, False)]  # batches, then knob variants
    spent = "time budget spent"
    expected = [("sd21-unclip", b, c, spent) for b, c in model] + [("sd15", b, c, spent) for b, c in model]
    assert rows == [*expected, ("sd21-unclip", 1, True, spent)]  # compile rows after every replica's others
    assert final["finished"] is True and final["skipped_rows"] == 13 and final["budget_s"] == 0
    assert [len(w["rows"]) for w in writes[:-1]] == list(range(1, 14))
    assert not any(w["finished"] for w in writes[:-1])


def test_compile_starts_only_with_its_reserve_of_the_budget_left() -> None:
    from benchmarks.gpu_replicas import COMPILE_RESERVE_S, Budget, _skip_group

    assert _skip_group("compile", Budget(COMPILE_RESERVE_S + 60)) is None
    assert _skip_group("model", Budget(30)) is None
    assert _skip_group("compile", Budget(30)) == f"time budget: 30 s left, compiling needs ~{COMPILE_RESERVE_S:.0f} s"
    assert _skip_group("model", Budget(-1)) == "time budget spent"
