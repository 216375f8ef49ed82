"""Small readers and launchers the generation tests share."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from synthset.fsutil import sha256_file
from synthset.run.paths import RunDir
from synthset.run.records import read_records

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def images_by_sample(run_dir: Path) -> dict[str, bytes]:
    """sample_id -> stored image bytes over every recorded shard; fails on a sample seen twice."""
    images: dict[str, bytes] = {}
    for name in sorted(read_records(RunDir(run_dir))):
        table = pq.read_table(RunDir(run_dir).shard_file(name), columns=["sample_id", "image"])
        for sample_id, image in zip(
            table.column("sample_id").to_pylist(), table.column("image").to_pylist(), strict=True
        ):
            assert sample_id not in images, f"{sample_id} written twice"
            images[sample_id] = image["bytes"]
    return images


def shard_hashes(run_dir: Path) -> dict[str, str]:
    return {name: sha256_file(RunDir(run_dir).shard_file(name)) for name in read_records(RunDir(run_dir))}


def pixels(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def synthset_command() -> list[str]:
    return [sys.executable, "-m", "synthset"]


def synthset_cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """`python -m synthset ...` in a fresh process, as a user runs it."""
    return subprocess.run(
        [*synthset_command(), *args], capture_output=True, text=True, cwd=REPO, env=os.environ.copy(), **kwargs
    )


def generate_killed_after(run_dir: Path, shards: int, timeout_s: float) -> int:
    """Start `synthset generate RUN`, SIGKILL it once `shards` shards are recorded; returns how many were."""
    process = subprocess.Popen(
        [*synthset_command(), "generate", str(run_dir)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + timeout_s
    while len(read_records(RunDir(run_dir))) < shards and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return len(read_records(RunDir(run_dir)))


def accelerate_launch_command(num_processes: int, *args: str) -> list[str]:
    """The multi-process launch that really starts N processes on a CPU-only machine (see design.md)."""
    return [
        str(VENV_BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", str(num_processes),
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "-m", "synthset", *args,
    ]  # fmt: skip
