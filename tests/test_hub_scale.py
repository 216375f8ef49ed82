"""A version at the real file count (12k Parquet files, as 6x ImageNet per strategy) through the server that
enforces the Hub's limits: published in many commits, interrupted, resumed, verified; `main` and the earlier
tag load as the previous version at every interruption point.

The run is synthesized (tests/synthruns.py: planned, written by the real ShardWriter, built and carded as
usual) so that it takes minutes, not the hours 12k shards of even the tiny diffusion model would.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from hubserver import HubServer
from synthruns import synthesize_run
from test_hub import LOAD_SCRIPT, REPO_ROOT, cli, hub_env, ok, published_files

from synthset.run.hub_limits import FILES_PER_COMMIT, FOLDER_ENTRIES_MAX

SHARDS = 12_000  # one scale band over the Hub's 10k files per folder: spread over p00 (9,000) and p01 (3,000)


def load_main(hub: HubServer, home: Path) -> list[list]:
    script = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, "org/big", "main/custom_16shot"],
        capture_output=True,
        text=True,
        env=hub_env(hub, home, token=None),
        timeout=300,
    )
    assert script.returncode == 0, script.stderr
    return json.loads(script.stdout)["main/custom_16shot"]


def interrupted_push(hub: HubServer, home: Path, run: Path, after_commits: int) -> None:
    """Start `synthset push` and kill it while its commit (or merge) number `after_commits + 1` is on the wire."""
    hub.state.hold_commits_after(after_commits)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "synthset",
            "push",
            str(run),
            "--repo",
            "org/big",
            "--tag",
            "v2.0",
            "--allow-unscreened",
        ],
        cwd=REPO_ROOT,
        env=hub_env(hub, home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert hub.state.commit_parked.wait(timeout=600), "the push never reached that commit"
    finally:
        process.kill()
        process.wait(timeout=60)
    hub.state.release_held()


def test_a_12k_file_version_publishes_in_many_commits_resumes_and_verifies(tmp_path: Path):
    small = synthesize_run(tmp_path, "small", 24)
    big = synthesize_run(tmp_path, "big", SHARDS)
    band = big / "dataset" / "custom_16shot" / "b0"
    assert [len(list(p.iterdir())) for p in sorted(band.iterdir())] == [FOLDER_ENTRIES_MAX, SHARDS - FOLDER_ENTRIES_MAX]
    readme = (big / "dataset" / "README.md").read_bytes()
    assert len(readme) < 16_000, len(readme)  # two globs, whatever the number of files
    assert b"custom_16shot/b0/p00/train-*.parquet" in readme and b"custom_16shot/b0/p01/train-*.parquet" in readme

    with HubServer() as hub:  # the Hub's own limits and page sizes
        ok(cli(hub, tmp_path, "push", str(small), "--repo", "org/big", "--tag", "v1.0", "--allow-unscreened"))
        repo = hub.state.repos[("dataset", "org/big")]
        v1 = repo.tags["v1.0"]
        v1_rows = load_main(hub, tmp_path / "reader")
        assert len(v1_rows) == 24
        start = hub.state.commits_applied
        ops = SHARDS + 5  # the data files, README, lock, samples.jpg, manifest; and the folder v1 had
        commits = -(-ops // FILES_PER_COMMIT)
        # killed after the first commit, in the middle, and while the merge is on the wire
        for done in (1, commits // 2, commits):
            interrupted_push(hub, tmp_path, big, start + done)
            assert repo.branches["main"] == v1 and set(repo.tags) == {"v1.0"}
            assert load_main(hub, tmp_path / "reader") == v1_rows  # readers still get v1, whole
            ok(cli(hub, tmp_path, "verify", "org/big", "--revision", "v1.0"))
            assert [(n, p.status) for n, p in repo.pulls.items()] == [(1, "merged"), (2, "open")]  # never opened twice

        out = ok(cli(hub, tmp_path, "push", str(big), "--repo", "org/big", "--tag", "v2.0", "--allow-unscreened"))
        assert "on pull request #2, merged as" in out and "0 commits" in out  # everything had been committed
        assert hub.state.commits_applied == start + commits + 1  # every commit once, then the merge
        expected = {hashlib.sha256(d).hexdigest(): len(d) for p, d in published_files(big, "org/big").items()
                    if p.endswith((".parquet", ".jpg"))}  # fmt: skip
        uploads = Counter(oid for oid, _ in hub.state.uploads)
        assert all(uploads[oid] == 1 for oid in expected)  # no object stored twice
        assert hub.state.put_bytes == sum(size for _, size in hub.state.uploads)  # no byte sent twice
        assert repo.branches["main"] == repo.tags["v2.0"]
        assert set(hub.files("org/big", "v2.0")) == {".gitattributes", *published_files(big, "org/big")}

        out = ok(cli(hub, tmp_path, "verify", "org/big", "--revision", "v2.0", "--run", str(big), "--sample", "3"))
        assert f"{SHARDS} Parquet footers read; custom_16shot: train {SHARDS} rows" in out
        assert "sampled 3 files: downloaded, sha256 checked, 3 images decoded" in out
        versions = ok(cli(hub, tmp_path, "versions", "org/big")).splitlines()
        assert [line.split()[0] for line in versions] == ["v1.0", "v2.0"]
        assert versions[1].endswith(f"custom_16shot {SHARDS} rows  [head of main]")
