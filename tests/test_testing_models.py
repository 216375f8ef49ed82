"""The tiny offline models in synthset.testing: they build, load like a hub id, generate, and are cached."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline, StableDiffusionPipeline

from synthset import testing
from synthset.errors import SynthsetError
from synthset.testing import build_all, build_atomically, synthset_home, tiny_model_path, tiny_sd_path
from synthset.testing import tiny as tiny_models

REPO_ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a photo of a tench"


def _file_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _generate(pipe: StableDiffusionPipeline, seeds: list[int]) -> np.ndarray:
    return pipe(
        prompt=[PROMPT] * len(seeds),
        num_inference_steps=4,
        guidance_scale=7.5,
        height=64,
        width=64,
        generator=[torch.Generator().manual_seed(s) for s in seeds],
        output_type="np",
    ).images


@pytest.fixture(scope="module")
def sd_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny-sd build shared by the module (building takes a couple of seconds)."""
    home = tmp_path_factory.mktemp("synthset-home")
    start = time.perf_counter()
    tiny_sd_path(home)
    print(f"\ntiny-sd build: {time.perf_counter() - start:.2f}s")
    return home


@pytest.fixture(scope="module")
def sd_pipe(sd_home: Path) -> StableDiffusionPipeline:
    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_sd_path(sd_home)))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_layout_is_a_saved_pipeline_with_safetensors_only(sd_home: Path) -> None:
    path = tiny_sd_path(sd_home)
    assert path == sd_home / "models" / "tiny-sd"
    assert (path / "model_index.json").is_file()
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (path / sub).is_dir(), sub
    for sub in ("unet", "vae", "text_encoder"):
        assert list((path / sub).glob("*.safetensors")), sub
    pickled = [p for p in path.rglob("*") if p.suffix in {".bin", ".pt", ".pth", ".ckpt", ".pkl"}]
    assert pickled == []
    # No temp dir is left beside the model.
    assert [p.name for p in (sd_home / "models").iterdir()] == ["tiny-sd"]


def test_generates_64px_images_that_depend_on_the_seed(sd_pipe: StableDiffusionPipeline) -> None:
    start = time.perf_counter()
    images = _generate(sd_pipe, [0, 1, 2, 3])
    print(f"\ntiny-sd 4 images, 4 steps, 64 px: {time.perf_counter() - start:.2f}s")

    assert images.shape == (4, 64, 64, 3)
    assert np.isfinite(images).all()
    assert images.min() >= 0.0 and images.max() <= 1.0
    for i in range(4):
        for j in range(i + 1, 4):
            assert not np.allclose(images[i], images[j]), (i, j)

    again = _generate(sd_pipe, [0, 1, 2, 3])
    np.testing.assert_array_equal(images, again)


def test_tokenizer_covers_plain_english(sd_pipe: StableDiffusionPipeline) -> None:
    tok = sd_pipe.tokenizer
    assert tok.model_max_length == 77
    ids = tok("A photo of a tench, 3 fish!").input_ids
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert tok.unk_token_id not in ids[1:-1]
    assert tok.decode(ids, skip_special_tokens=True) == "a photo of a tench , 3 fish !"


def test_loads_through_diffusion_pipeline(sd_home: Path) -> None:
    pipe = DiffusionPipeline.from_pretrained(str(tiny_sd_path(sd_home)))
    assert isinstance(pipe, StableDiffusionPipeline)
    assert pipe.safety_checker is None


def test_second_call_reuses_the_build(sd_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index = sd_home / "models" / "tiny-sd" / "model_index.json"
    mtime = index.stat().st_mtime_ns

    def no_rebuild(out: Path) -> None:
        raise AssertionError("tiny-sd was rebuilt")

    monkeypatch.setattr(tiny_models, "_build_tiny_sd", no_rebuild)
    assert tiny_sd_path(sd_home) == index.parent
    built = build_all(sd_home)
    assert set(built) == set(testing.TINY_MODELS) and built["tiny-sd"] == index.parent
    assert tiny_model_path("tiny-sd", sd_home) == index.parent
    assert index.stat().st_mtime_ns == mtime


def test_rebuild_is_byte_identical(sd_home: Path, tmp_path: Path) -> None:
    first = _file_hashes(tiny_sd_path(sd_home))
    second = _file_hashes(tiny_sd_path(tmp_path))
    assert any(name.endswith(".safetensors") for name in first)
    assert second == first


def test_unknown_tiny_model_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(
        SynthsetError,
        match=r"synthset-testing:nope' \(known: tiny-clip, tiny-lm, tiny-safety-checker, tiny-sd, tiny-unclip, "
        r"replica-",
    ) as error:
        tiny_model_path("nope", tmp_path)
    assert "replica-sdxl-base-small" in str(error.value) and "\n" not in str(error.value)


def test_home_comes_from_env(sd_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTHSET_HOME", str(sd_home))
    assert synthset_home() == sd_home
    assert tiny_sd_path() == sd_home / "models" / "tiny-sd"
    monkeypatch.delenv("SYNTHSET_HOME")
    assert synthset_home() == Path.home() / ".cache" / "synthset"


def test_build_atomically_keeps_the_winner_of_a_race(tmp_path: Path) -> None:
    target = tmp_path / "models" / "thing"

    def build_while_another_process_wins(out: Path) -> None:
        (out / "ours.txt").write_text("ours")
        target.mkdir()
        (target / "theirs.txt").write_text("theirs")

    assert build_atomically(target, build_while_another_process_wins) == target
    assert [p.name for p in target.iterdir()] == ["theirs.txt"]
    assert [p.name for p in target.parent.iterdir()] == ["thing"]


def test_build_atomically_leaves_nothing_after_a_failed_build(tmp_path: Path) -> None:
    target = tmp_path / "models" / "thing"

    def half_build(out: Path) -> None:
        (out / "half.txt").write_text("half")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        build_atomically(target, half_build)
    assert list(target.parent.iterdir()) == []


def test_two_processes_building_at_once(sd_home: Path, tmp_path: Path) -> None:
    code = "import sys; from synthset.testing import tiny_sd_path; print(tiny_sd_path(sys.argv[1]))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert out.strip() == str(tmp_path / "models" / "tiny-sd")
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["tiny-sd"]
    assert _file_hashes(tmp_path / "models" / "tiny-sd") == _file_hashes(tiny_sd_path(sd_home))
