"""`make smoke-full`'s memory bounds: a replica over its peak-RSS bound fails the smoke with one clear line.

The smoke itself needs the full-size replicas (minutes, gigabytes); these tests feed the bound check fake
measurements, and run a real child that grows past a small bound, so the logic is tested in the suite.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from benchmarks import smoke_full
from benchmarks.smoke_full import GIB, MemoryBoundExceeded, Outcome, check_peak_rss, run_bounded


def test_a_peak_over_the_bound_fails_and_names_the_stage() -> None:
    outcome = Outcome("sdxl-base")
    peaks = {"sdxl-base-plan": 0.6 * GIB, "sdxl-base-generate": 18.5 * GIB, "sdxl-base-build": 0.9 * GIB}
    check_peak_rss(outcome, peaks, 18.0)
    assert not outcome.passed
    assert outcome.checks == [
        ("peak RSS within its bound", False, "sdxl-base-generate: peak RSS 18.50 GiB, over the bound of 18 GiB")
    ]
    assert outcome.figures["peak_rss_gib"] == 18.5 and outcome.figures["peak_rss_stage"] == "sdxl-base-generate"


def test_a_peak_at_the_bound_passes() -> None:
    outcome = Outcome("sd15")
    check_peak_rss(outcome, {"sd15-generate": 7.5 * GIB, "sd15-plan": 0.5 * GIB}, 7.5)
    assert outcome.passed
    assert outcome.checks[0][2] == "sd15-generate: peak RSS 7.50 GiB, within the bound of 7.5 GiB"


def test_main_exits_1_when_one_replica_is_over_its_bound(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The other replica passes; the one measured over its bound makes the whole smoke fail."""
    measured = {"sd15": 7.0, "sdxl-base": 19.01}

    def fake_smoke(case: smoke_full.Case, work: Path, home: Path, threads: int) -> Outcome:
        outcome = Outcome(case.replica)
        check_peak_rss(outcome, {f"{case.replica}-generate": measured[case.replica] * GIB}, case.rss_bound_gib)
        return outcome

    monkeypatch.setattr(smoke_full, "smoke_one", fake_smoke)
    monkeypatch.setattr(smoke_full, "REPO", tmp_path)  # the results JSON goes here
    assert smoke_full.main(["--only", "sd15,sdxl-base"]) == 1
    out = capsys.readouterr().out
    assert "[ok] peak RSS within its bound: sd15-generate: peak RSS 7.00 GiB, within the bound of 7.5 GiB" in out
    assert "[FAIL] peak RSS within its bound: sdxl-base-generate: peak RSS 19.01 GiB, over the bound of 19 GiB" in out


def test_a_child_growing_past_its_bound_is_stopped_with_one_line(tmp_path: Path) -> None:
    """Stopped as soon as it passes the bound, not when the child would have ended (or the OOM killer came)."""
    hog = "import time; block = b'x' * (400 * 2**20); time.sleep(60)"  # 400 MiB written, so resident
    started = time.perf_counter()
    with pytest.raises(MemoryBoundExceeded, match=r"^hog: peak RSS 0\.\d\d GiB, over the bound of 0\.25 GiB; stopped$"):
        run_bounded([sys.executable, "-c", hog], tmp_path, "hog", bound_gib=0.25)
    assert time.perf_counter() - started < 30


def test_a_child_within_its_bound_runs_to_the_end(tmp_path: Path) -> None:
    result = run_bounded([sys.executable, "-c", "block = b'x' * (50 * 2**20); print('done')"], tmp_path, "ok", 0.5)
    assert result.returncode == 0 and result.stdout == "done\n"
    assert result.max_rss_mib >= 50  # wait4's figure: it may also count the forking parent's pages (pytest's)
