"""synth_imagenet_lt: ImageNet-LT filled up to a target per class with synthetic images (paper B)."""

from __future__ import annotations

from synthset.builders.run_builder import RunBuilder, builder_configs


class SynthImagenetLT(RunBuilder):
    DESCRIPTION = "Synthetic images that fill every ImageNet-LT class up to a target count."
    BUILDER_CONFIGS = builder_configs("synth_imagenet_lt")
