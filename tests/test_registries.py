"""Every registry's keys are exactly the names a recipe (or a model_index.json) may use: none missing, none extra.

A name the recipe accepts with no registry entry fails deep in a run; an entry the recipe cannot name is dead
code. Each registry is a dict in one place; this file ties each to the names it serves.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import diffusers
import pytest
from helpers import REPO

from synthset.builders import BUILDERS, builder_class
from synthset.generation.conditioning import EMBEDDINGS
from synthset.generation.families import FAMILIES, OTHER, family_for
from synthset.generation.llm.backends import BACKENDS
from synthset.generation.prompts import PROMPT_STRATEGIES
from synthset.recipe import AUGMENTATION_BASES, SCHEDULERS, STRATEGIES, GeneratorSpec, LLMSpec, Recipe, load_recipe
from synthset.run.families import DATASET_FAMILIES, config_names
from synthset.testing.replicas import PIPELINE_REPLICAS, REPLICA_OF_HUB_ID, REPLICAS, read_configs
from synthset.testing.tiny import TINY_MODELS, TINY_SD, TINY_UNCLIP
from synthset.training.config import FewShotSpec
from synthset.training.fewshot_protocols import PROTOCOLS


def literal_names(model: type, field: str) -> set[str]:
    """The names a pydantic model's Literal field accepts."""
    return set(get_args(model.model_fields[field].annotation))


def replica_class(name: str) -> str:
    return read_configs(REPLICAS[name])["model_index.json"]["_class_name"]


def test_prompt_strategies_are_the_recipes_strategies() -> None:
    assert list(PROMPT_STRATEGIES) == list(STRATEGIES)


def test_augmentation_embeddings_are_the_recipes_augmentation_bases() -> None:
    assert set(EMBEDDINGS) == set(AUGMENTATION_BASES) and len(EMBEDDINGS) == len(AUGMENTATION_BASES)


def test_llm_backends_are_the_recipes_backends_but_template() -> None:
    assert set(BACKENDS) == literal_names(LLMSpec, "backend") - {"template"}


def test_fewshot_protocols_are_the_train_configs_protocols() -> None:
    assert set(PROTOCOLS) == literal_names(FewShotSpec, "protocol")


def test_dataset_families_are_the_recipes_builders() -> None:
    assert set(DATASET_FAMILIES) == set(BUILDERS) == literal_names(Recipe, "builder")


@pytest.mark.parametrize("family", sorted(BUILDERS))
def test_each_builder_declares_its_familys_config_names(family: str) -> None:
    assert [c.name for c in builder_class(family).BUILDER_CONFIGS] == config_names(family)


def test_scheduler_names_come_from_one_list() -> None:
    assert get_args(GeneratorSpec.model_fields["scheduler"].annotation) == ("default", *SCHEDULERS)
    assert all(issubclass(getattr(diffusers, name), diffusers.SchedulerMixin) for name in SCHEDULERS.values())


def test_model_families_are_the_pipeline_classes_of_the_replicas_and_tiny_pipelines(synthset_home: Path) -> None:
    """Every generator the tests can run has a family, and every family has a generator the tests run."""
    tiny = {
        json.loads((TINY_MODELS[n](None) / "model_index.json").read_text())["_class_name"]
        for n in (TINY_SD, TINY_UNCLIP)
    }
    replicas = {replica_class(name) for name in PIPELINE_REPLICAS}
    assert set(FAMILIES) == replicas and tiny <= replicas
    assert all(key == family.pipeline_class for key, family in FAMILIES.items())
    assert family_for("SomeOtherPipeline") is OTHER


@pytest.mark.parametrize("hub_id", sorted({h for f in FAMILIES.values() for h in f.memory}))
def test_each_memory_figure_sits_in_the_family_of_its_model(hub_id: str) -> None:
    """The figures of a Hub id live in the module of the pipeline class its repo names (its replica's)."""
    family = FAMILIES[replica_class(REPLICA_OF_HUB_ID[hub_id])]
    assert hub_id in family.memory


@pytest.mark.parametrize("path", sorted((REPO / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_recipes_hub_model_has_a_family_with_its_memory_figures(path: Path) -> None:
    model = load_recipe(path).generator.model
    if model in REPLICA_OF_HUB_ID:
        assert model in FAMILIES[replica_class(REPLICA_OF_HUB_ID[model])].memory
    else:
        assert model.startswith("synthset-testing:"), model
