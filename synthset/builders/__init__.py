"""The dataset builders: one `datasets.GeneratorBasedBuilder` per published dataset family."""

from __future__ import annotations

from collections.abc import Callable


def _synth_imagenet() -> type:
    from synthset.builders.synth_imagenet import SynthImagenet

    return SynthImagenet


def _synth_imagenet_lt() -> type:
    from synthset.builders.synth_imagenet_lt import SynthImagenetLT

    return SynthImagenetLT


def _synth_fewshot() -> type:
    from synthset.builders.synth_fewshot import SynthFewshot

    return SynthFewshot


def _synth_classes() -> type:
    from synthset.builders.synth_classes import SynthClasses

    return SynthClasses


# dataset family (a recipe's `builder:`) -> a function returning its builder class (datasets is heavy)
BUILDERS: dict[str, Callable[[], type]] = {
    "synth_imagenet": _synth_imagenet,
    "synth_imagenet_lt": _synth_imagenet_lt,
    "synth_fewshot": _synth_fewshot,
    "synth_classes": _synth_classes,
}


def builder_class(name: str) -> type:
    """The builder class of a family, imported on demand.

    Raises:
        KeyError: `name` is not a dataset family.
    """
    return BUILDERS[name]()
