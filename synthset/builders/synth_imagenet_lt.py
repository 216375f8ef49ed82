"""synth_imagenet_lt: ImageNet-LT filled up to a target per class with synthetic images (paper B)."""

from __future__ import annotations

import datasets

from synthset.builders.run_builder import STRATEGIES, RunBuilder
from synthset.errors import SynthsetError


class SynthImagenetLT(RunBuilder):
    DESCRIPTION = "Synthetic images that fill every ImageNet-LT class up to a target count."
    BUILDER_CONFIGS = [datasets.BuilderConfig(name=s) for s in STRATEGIES]

    @classmethod
    def check_recipe(cls, recipe) -> None:
        if recipe.classes.set != "imagenet-1k":
            raise SynthsetError("classes.set: synth_imagenet_lt needs imagenet-1k")
        for i, config in enumerate(recipe.configs):
            if config.fill_up is None:
                raise SynthsetError(
                    f"configs[{i}]: synth_imagenet_lt configs need fill_up (the ImageNet-LT train list)"
                )
        super().check_recipe(recipe)
