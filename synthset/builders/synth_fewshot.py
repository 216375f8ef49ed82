"""synth_fewshot: M synthetic images per class for few-shot benchmarks, one config per dataset and k.

Config `<dataset>_<k>shot` (k in 1, 2, 4, 8, 16) goes with the k real images per class drawn for it;
with augmentation-conditioning only those k condition the generation (paper B, DA-Fusion protocol).
"""

from __future__ import annotations

import re

import datasets

from synthset.builders.run_builder import RunBuilder
from synthset.classes import PACKAGED_SETS
from synthset.errors import SynthsetError

FEWSHOT_SETS = (*PACKAGED_SETS, "custom")  # the shipped benchmark class lists, or any custom list
SHOTS = (1, 2, 4, 8, 16)
_CONFIG = re.compile(r"^(?P<dataset>[a-z0-9_]+)_(?P<k>\d+)shot$")


class SynthFewshot(RunBuilder):
    DESCRIPTION = "Synthetic training images for few-shot classification benchmarks."
    CLASS_SET = None
    BUILDER_CONFIGS = [datasets.BuilderConfig(name=f"{d}_{k}shot") for d in FEWSHOT_SETS for k in SHOTS]

    def class_set_name(self) -> str:
        return _CONFIG.match(self.config.name)["dataset"]

    @classmethod
    def check_recipe(cls, recipe) -> None:
        for i, config in enumerate(recipe.configs):
            match = _CONFIG.match(config.name)
            if match is None:
                raise SynthsetError(f"configs[{i}].name: synth_fewshot configs are named <dataset>_<k>shot")
            dataset = match["dataset"]
            if dataset != "custom" and recipe.classes.set != dataset:
                raise SynthsetError(f"configs[{i}].name: {config.name!r} needs classes.set: {dataset}")
        super().check_recipe(recipe)
