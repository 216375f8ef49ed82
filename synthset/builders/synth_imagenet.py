"""synth_imagenet: synthetic ImageNet-1k per prompt strategy, at nested scales 1x..6x (paper A).

A generation config named after its strategy with `bands: k` publishes `<strategy>` and
`<strategy>_1x` .. `<strategy>_<k>x`; 1x is `images_per_class` per class (1,300 to match ImageNet-1k).
"""

from __future__ import annotations

import datasets

from synthset.builders.run_builder import STRATEGIES, RunBuilder
from synthset.errors import SynthsetError

MAX_SCALE = 6


class SynthImagenet(RunBuilder):
    DESCRIPTION = "Synthetic ImageNet-1k from an off-the-shelf diffusion model, one config per strategy and scale."
    BUILDER_CONFIGS = [datasets.BuilderConfig(name=s) for s in STRATEGIES] + [
        datasets.BuilderConfig(name=f"{s}_{k}x") for s in STRATEGIES for k in range(1, MAX_SCALE + 1)
    ]

    @classmethod
    def check_recipe(cls, recipe) -> None:
        if recipe.classes.set != "imagenet-1k":
            raise SynthsetError("classes.set: synth_imagenet needs imagenet-1k")
        for i, config in enumerate(recipe.configs):
            if config.fill_up is not None:
                raise SynthsetError(f"configs[{i}].fill_up: synth_imagenet has no fill-up; use synth_imagenet_lt")
            if config.name != config.strategy:
                raise SynthsetError(f"configs[{i}].name: synth_imagenet names each config after its strategy")
        super().check_recipe(recipe)
