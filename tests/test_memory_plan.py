"""Memory planning: the formula, the figures it uses, and `synthset plan --gpu-memory`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import DiffusionPipeline

from synthset.cli import main
from synthset.errors import SynthsetError
from synthset.generation.memory import (
    CONTEXT_BYTES,
    GIB,
    KNOWN_MODELS,
    ModelMemory,
    estimate,
    largest_batch,
    local_parameters,
    model_memory,
    parse_memory,
)
from synthset.models import REPLICA_ENV
from synthset.recipe import GeneratorSpec
from synthset.testing.replicas import REPLICAS, parameter_counts, replica_path

MODEL = ModelMemory(parameters=10**9, vae_parameters=10**8, native_size=512, unet_per_image=1 * GIB,
                    vae_per_image=2 * GIB, vae_upcast=True)  # fmt: skip


def spec(**changes) -> GeneratorSpec:
    return GeneratorSpec(**{"model": "m/x", "batch_size": 4, "width": 512, "height": 512, **changes})


SIZES = [("80GB", 80 * 10**9), ("24GiB", 24 * GIB), ("16000MB", 16 * 10**9), ("80", 80 * 10**9),
         (" 1.5 TiB ", int(1.5 * 2**40)), ("40gb", 40 * 10**9)]  # fmt: skip


@pytest.mark.parametrize("text,expected", SIZES)
def test_parse_memory(text: str, expected: int) -> None:
    assert parse_memory(text) == expected


def test_parse_memory_rejects_what_is_not_a_size() -> None:
    with pytest.raises(SynthsetError, match=r"^--gpu-memory: 'lots' is not a size such as 80GB, 24GiB or 16000MB$"):
        parse_memory("lots")


def test_formula_by_hand() -> None:
    # float32: weights 4e9; UNet 1 GiB x 4 images x 2 (4-byte activations) = 8 GiB; VAE 2 GiB x 4 x 2 = 16 GiB.
    found = estimate(MODEL, spec(), "float32")
    assert (found.weights, found.activations, found.phase) == (4 * 10**9, 16 * GIB, "VAE decode")
    assert found.total == 4 * 10**9 + 16 * GIB + CONTEXT_BYTES
    # float16 with force_upcast: the VAE decodes in float32 (16 GiB) and holds a float32 copy (4e8 bytes).
    half = estimate(MODEL, spec(), "float16")
    assert (half.weights, half.activations) == (2 * 10**9, 16 * GIB + 4 * 10**8)
    assert estimate(MODEL, spec(), "bfloat16").activations == 8 * GIB  # no upcast: 2-byte VAE activations
    # vae_slicing decodes one image at a time: 2 x 2 GiB + 4e8 in float16 (upcast), 2 GiB in bfloat16,
    # where the UNet phase (1 GiB x 4 images) now peaks.
    assert estimate(MODEL, spec(vae_slicing=True), "float16").activations == 4 * GIB + 4 * 10**8
    sliced = estimate(MODEL, spec(vae_slicing=True), "bfloat16")
    assert (sliced.activations, sliced.phase) == (4 * GIB, "UNet")
    # activations grow with pixels: 1024 px is 4x the native 512 px.
    assert estimate(MODEL, spec(width=1024, height=1024), "bfloat16").activations == 32 * GIB
    # the fixed part of a phase scales with pixels and bytes too, but not with the batch.
    fixed = ModelMemory(10**9, 10**8, 512, 1 * GIB, 0.5 * GIB, False, unet_fixed=2 * GIB, vae_fixed=0)
    assert estimate(fixed, spec(), "float32").activations == (2 + 4) * GIB * 2
    assert estimate(fixed, spec(batch_size=1), "bfloat16").activations == 3 * GIB


def test_largest_batch_is_the_last_power_of_two_that_fits() -> None:
    budget = estimate(MODEL, spec(batch_size=8), "bfloat16").total
    assert largest_batch(MODEL, spec(), "bfloat16", budget) == 8
    assert largest_batch(MODEL, spec(), "bfloat16", budget - 1) == 4
    assert largest_batch(MODEL, spec(), "bfloat16", 10**9) == 0


@pytest.mark.parametrize("hub_id", sorted(KNOWN_MODELS))
def test_known_models_parameters_are_the_replicas(hub_id: str) -> None:
    """The figures agree with the published configs: every component but the safety checker."""
    replica = next(r for r in REPLICAS.values() if r.hub_id == hub_id or (hub_id.startswith("runwayml") and
                                                                             r.name == "sd15"))  # fmt: skip
    counts = parameter_counts(replica.name)
    figures = KNOWN_MODELS[hub_id]
    assert figures.parameters == sum(n for c, n in counts.items() if c != "safety_checker")
    assert figures.vae_parameters == counts["vae"] and figures.native_size == replica.native_size
    assert figures.vae_upcast == (replica.name == "sdxl-base")


def test_local_parameters_count_what_synthset_loads(synthset_home: Path) -> None:
    path = replica_path("sd15", "small")
    pipe = DiffusionPipeline.from_pretrained(str(path), dtype=torch.float32, safety_checker=None)
    modules = [m for m in pipe.components.values() if isinstance(m, torch.nn.Module)]
    assert local_parameters(path) == (sum(p.numel() for m in modules for p in m.parameters()),
                                      sum(p.numel() for p in pipe.vae.parameters()))  # fmt: skip


def test_an_unknown_local_sdxl_upcasts_its_vae_and_sd_does_not(synthset_home: Path) -> None:
    """force_upcast defaults to true in every VAE config, but only the SDXL pipelines act on it."""
    for name, upcast in (("sdxl-base", True), ("sd15", False)):
        path = str(replica_path(name, "small"))
        figures, source = model_memory(path, path)
        assert figures is not None and figures.vae_upcast is upcast, name
        assert figures.native_size == REPLICAS[name].native_size and "counted from its files" in source
    assert model_memory("org/unknown", None) == (None, "no memory figures for 'org/unknown' (not a known model, "
                                                       "and no local copy to count)")  # fmt: skip


def _plan(write_recipe, capsys, *options: str, **generator):
    path = write_recipe({"generator": generator})
    code = main(["plan", str(path), *options])
    return code, capsys.readouterr()


def test_plan_warns_when_the_batch_would_not_fit(write_recipe, capsys, monkeypatch, synthset_home: Path) -> None:
    replica_path("sdxl-base", "small")
    monkeypatch.setenv(REPLICA_ENV, "small")
    sdxl = {"model": "stabilityai/stable-diffusion-xl-base-1.0", "width": 1024, "height": 1024}
    code, out = _plan(write_recipe, capsys, "--gpu-memory", "80GB", **sdxl, batch_size=64)
    assert code == 0
    figures = KNOWN_MODELS[sdxl["model"]]
    best = largest_batch(figures, spec(**sdxl, batch_size=64), "float16", 80 * 10**9)
    assert 1 <= best < 64
    assert (f"synthset: warning: generator.batch_size 64 would not fit --gpu-memory 80GB (74.5 GiB): "
            f"batch_size: {best} fits; with vae_slicing: true this batch needs ~") in out.err  # fmt: skip
    total = estimate(figures, spec(**sdxl, batch_size=64), "float16").total
    assert f"memory: ~{total / GIB:.1f} GiB per GPU at batch size 64, 1024x1024, float16: weights 6.5 " in out.out
    code, out = _plan(write_recipe, capsys, "--gpu-memory", "80GB", **sdxl, batch_size=1)
    assert code == 0 and "fits --gpu-memory 80GB" in out.out and "warning" not in out.err


def test_plan_counts_an_unknown_local_model(write_recipe, capsys) -> None:
    code, out = _plan(write_recipe, capsys, "--gpu-memory", "24GiB")
    assert code == 0
    assert "StableDiffusionPipeline counted from its files; activations: the largest known per pixel" in out.out


def test_plan_without_the_option_prints_no_estimate(write_recipe, capsys) -> None:
    code, out = _plan(write_recipe, capsys)
    assert code == 0 and "memory:" not in out.out


def test_a_bad_size_fails_before_planning(write_recipe, capsys, tmp_path: Path) -> None:
    code, out = _plan(write_recipe, capsys, "--gpu-memory", "eighty")
    assert (
        code == 2
        and out.err == "synthset: error: --gpu-memory: 'eighty' is not a size such as 80GB, 24GiB or 16000MB\n"
    )
    assert not (tmp_path / "runs").exists()
