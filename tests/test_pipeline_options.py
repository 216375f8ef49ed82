"""What synthset sets on a loaded pipeline: scheduler swap, safety checker, watermark, speed knobs, negatives."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import diffusers
import numpy as np
import pytest
import torch

from synthset.errors import SynthsetError
from synthset.generation.diffusion import generate_images, load_generator
from synthset.generation.families import load_kwargs
from synthset.generation.pinning import make_lock
from synthset.generation.pipeline_options import SAFETY_CHECKER_OFF, swap_scheduler
from synthset.models import REPLICA_ENV
from synthset.recipe import load_recipe
from synthset.run.paths import RunDir
from synthset.testing.replicas import REPLICAS, read_configs, replica_path

CPU = torch.device("cpu")


def model_scheduler(name: str):
    config = read_configs(REPLICAS[name])["scheduler/scheduler_config.json"]
    return getattr(diffusers, config["_class_name"]).from_config(config)


@pytest.fixture(scope="module")
def small(synthset_home: Path) -> dict[str, Path]:
    return {name: replica_path(name, "small") for name in ("sd15", "sd21", "sdxl-base")}


@pytest.fixture
def loaded(small, write_recipe, monkeypatch: pytest.MonkeyPatch):
    """load_generator on the small replica of a Hub id, the recipe's generator section changed as given."""
    monkeypatch.setenv(REPLICA_ENV, "small")

    def load(name: str, **generator):
        recipe = load_recipe(write_recipe({"generator": {"model": REPLICAS[name].hub_id, **generator}}))
        return load_generator(make_lock(recipe), CPU, RunDir(recipe.run_dir), show_progress=False)

    return load


def test_a_swap_keeps_the_v_prediction_and_leading_spacing_diffusers_would_drop() -> None:
    """SD 2.1's scheduler_config.json has no timestep_spacing: a plain from_config swap gets linspace."""
    ddim = model_scheduler("sd21")
    assert (ddim.config.prediction_type, ddim.config.timestep_spacing) == ("v_prediction", "leading")
    plain = diffusers.DPMSolverMultistepScheduler.from_config(ddim.config)
    assert plain.config.timestep_spacing == "linspace"  # why synthset passes the spacing on explicitly
    swapped = swap_scheduler(ddim, "dpm++", "model")
    assert type(swapped).__name__ == "DPMSolverMultistepScheduler"
    assert (swapped.config.prediction_type, swapped.config.timestep_spacing) == ("v_prediction", "leading")
    swapped.set_timesteps(2)
    assert swapped.timesteps.tolist() == [667, 334]  # leading: 1000 // 3 steps apart, + steps_offset 1


@pytest.mark.parametrize("name", ["sd15", "sd21", "sdxl-base"])
@pytest.mark.parametrize("scheduler", ["ddim", "pndm", "euler", "euler_a", "dpm++", "unipc"])
def test_every_swap_keeps_the_models_prediction_type_and_spacing(name: str, scheduler: str) -> None:
    own = model_scheduler(name)
    swapped = swap_scheduler(own, scheduler, "model")
    kept = ("prediction_type", "timestep_spacing")
    assert [swapped.config[k] for k in kept] == [own.config[k] for k in kept]


def test_the_recipes_spacing_overrides_the_models() -> None:
    own = model_scheduler("sdxl-base")
    assert swap_scheduler(own, "default", "model") is own
    trailing = swap_scheduler(own, "default", "trailing")
    assert type(trailing) is type(own) and trailing.config.timestep_spacing == "trailing"
    assert swap_scheduler(own, "dpm++", "linspace").config.timestep_spacing == "linspace"


def test_a_scheduler_that_cannot_keep_the_prediction_type_is_refused() -> None:
    ddim = diffusers.DDIMScheduler

    class EpsilonOnly(ddim):
        @classmethod
        def from_config(cls, config, **kwargs):
            return ddim.from_config(config, **{**kwargs, "prediction_type": "epsilon"})

    own = model_scheduler("sd21")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(diffusers, "DDIMScheduler", EpsilonOnly)
        with pytest.raises(SynthsetError, match=r"^generator.scheduler: EpsilonOnly does not keep the model's "
                                                r"prediction_type='v_prediction' \(it has 'epsilon'\)"):  # fmt: skip
            swap_scheduler(own, "ddim", "model")


def test_load_kwargs_follow_the_repo_layout() -> None:
    sd15, sd21, sdxl = (read_configs(REPLICAS[n])["model_index.json"] for n in ("sd15", "sd21", "sdxl-base"))
    assert load_kwargs(sd15) == {"safety_checker": None, "requires_safety_checker": False}
    assert load_kwargs(sd21) == {"safety_checker": None, "requires_safety_checker": False}  # listed as null
    assert load_kwargs(sdxl) == {"add_watermarker": False}  # not whatever `invisible-watermark` being installed says


def test_safety_checker_is_not_run_and_the_log_says_so(loaded, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="synthset"):
        generator = loaded("sd15", scheduler="dpm++")
    assert generator.pipe.safety_checker is None
    assert generator.safety_checker == SAFETY_CHECKER_OFF
    assert f"safety checker: {SAFETY_CHECKER_OFF}" in caplog.messages
    assert generator.options.as_row() == {"prediction_type": "epsilon", "timestep_spacing": "leading",
                                          "channels_last": False, "compile": False, "vae_slicing": False,
                                          "vae_tiling": False}  # fmt: skip
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="synthset"):
        assert loaded("sd21").safety_checker == "none"
    assert not [m for m in caplog.messages if m.startswith("safety checker")]


def test_knobs_are_applied_and_recorded(loaded) -> None:
    generator = loaded("sd21", channels_last=True, vae_slicing=True, vae_tiling=True, compile=True)
    pipe = generator.pipe
    conv = pipe.vae.decoder.conv_in.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert pipe.vae.use_slicing and pipe.vae.use_tiling
    assert isinstance(pipe.unet, torch._dynamo.eval_frame.OptimizedModule)  # compiled lazily, on first call
    assert generator.options.as_row() == {"prediction_type": "v_prediction", "timestep_spacing": "leading",
                                          "channels_last": True, "compile": True, "vae_slicing": True,
                                          "vae_tiling": True}  # fmt: skip


def _rows(negative: str) -> list[dict]:
    return [{"prompt": p, "negative_prompt": negative, "seed": s} for p, s in (("a cat", 1), ("a dog", 2))]


def test_sdxl_without_a_negative_prompt_uses_zeros_as_its_authors_do(loaded) -> None:
    generator = loaded("sdxl-base", steps=1, width=64, height=64, batch_size=2)
    assert generator.pipe.watermark is None and generator.pipe.text_encoder_2 is not None
    seen = []

    def record(module, args, kwargs) -> None:
        seen.append((kwargs["encoder_hidden_states"][:2].abs().sum().item(),
                     kwargs["added_cond_kwargs"]["text_embeds"][:2].abs().sum().item()))  # fmt: skip

    generator.pipe.unet.register_forward_pre_hook(record, with_kwargs=True)
    generate_images(generator, _rows(""))
    generate_images(generator, _rows("blurry"))
    assert seen[0] == (0.0, 0.0)  # force_zeros_for_empty_prompt (model_index.json) applies
    assert seen[1][0] > 0 and seen[1][1] > 0


def test_sd_images_are_the_same_bytes_with_no_negative_as_with_empty_ones(small) -> None:
    """Passing None instead of [""] * n changes nothing for SD 1.x/2.x: both encode the empty prompt."""
    pipe = diffusers.DiffusionPipeline.from_pretrained(str(small["sd15"]), dtype=torch.float32, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)

    def images(negative):
        return pipe(prompt=["a cat", "a dog"], negative_prompt=negative, num_inference_steps=2, width=64, height=64,
                    generator=[torch.Generator().manual_seed(s) for s in (1, 2)], output_type="np").images  # fmt: skip

    np.testing.assert_array_equal(images(None), images(["", ""]))


def test_recipe_knob_defaults_leave_the_lock_of_an_old_recipe_valid(write_recipe) -> None:
    """New generator keys have defaults, so a recipe written before them still validates as it was."""
    recipe = load_recipe(write_recipe())
    generator = json.loads(recipe.generator.model_dump_json())
    assert {k: generator[k] for k in ("timestep_spacing", "channels_last", "compile", "vae_slicing", "vae_tiling")} == {
        "timestep_spacing": "model", "channels_last": False, "compile": False, "vae_slicing": False,
        "vae_tiling": False,
    }  # fmt: skip
