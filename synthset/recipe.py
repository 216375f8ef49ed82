"""The recipe: what a run makes, read from YAML into a pydantic model that every stage takes.

A recipe names the classes, the dataset configs (strategy and images per class), the generator (model,
scheduler, steps, guidance, size, batch size, attention) and how images are stored. It is validated as a
whole before any work starts: an unknown key or a wrong type fails with one line naming the key and the
file, never deep inside a GPU loop.

This module is the bottom of the package (it imports nothing of synthset but the error type), so the
names a recipe may use (strategies, augmentations) are defined here and the code that implements them
checks itself against these names.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from synthset.errors import SynthsetError

CONFIG_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_]*$")

TEXT_STRATEGIES = ("naive", "lar", "lar_cd", "lar_cd_sd")  # paper A's ladder: prompts only
STRATEGIES = (*TEXT_STRATEGIES, "augcond")  # + paper B: an augmented real image conditions unCLIP
LAR_STRATEGIES = ("lar", "lar_cd", "lar_cd_sd")  # those that need a resolved meaning per class
AUGMENTATION_BASES = ("none", "pixel_mixup", "pixel_cutmix", "embed_mixup", "embed_cutmix", "dropout")


def check_augmentation_name(name: str) -> tuple[str, bool]:
    """`embed_cutmix+dropout` -> ("embed_cutmix", True); raises ValueError naming the unknown part."""
    base, _, extra = name.partition("+")
    if base not in AUGMENTATION_BASES or extra not in ("", "dropout"):
        known = ", ".join(AUGMENTATION_BASES)
        raise ValueError(f"unknown augmentation {name!r} (known: {known}, each optionally +dropout)")
    return base, base == "dropout" or extra == "dropout"


class _Strict(BaseModel):
    """Unknown keys are errors: a misspelt key silently ignored would change what a run makes."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ClassSetSpec(_Strict):
    set: str = Field(
        "imagenet-1k",
        description="A named class set (imagenet-1k, caltech101, flowers102, oxford_pets, food101, dtd, eurosat, "
        "fgvc_aircraft, stanford_cars, sun397) or a path to a class list file (.yaml, .yml or .txt).",
    )
    subset: list[str] | None = Field(
        None, description="Class names or wnids to generate; the label space stays the whole set."
    )
    limit: Annotated[int, Field(gt=0)] | None = Field(None, description="Generate only the first N classes.")


class FillUpSpec(_Strict):
    """ImageNet-LT style fill-up: each class gets `target - real count` synthetic images."""

    train_list: Path = Field(description="The long-tail train list: `<image path> <label>` per line (ImageNet-LT).")
    target: Annotated[int, Field(gt=0)] = 1280


class AugCondSpec(_Strict):
    """Augmentation-conditioning (paper B): which augmentations condition unCLIP, and the prompt."""

    augmentations: dict[str, Annotated[float, Field(gt=0)]] = Field(
        {"embed_cutmix+dropout": 1.0},
        description="Augmentation name -> weight; names: none, pixel_mixup, pixel_cutmix, embed_mixup, "
        "embed_cutmix, dropout, each optionally +dropout.",
    )
    alpha: Annotated[float, Field(gt=0)] = Field(1.0, description="lam ~ Beta(alpha, alpha) for the mixes.")
    dropout: Annotated[float, Field(ge=0, lt=1)] = Field(0.4, description="Share of embedding dimensions zeroed.")
    prompt: str = Field(
        "{class_name}", description="'{class_name}' (ImageNet-LT style) or 'a photo of a {class_name}' (few-shot)."
    )
    prompt_strategy: str | None = Field(None, description="Use a text strategy's prompts instead (e.g. lar_cd_sd).")

    @field_validator("augmentations")
    @classmethod
    def _known_augmentations(cls, value: dict[str, float]) -> dict[str, float]:
        if not value:
            raise ValueError("name at least one augmentation")
        for name in value:
            check_augmentation_name(name)
        return value

    @field_validator("prompt_strategy")
    @classmethod
    def _text_strategy(cls, value: str | None) -> str | None:
        if value is not None and value not in TEXT_STRATEGIES:
            known = ", ".join(TEXT_STRATEGIES)
            raise ValueError(f"prompt_strategy must be a text strategy ({known}), got {value!r}")
        return value

    @field_validator("prompt")
    @classmethod
    def _prompt_names_the_class(cls, value: str) -> str:
        if "{class_name}" not in value:
            raise ValueError("the prompt template must contain {class_name}")
        return value


class ConfigSpec(_Strict):
    """One generated dataset config, e.g. `naive` or `lar_cd_sd`; with bands it publishes `<name>_1x` ... ."""

    name: str
    strategy: str = Field("naive", description="Prompt strategy; see `synthset.generation.prompts`.")
    images_per_class: Annotated[int, Field(gt=0)] | None = Field(
        None, description="Images per class (per band when bands > 1)."
    )
    bands: Annotated[int, Field(ge=1)] = Field(
        1,
        description="Nested scales: band k holds image indices [k*n, (k+1)*n) of every class and the published "
        "config <name>_<k>x holds bands 0..k-1. Raising bands later generates only the new bands.",
    )
    fill_up: FillUpSpec | None = Field(None, description="Per-class counts from a long-tail train list instead.")
    shots: Annotated[int, Field(gt=0)] | None = Field(
        None,
        description="Few-shot: draw this many real images per class (recorded in real_shots.parquet); "
        "augmentation-conditioning then uses only these.",
    )
    augcond: AugCondSpec | None = Field(None, description="Options of the augcond strategy.")
    split: str = "train"
    sd_ratio: Annotated[float, Field(ge=0, le=1)] = Field(
        0.5, description="lar_cd_sd only: the share of style (SD) prompts; the rest are contextual (CD)."
    )

    @field_validator("name", "split")
    @classmethod
    def _is_identifier(cls, value: str) -> str:
        if not CONFIG_NAME_PATTERN.match(value):
            raise ValueError(f"{value!r} must be lowercase letters, digits and underscores")
        return value

    @property
    def augcond_options(self) -> AugCondSpec:
        return self.augcond or AugCondSpec()

    @model_validator(mode="after")
    def _augcond_options_only_for_augcond(self) -> ConfigSpec:
        if self.strategy != "augcond" and self.augcond is not None:
            raise ValueError("augcond options need strategy: augcond")
        return self

    @model_validator(mode="after")
    def _one_way_to_count(self) -> ConfigSpec:
        if (self.images_per_class is None) == (self.fill_up is None):
            raise ValueError("give exactly one of images_per_class or fill_up")
        if self.fill_up is not None and self.bands != 1:
            raise ValueError("fill_up configs have one band")
        return self

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, value: str) -> str:
        if value not in STRATEGIES:
            raise ValueError(f"unknown strategy {value!r} (known: {', '.join(sorted(STRATEGIES))})")
        return value


class GeneratorSpec(_Strict):
    model: str = Field(
        description="A Hub model id, a local directory saved with save_pretrained, "
        "or synthset-testing:<name> for the tiny offline models."
    )
    revision: str | None = Field(None, description="Hub branch, tag or commit; resolved to a commit in the lock.")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="auto: float16 on CUDA, float32 on CPU."
    )
    scheduler: Literal["default", "ddim", "pndm", "euler", "euler_a", "dpm++", "unipc"] = Field(
        "default",
        description="default: the model's own; a swap keeps the model's prediction type and timestep spacing.",
    )
    timestep_spacing: Literal["model", "leading", "linspace", "trailing"] = Field(
        "model", description="model: the spacing of the model's own scheduler (kept through a swap)."
    )
    steps: Annotated[int, Field(gt=0)] = 30
    guidance: Annotated[float, Field(ge=0)] = 7.5
    width: Annotated[int, Field(gt=0, multiple_of=8)] = 512
    height: Annotated[int, Field(gt=0, multiple_of=8)] = 512
    negative_prompt: str = ""
    batch_size: Annotated[int, Field(gt=0)] = 8
    attention: Literal["auto", "sdpa", "xformers"] = Field(
        "auto", description="auto: xformers when importable and on CUDA, else PyTorch SDPA."
    )
    noise_level: Annotated[int, Field(ge=0)] = Field(
        0, description="unCLIP only: noise added to the image embedding (0 in paper B)."
    )
    channels_last: bool = Field(False, description="UNet and VAE in channels_last memory format (GPU speed).")
    compile: bool = Field(False, description="torch.compile the UNet (minutes of compiling, then faster steps).")
    vae_slicing: bool = Field(False, description="Decode one image at a time: lower peak memory at large batch.")
    vae_tiling: bool = Field(
        False, description="Decode in overlapping tiles: lower memory above the VAE's sample size (changes pixels)."
    )
    cpu_threads: Annotated[int, Field(gt=0)] = Field(
        1,
        description="Torch threads per process on CPU. Pinned because the thread count changes float "
        "reduction order (launchers set OMP_NUM_THREADS differently), and so the bytes of an image.",
    )


class LLMSpec(_Strict):
    """Which language model writes CD/SD descriptions (and extra LAR meanings), and how it samples."""

    backend: Literal["template", "transformers", "openai"] = Field(
        "template",
        description="template: no model, combinatorial prompts from curated vocabularies (the no-LLM "
        "baseline); transformers: a local causal LM; openai: any OpenAI-compatible server.",
    )
    model: str | None = Field(
        None, description="Hub id or local path (transformers; synthset-testing:tiny-lm offline), or the model "
        "name the server knows (openai).",
    )  # fmt: skip
    revision: str | None = None
    base_url: str | None = Field(None, description="openai: e.g. http://localhost:8000/v1 (vLLM, TGI, Ollama).")
    api_key_env: str = Field("OPENAI_API_KEY", description="openai: the environment variable holding the key.")
    temperature: Annotated[float, Field(ge=0)] = 0.8
    top_p: Annotated[float, Field(gt=0, le=1)] = 0.9
    max_new_tokens: Annotated[int, Field(gt=0)] = 100
    batch_size: Annotated[int, Field(gt=0)] = Field(16, description="transformers: prompts per generate call.")
    concurrency: Annotated[int, Field(gt=0)] = Field(8, description="openai: requests in flight.")
    timeout: Annotated[float, Field(gt=0)] = Field(60.0, description="openai: seconds per request.")
    max_retries: Annotated[int, Field(ge=0)] = Field(4, description="openai: retries on 5xx, 429 and timeouts.")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"

    @model_validator(mode="after")
    def _model_named_when_needed(self) -> LLMSpec:
        if self.backend != "template" and not self.model:
            raise ValueError(f"backend {self.backend!r} needs a model")
        if self.backend == "openai" and not self.base_url:
            raise ValueError("backend 'openai' needs a base_url")
        return self


DEFAULT_STYLES = (
    "oil painting",
    "watercolor painting",
    "pencil sketch",
    "cartoon",
    "origami",
    "3D render",
    "pixel art",
    "stained glass",
    "embroidery",
    "sculpture",
    "graffiti",
    "tattoo",
    "video game",
    "plush toy",
    "mosaic",
)


class AspectVocabularies(_Strict):
    """Words the CD prompts combine; the template backend uses them as they are, an LLM as hints."""

    foreground: list[str] | None = None
    background: list[str] | None = None
    lighting: list[str] | None = None
    camera: list[str] | None = None


class PromptsSpec(_Strict):
    llm: LLMSpec = LLMSpec()
    styles: Annotated[list[str], Field(min_length=1)] = Field(
        list(DEFAULT_STYLES), description="SD styles; replace to change the style list."
    )
    aspects: AspectVocabularies = AspectVocabularies()
    max_attempts: Annotated[int, Field(gt=0)] = Field(
        3, description="LLM tries per description before the template replaces it (counted)."
    )
    max_chars: Annotated[int, Field(gt=20)] = Field(300, description="Longest description kept.")


class RealImagesSpec(_Strict):
    """Real images of each class (for LAR scoring and augmentation-conditioning): a dataset or a folder."""

    dataset: str | None = Field(None, description="A `datasets` hub id or local path (load_dataset).")
    config: str | None = Field(None, description="The dataset's config name, when it has several.")
    folder: Path | None = Field(None, description="An image folder: <folder>/<wnid or class name>/*.jpg")
    split: str = "train"
    image_column: str = "image"
    label_column: str = "label"
    match: Literal["index", "name"] = Field(
        "index", description="index: the dataset's labels are this class set's labels; name: match label names."
    )

    @model_validator(mode="after")
    def _exactly_one_source(self) -> RealImagesSpec:
        if (self.dataset is None) == (self.folder is None):
            raise ValueError("give exactly one of dataset or folder")
        return self


class LARSpec(_Strict):
    clip_model: str = Field(
        "ViT-B-32", description="open_clip model name, local-dir:<path>, hf-hub:<id>, or synthset-testing:tiny-clip."
    )
    clip_pretrained: str | None = Field("openai", description="open_clip pretrained tag (for a model name).")
    images_per_class: Annotated[int, Field(gt=0)] = Field(50, description="Real images scored per class (M).")
    batch_size: Annotated[int, Field(gt=0)] = 64


class StorageSpec(_Strict):
    format: Literal["jpeg", "png", "webp"] = "jpeg"
    quality: Annotated[int, Field(ge=1, le=100)] = 95
    resize: Annotated[int, Field(gt=0)] | None = Field(
        None, description="Store images at this square size (e.g. generate at 512, store at 256)."
    )
    shard_size: Annotated[int, Field(gt=0)] = Field(
        1000, description="Images per Parquet shard: the unit of work a crash can lose."
    )
    row_group_size: Annotated[int, Field(gt=0)] = Field(100, description="Rows per Parquet row group.")


class Recipe(_Strict):
    name: str
    builder: Literal["synth_imagenet", "synth_imagenet_lt", "synth_fewshot"] = Field(
        "synth_imagenet", description="The dataset family, which fixes the published config names."
    )
    seed: int = 0
    license: str | None = Field(
        None,
        description="Hub license id of the dataset (e.g. creativeml-openrail-m); needed when the generator's "
        "model card does not state one.",
    )
    output_dir: Path = Field(Path("runs"), description="The run directory is <output_dir>/<name>.")
    classes: ClassSetSpec = ClassSetSpec()
    configs: Annotated[list[ConfigSpec], Field(min_length=1)]
    generator: GeneratorSpec
    storage: StorageSpec = StorageSpec()
    prompts: PromptsSpec = PromptsSpec()
    lar: LARSpec = LARSpec()
    real_images: RealImagesSpec | None = None

    @field_validator("name")
    @classmethod
    def _name_is_a_directory_name(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", value):
            raise ValueError(f"{value!r} must be letters, digits, '.', '_' or '-'")
        return value

    @model_validator(mode="after")
    def _augcond_runs_alone(self) -> Recipe:
        augcond = [c.strategy == "augcond" for c in self.configs]
        if any(augcond) and not all(augcond):
            raise ValueError("augcond configs need an unCLIP model, so a recipe's configs are all augcond or none")
        if any(augcond) and self.real_images is None:
            raise ValueError("augcond needs real_images (the images that condition the generation)")
        return self

    @model_validator(mode="after")
    def _shots_need_real_images(self) -> Recipe:
        for i, config in enumerate(self.configs):
            if config.shots is not None and self.real_images is None:
                raise ValueError(f"configs[{i}].shots needs real_images (where the k real images come from)")
        return self

    @model_validator(mode="after")
    def _config_names_unique(self) -> Recipe:
        names = [c.name for c in self.configs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"config name {duplicates[0]!r} appears more than once")
        return self

    @property
    def run_dir(self) -> Path:
        return self.output_dir / self.name

    def text_strategies(self) -> set[str]:
        """The text strategies the prompts come from (an augcond config borrows one, naive by default)."""
        return {
            (c.augcond_options.prompt_strategy or "naive") if c.strategy == "augcond" else c.strategy
            for c in self.configs
        }

    def uses_lar(self) -> bool:
        """Whether some config needs LAR's per-class meanings (and so CLIP, and maybe the LLM)."""
        return bool(self.text_strategies() & set(LAR_STRATEGIES))


def _format_location(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def describe_validation_error(error: ValidationError, source: str) -> str:
    """The first problem of a pydantic error as one line: `<file>: <key>: <what is wrong>`."""
    first = error.errors()[0]
    where = _format_location(first["loc"])
    if first["type"] == "extra_forbidden":
        return f"{source}: {where}: unknown key"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] not in ("missing", "value_error"):
        message += f" (got {first['input']!r})"
    return f"{source}: {where}: {message}"


def recipe_from_dict(data: Any, source: str) -> Recipe:
    if not isinstance(data, dict):
        raise SynthsetError(f"{source}: a recipe must be a YAML mapping, got {type(data).__name__}")
    try:
        return Recipe.model_validate(data)
    except ValidationError as error:
        raise SynthsetError(describe_validation_error(error, source)) from None


def read_yaml_file(path: Path, what: str) -> Any:
    """A YAML file's data; a missing file or a syntax error is one `SynthsetError` line naming file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SynthsetError(f"{path}: no such {what} file") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise SynthsetError(f"{path}:{where}: not valid YAML ({getattr(error, 'problem', error)})") from None


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file; every problem is one `SynthsetError` line naming file and key."""
    return recipe_from_dict(read_yaml_file(Path(path), "recipe"), str(path))


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """Plain data for YAML: paths as strings, every default written out so the lock is complete."""
    return recipe.model_dump(mode="json")
