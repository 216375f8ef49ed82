"""synth_imagenet: synthetic ImageNet-1k per prompt strategy, at nested scales 1x..6x (paper A).

A generation config named after its strategy with `bands: k` publishes `<strategy>` and
`<strategy>_1x` .. `<strategy>_<k>x`; 1x is `images_per_class` per class (1,300 to match ImageNet-1k).
Which recipes make it is checked by `synthset.run.families` (at plan time, and again at build).
"""

from __future__ import annotations

from synthset.builders.run_builder import RunBuilder, builder_configs


class SynthImagenet(RunBuilder):
    DESCRIPTION = "Synthetic ImageNet-1k from an off-the-shelf diffusion model, one config per strategy and scale."
    BUILDER_CONFIGS = builder_configs("synth_imagenet")
