"""The dataset builders: one `datasets.GeneratorBasedBuilder` per published dataset family."""

from __future__ import annotations


def builder_class(name: str):
    """The builder class of a family, imported on demand (datasets is heavy)."""
    if name == "synth_imagenet":
        from synthset.builders.synth_imagenet import SynthImagenet

        return SynthImagenet
    if name == "synth_imagenet_lt":
        from synthset.builders.synth_imagenet_lt import SynthImagenetLT

        return SynthImagenetLT
    if name == "synth_fewshot":
        from synthset.builders.synth_fewshot import SynthFewshot

        return SynthFewshot
    if name == "synth_classes":
        from synthset.builders.synth_classes import SynthClasses

        return SynthClasses
    raise KeyError(name)
