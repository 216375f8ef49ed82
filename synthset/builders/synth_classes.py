"""synth_classes: synthetic images of any class list, one config per strategy and scale (as synth_imagenet).

The classes are the user's: a text, CSV or YAML class list, a named set, or a `datasets` source's label
names. Configs are named after their strategy (`naive`, `lar`, `lar_cd`, `lar_cd_sd`, `augcond`) and, with
`bands: k`, `<strategy>_1x` .. `<strategy>_<k>x`. The label names are the run's own (classes.parquet), so
this builder needs the run directory as `data_dir`.
"""

from __future__ import annotations

from synthset.builders.run_builder import RunBuilder, builder_configs
from synthset.errors import RunStateError


class SynthClasses(RunBuilder):
    DESCRIPTION = "Synthetic images of a custom class list, one config per prompt strategy and scale."
    CLASS_SET = None
    BUILDER_CONFIGS = builder_configs("synth_classes")

    def class_set_name(self) -> str:
        raise RunStateError("SynthClasses: pass the run directory as data_dir (the classes are the run's own)")
