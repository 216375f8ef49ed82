"""synth_fewshot: M synthetic images per class for few-shot benchmarks, one config per dataset and k.

Config `<dataset>_<k>shot` (k in 1, 2, 4, 8, 16) goes with the k real images per class drawn for it;
with augmentation-conditioning only those k condition the generation (paper B, DA-Fusion protocol).
`<dataset>_<k>shot_t<trial>` is the set made from DA-Fusion trial t's shots (one per trial, as the probe
trains each trial on other real images).
"""

from __future__ import annotations

from synthset.builders.run_builder import RunBuilder, builder_configs
from synthset.run.families import fewshot_dataset


class SynthFewshot(RunBuilder):
    DESCRIPTION = "Synthetic training images for few-shot classification benchmarks."
    CLASS_SET = None
    BUILDER_CONFIGS = builder_configs("synth_fewshot")

    def class_set_name(self) -> str:
        return fewshot_dataset(self.config.name)
