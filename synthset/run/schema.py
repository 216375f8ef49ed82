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
}

# What the quality gate found (`recipe.quality`); null (and attempt 0, no rejections) in an unscreened run.
# `seed` is the seed of the kept attempt: attempt 0 is the plan's seed, attempt k the k-th redraw's
# (`synthset.run.ids.attempt_seed`), so a redrawn row still regenerates from its own columns.
REJECTED_ATTEMPT = {
    "attempt": Value("int32"),
    "seed": Value("int64"),
    "reason": Value("string"),  # nsfw | low_clip | near_duplicate
    "clip_score": Value("float32"),
    "nsfw_score": Value("float32"),
    "nsfw": Value("bool"),
}
QUALITY_COLUMNS = {
    "clip_score": Value("float32"),  # 100 * max(cos(image, "a photo of a <class>"), 0) with the recipe's CLIP
    "nsfw_score": Value("float32"),  # the checker's highest concept score; > 0 means flagged
    "nsfw": Value("bool"),  # flagged by the checker (kept only under `nsfw: keep`)
    "attempt": Value("int32"),
    "near_duplicate_of": Value("string"),  # an earlier kept image of the class (same shard) this one nearly repeats
    "rejected": List(REJECTED_ATTEMPT),  # the earlier attempts of this sample, and why each was rejected
}


def plan_features(label_names: list[str]) -> Features:
    """plan.parquet: one row per image to make; `shard` names the unit of work, `band` its scale band."""
    return Features({**_plan_columns(label_names), "band": Value("int32"), "shard": Value("string")})


def dataset_features(label_names: list[str]) -> Features:
    """A generated (and published) row: the image, its plan columns, how it was generated and screened."""
    return Features({"image": Image(), **_plan_columns(label_names), **GENERATOR_COLUMNS, **QUALITY_COLUMNS})


def rejects_features(label_names: list[str]) -> Features:
    """A shard's rejected attempts (`<shard>.rejects.parquet`, never published): a small thumbnail and the
    scores of every image the gate turned down, for `synthset review`. The sample's fate (redrawn and kept,
    or dropped) is in the shard and its record."""
    return Features(
        {
            "thumbnail": Image(),
            "sample_id": Value("string"),
            "config": Value("string"),
            "label": ClassLabel(names=label_names),
            "class_name": Value("string"),
            "prompt": Value("string"),
            **REJECTED_ATTEMPT,
        }
    )


PLAN_ONLY_COLUMNS = ("band", "shard")
