"""The `datasets` Features of plan rows and of generated rows, defined once.

The plan, the generation shards and the published Parquet files all carry these Features in their
Arrow schema metadata, so `load_dataset` reads `label` as a ClassLabel and `image` as an Image from the
very files the runner wrote, with no conversion step between generation and publication.
"""

from __future__ import annotations

from datasets import ClassLabel, Features, Image, List, Value

CD_ASPECTS = ("foreground", "background", "lighting", "camera")


def _plan_columns(label_names: list[str]) -> dict:
    return {
        "sample_id": Value("string"),
        "config": Value("string"),
        "split": Value("string"),
        "label": ClassLabel(names=label_names),
        "class_name": Value("string"),
        "strategy": Value("string"),
        "prompt": Value("string"),
        "negative_prompt": Value("string"),
        "lar_meaning": Value("string"),
        "cd_aspects": {aspect: Value("string") for aspect in CD_ASPECTS},
        "sd_style": Value("string"),
        "seed": Value("int64"),
        "cond_images": List(Value("string")),
        "cond_aug": Value("string"),
        "cond_lambda": Value("float32"),
    }


# With the plan columns these make a row self-sufficient: prompt, seed, model commit, scheduler, steps,
# guidance, size, dtype and batch size (float reduction order depends on the batch shape) regenerate it.
GENERATOR_COLUMNS = {
    "model": Value("string"),
    "model_revision": Value("string"),
    "scheduler": Value("string"),
    "steps": Value("int32"),
    "guidance": Value("float32"),
    "width": Value("int32"),
    "height": Value("int32"),
    "attention": Value("string"),
    "dtype": Value("string"),
    "batch_size": Value("int32"),
    # The scheduler's effective prediction type and timestep spacing, and the recipe's speed knobs: each
    # can change the bytes (synthset.generation.pipeline_options).
    "generator_options": {
        "prediction_type": Value("string"),
        "timestep_spacing": Value("string"),
        "channels_last": Value("bool"),
        "compile": Value("bool"),
        "vae_slicing": Value("bool"),
        "vae_tiling": Value("bool"),
    },
    "clip_score": Value("float32"),
}


def plan_features(label_names: list[str]) -> Features:
    """plan.parquet: one row per image to make; `shard` names the unit of work, `band` its scale band."""
    return Features({**_plan_columns(label_names), "band": Value("int32"), "shard": Value("string")})


def dataset_features(label_names: list[str]) -> Features:
    """A generated (and published) row: the image, its plan columns, and how it was generated."""
    return Features({"image": Image(), **_plan_columns(label_names), **GENERATOR_COLUMNS})


PLAN_ONLY_COLUMNS = ("band", "shard")
