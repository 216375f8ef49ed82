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
from collections.abc import Hashable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from synthset.errors import RecipeError

CONFIG_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_]*$")

TEXT_STRATEGIES = ("naive", "lar", "lar_cd", "lar_cd_sd")  # paper A's ladder: prompts only
STRATEGIES = (*TEXT_STRATEGIES, "augcond")  # + paper B: an augmented real image conditions unCLIP
LAR_STRATEGIES = ("lar", "lar_cd", "lar_cd_sd")  # those that need a resolved meaning per class
AUGMENTATION_BASES = ("none", "pixel_mixup", "pixel_cutmix", "embed_mixup", "embed_cutmix", "dropout")
# paper: as paper B's text defines them; authors_code: as the authors' public code computes them (see augment.py)
AUGMENTATION_VARIANTS = ("paper", "authors_code")
PROMPT_FIELDS = ("class_name", "synonyms")  # what an augcond prompt template may name
# generator.scheduler name -> the diffusers scheduler class it swaps in ("default" keeps the model's own)
SCHEDULERS = {
    "ddim": "DDIMScheduler",
    "pndm": "PNDMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "unipc": "UniPCMultistepScheduler",
}
SchedulerName = Literal[("default", *SCHEDULERS)]  # type: ignore[valid-type]  # the names come from SCHEDULERS


def check_augmentation_name(name: str) -> tuple[str, bool]:
    """`embed_cutmix+dropout` -> ("embed_cutmix", True); raises ValueError naming the unknown part."""
    base, _, extra = name.partition("+")
    if base not in AUGMENTATION_BASES or extra not in ("", "dropout"):
        known = ", ".join(AUGMENTATION_BASES)
        raise ValueError(f"unknown augmentation {name!r} (known: {known}, each optionally +dropout)")
    return base, base == "dropout" or extra == "dropout"


class Strict(BaseModel):
    """Unknown keys are errors: a misspelt key silently ignored would change what a run makes (or, in a
    training config, what it measures). Frozen: a validated spec is never edited afterwards."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class StrictTypes(Strict):
    """A recipe's sections are strict about their values' types too (pydantic's strict mode):
    `images_per_class: "2"` or `steps: 2.0` is refused, not converted, as a quoted number is more likely a
    slip than meant. Paths alone come as YAML strings (their fields say `strict=False`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ClassSetSpec(StrictTypes):
    set: str | None = Field(
        "imagenet-1k",
        description="A named class set (imagenet-1k, caltech101, flowers102, oxford_pets, food101, dtd, eurosat, "
        "fgvc_aircraft, stanford_cars, sun397) or a path to a class list file: .txt (one name per line), .csv "
        "(a `name` column, optional `description` and `wnid`), .yaml or .yml.",
    )
    dataset: str | None = Field(
        None,
        description="Instead of set: the label names of a `datasets` source (a Hub id or local path), read from "
        "its label_column's ClassLabel.",
    )
    dataset_config: str | None = Field(None, description="The dataset's config name, when it has several.")
    label_column: str = Field("label", description="The dataset's ClassLabel column (with dataset).")
    subset: list[str] | None = Field(
        None,
        description="Class names or wnids to generate; the label space stays the whole set (leave it out for all).",
    )
    limit: Annotated[int, Field(gt=0)] | None = Field(None, description="Generate only the first N classes.")

    @model_validator(mode="before")
    @classmethod
    def _dataset_replaces_the_default_set(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("dataset") is not None and "set" not in data:
            return {**data, "set": None}
        return data

    @model_validator(mode="after")
    def _one_source(self) -> ClassSetSpec:
        if (self.set is None) == (self.dataset is None):
            raise ValueError("give exactly one of set (a named set or a class list file) or dataset")
        return self

    @property
    def source(self) -> str:
        """The class source as a reader names it: the set, or `dataset <id>`."""
        return self.set if self.set is not None else f"dataset {self.dataset}"

    @field_validator("subset")
    @classmethod
    def _entries_are_names(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("is empty: name at least one class, or leave subset out to generate every class")
        for i, name in enumerate(value or []):
            if not name.strip():
                raise ValueError(f"entry {i} is blank")
            if "\n" in name.strip():
                raise ValueError(f"entry {i} ({name!r}) spans several lines")
        return value


class FillUpSpec(StrictTypes):
    """ImageNet-LT style fill-up: each class gets `target - real count` synthetic images."""

    train_list: Path = Field(
        description="The long-tail train list: `<image path> <label>` per line (ImageNet-LT).", strict=False
    )
    target: Annotated[int, Field(gt=0)] = Field(1280, description="Images each class ends with, real plus synthetic.")


class AugCondSpec(StrictTypes):
    """Augmentation-conditioning (paper B): which augmentations condition unCLIP, the prompt, and the pool."""

    augmentations: dict[str, Annotated[float, Field(gt=0)]] = Field(
        {"embed_cutmix+dropout": 1.0},
        description="Augmentation name -> weight; names: none, pixel_mixup, pixel_cutmix, embed_mixup, "
        "embed_cutmix, dropout, each optionally +dropout.",
    )
    alpha: Annotated[float, Field(gt=0)] = Field(1.0, description="lam ~ Beta(alpha, alpha) for the mixes.")
    dropout: Annotated[float, Field(ge=0, lt=1)] = Field(0.4, description="Share of embedding dimensions zeroed.")
    variant: Literal["paper", "authors_code"] = Field(
        "paper",
        description="paper: the augmentations as paper B's text defines them; authors_code: as its authors' code "
        "computes them (dropout unscaled on the noised 2048-d embedding; embedding CutMix along the guidance batch "
        "axis, in effect one image). See the README's augmentation table.",
    )
    prompt: str = Field(
        "{class_name}",
        description="A template with {class_name} (the class's name) or {synonyms} (its full WordNet synonym "
        "string, e.g. 'tench, Tinca tinca': paper B's ImageNet-LT prompt); 'a photo of a {class_name}' for few-shot.",
    )
    prompt_strategy: str | None = Field(None, description="Use a text strategy's prompts instead (e.g. lar_cd_sd).")
    condition_on: Literal["shots", "train_split"] | None = Field(
        None,
        description="Few-shot configs only. shots (default): only the config's k shots condition generation, so "
        "the probe never trains on a synthetic image made from a real image it did not get; train_split: every "
        "real image of the class in the training split (the train half of a DA-Fusion draw with halves), as paper "
        "B's authors did. Fill-up configs always condition on fill_up.train_list.",
    )

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
        import string

        try:
            fields = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        except ValueError as error:
            raise ValueError(f"the prompt template {value!r} is not a format string ({error})") from None
        unknown = fields - set(PROMPT_FIELDS)
        if unknown:
            raise ValueError(
                f"the prompt template names {{{sorted(unknown)[0]}}}; it may use {{class_name}} or {{synonyms}}"
            )
        if not fields:
            raise ValueError("the prompt template must contain {class_name} or {synonyms}")
        return value


class ShotDrawSpec(StrictTypes):
    """DA-Fusion's k-shot draw (brandontrabucco/da-fusion, semantic_aug/datasets/*.py), for one trial.

    One numpy generator, `default_rng(trial)`, permutes each class's images in label order; with `halves`
    (Caltech101, Flowers102) the first half of the permutation is the training split and the second the
    validation split; the k shots are the first k of the training ids. The few-shot probe draws the same way,
    so it can check that a dataset was made from its trial's shots.
    """

    trial: Annotated[int, Field(ge=0)] = Field(description="The DA-Fusion trial, i.e. the numpy seed of the draw.")
    halves: bool = Field(
        False, description="Split every class in two halves per trial (DA-Fusion's Caltech101 and Flowers102)."
    )


class ConfigSpec(StrictTypes):
    """One generated dataset config, e.g. `naive` or `lar_cd_sd`; with bands it publishes `<name>_1x` ... ."""

    name: str = Field(description="The config's name on the Hub (lowercase letters, digits, _).")
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
    shot_draw: ShotDrawSpec | None = Field(
        None,
        description="Draw the k shots as DA-Fusion does for one trial (default: synthset's seeded draw per class).",
    )
    augcond: AugCondSpec | None = Field(None, description="Options of the augcond strategy.")
    split: str = Field("train", description="The split its images are published in.")
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
    def _conditioning_pool_fits(self) -> ConfigSpec:
        condition_on = self.augcond_options.condition_on
        if self.shot_draw is not None and self.shots is None:
            raise ValueError("shot_draw needs shots (the k of the k-shot draw)")
        if condition_on is not None and self.shots is None:
            raise ValueError(
                "augcond.condition_on is for few-shot configs (with shots); others condition on every image of "
                "the class, fill-up configs on fill_up.train_list"
            )
        if self.fill_up is not None and self.shots is not None:
            raise ValueError("a fill_up config conditions on its train list; it cannot also draw shots")
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


class GeneratorSpec(StrictTypes):
    model: str = Field(
        description="A Hub model id, a local directory saved with save_pretrained, "
        "or synthset-testing:<name> for the tiny offline models."
    )
    revision: str | None = Field(None, description="Hub branch, tag or commit; resolved to a commit in the lock.")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="auto: float16 on CUDA, float32 on CPU."
    )
    scheduler: SchedulerName = Field(
        "default",
        description="default: the model's own; a swap keeps the model's prediction type and timestep spacing.",
    )
    timestep_spacing: Literal["model", "leading", "linspace", "trailing"] = Field(
        "model", description="model: the spacing of the model's own scheduler (kept through a swap)."
    )
    steps: Annotated[int, Field(gt=0)] = Field(30, description="Denoising steps per image.")
    guidance: Annotated[float, Field(ge=0)] = Field(7.5, description="Classifier-free guidance scale.")
    width: Annotated[int, Field(gt=0, multiple_of=8)] = Field(512, description="Image width in pixels.")
    height: Annotated[int, Field(gt=0, multiple_of=8)] = Field(512, description="Image height in pixels.")
    negative_prompt: str = Field("", description="Sent with every prompt; empty: none.")
    batch_size: Annotated[int, Field(gt=0)] = Field(
        8, description="Images per pipeline call; a short last batch is padded, so bytes never depend on it."
    )
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


def check_http_url(url: str) -> str | None:
    """Why `url` is not an http(s) URL with a host (and a numeric port, if any); None when it is one."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port or 1) > 0
    except ValueError:  # a port that is not a number, a bad IPv6 literal
        valid = False
    return None if valid else f"not an http(s) URL: {url!r}"


def _distinct_urls(urls: list[str], what: str) -> None:
    """Each URL valid, and none listed twice (a trailing slash does not make another server)."""
    seen: set[str] = set()
    for i, url in enumerate(urls):
        problem = check_http_url(url)
        if problem:
            raise ValueError(f"{what}{i}: {problem}" if len(urls) > 1 else problem)
        if url.rstrip("/") in seen:
            raise ValueError(f"{what}{i}: {url!r} is listed twice")
        seen.add(url.rstrip("/"))


class LLMEndpoint(StrictTypes):
    """One OpenAI-compatible server of `prompts.llm.endpoints`; a field left out takes prompts.llm's value."""

    base_url: str = Field(description="e.g. http://gpu-node-3:8000/v1")
    concurrency: Annotated[int, Field(gt=0)] | None = Field(
        None, description="Requests in flight on this server (default: prompts.llm.concurrency)."
    )
    api_key_env: str | None = Field(None, description="Default: prompts.llm.api_key_env.")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        problem = check_http_url(value)
        if problem:
            raise ValueError(problem)
        return value


class LLMSpec(StrictTypes):
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
    revision: str | None = Field(None, description="transformers: Hub branch, tag or commit of the model.")
    base_url: str | list[str] | None = Field(
        None,
        description="openai: e.g. http://localhost:8000/v1 (vLLM, TGI, Ollama), or a list of URLs of servers "
        "of the same model that share the work (each gets `concurrency` requests, a dead one is left out).",
    )
    endpoints: list[LLMEndpoint] | None = Field(
        None, description="openai: instead of base_url, servers with their own concurrency or api_key_env."
    )
    api_key_env: str = Field("OPENAI_API_KEY", description="openai: the environment variable holding the key.")
    temperature: Annotated[float, Field(ge=0)] = Field(0.8, description="LLM sampling temperature.")
    top_p: Annotated[float, Field(gt=0, le=1)] = Field(0.9, description="LLM nucleus sampling mass.")
    max_new_tokens: Annotated[int, Field(gt=0)] = Field(100, description="Longest LLM answer, in tokens.")
    batch_size: Annotated[int, Field(gt=0)] = Field(16, description="transformers: prompts per generate call.")
    concurrency: Annotated[int, Field(gt=0)] = Field(
        8, description="openai: requests in flight per server (for vLLM: its --max-num-seqs, e.g. 256)."
    )
    timeout: Annotated[float, Field(gt=0)] = Field(60.0, description="openai: seconds per request.")
    max_retries: Annotated[int, Field(ge=0)] = Field(
        4,
        description="openai: retries on 5xx, 429, timeouts and lost connections; a server that fails this many "
        "times more in a row, after backoff, is given up, and the plan stops when every server is.",
    )
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="transformers: weights dtype; auto: float16 on CUDA, float32 on CPU."
    )

    @field_validator("base_url", mode="before")
    @classmethod
    def _url_or_urls(cls, value: Any) -> Any:
        # Checked before the union, whose own error would name a union member ("base_url.str").
        if value is not None and not isinstance(value, str | list):
            raise ValueError(f"must be a URL or a list of URLs (got {value!r})")
        if isinstance(value, list) and not all(isinstance(url, str) for url in value):
            raise ValueError(f"must be a list of URLs (got {value!r})")
        return value

    @field_validator("base_url")
    @classmethod
    def _base_urls(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list):
            if not value:
                raise ValueError("is an empty list: give at least one URL")
            _distinct_urls(value, "entry ")
        elif value is not None:
            _distinct_urls([value], "")
        return value

    @field_validator("endpoints")
    @classmethod
    def _distinct_endpoints(cls, value: list[LLMEndpoint] | None) -> list[LLMEndpoint] | None:
        if value is not None:
            if not value:
                raise ValueError("is an empty list: give at least one endpoint")
            _distinct_urls([endpoint.base_url for endpoint in value], "entry ")
        return value

    @model_validator(mode="after")
    def _model_named_when_needed(self) -> LLMSpec:
        if self.backend != "template" and not self.model:
            raise ValueError(f"backend {self.backend!r} needs a model")
        if self.backend == "openai" and not self.base_url and not self.endpoints:
            raise ValueError("backend 'openai' needs a base_url (or endpoints)")
        if self.base_url and self.endpoints:
            raise ValueError("give base_url or endpoints, not both")
        return self

    def endpoint_list(self) -> list[LLMEndpoint]:
        """The openai servers with every field filled in, in recipe order (empty for other backends)."""
        if self.endpoints:
            listed = self.endpoints
        else:
            urls = [self.base_url] if isinstance(self.base_url, str) else self.base_url or []
            listed = [LLMEndpoint(base_url=url) for url in urls]
        return [
            LLMEndpoint(
                base_url=endpoint.base_url,
                concurrency=endpoint.concurrency or self.concurrency,
                api_key_env=endpoint.api_key_env or self.api_key_env,
            )
            for endpoint in listed
        ]


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


class AspectVocabularies(StrictTypes):
    """Words the CD prompts combine; the template backend uses them as they are, an LLM as hints."""

    foreground: list[str] | None = Field(None, description="Foreground words; none: the curated list.")
    background: list[str] | None = Field(None, description="Background words; none: the curated list.")
    lighting: list[str] | None = Field(None, description="Lighting words; none: the curated list.")
    camera: list[str] | None = Field(None, description="Camera words; none: the curated list.")


class PromptsSpec(StrictTypes):
    llm: LLMSpec = Field(LLMSpec(), description="The language model that writes descriptions.")
    styles: Annotated[list[str], Field(min_length=1)] = Field(
        list(DEFAULT_STYLES), description="SD styles; replace to change the style list."
    )
    aspects: AspectVocabularies = Field(
        AspectVocabularies(), description="CD's word lists; a list left out keeps the curated one."
    )
    max_attempts: Annotated[int, Field(gt=0)] = Field(
        3, description="LLM tries per description before the template replaces it (counted)."
    )
    max_chars: Annotated[int, Field(gt=20)] = Field(300, description="Longest description kept.")
    cd_aspects: Literal["vocabulary", "llm"] = Field(
        "vocabulary",
        description="Where CD's foreground, background, lighting and camera aspects come from: vocabulary (the "
        "curated class-agnostic lists, or `aspects`), or llm (paper A: the LLM proposes each class's own plausible "
        "aspects, cached, cleaned, retried, and replaced by the vocabulary when it fails).",
    )
    aspects_per_list: Annotated[int, Field(ge=3, le=50)] = Field(
        10, description="cd_aspects llm: how many aspects of each kind the LLM is asked for per class."
    )


class LargestObjectSpec(StrictTypes):
    """Label each image by its largest object, as DA-Fusion labels COCO and PASCAL VOC for classification.

    COCO style (`objects`): the column holds the image's annotations, a struct of lists or a list of structs;
    the label is the `category` of the annotation with the largest `area` (the first one on a tie); images
    without annotations are left out. VOC style (`instance_mask` + `class_mask`): the largest instance by
    pixel count in the SegmentationObject mask, ignoring the lowest and the highest id present (background 0
    and the void border 255), and its class is the SegmentationClass value at the instance's first pixel,
    minus 1 (VOC's 1..20 -> labels 0..19).
    """

    objects: str | None = Field(None, description="COCO style: the column holding each image's annotations.")
    category: str = Field("category", description="COCO style: the annotation field naming its class.")
    area: str = Field("area", description="COCO style: the annotation field holding its area.")
    instance_mask: str | None = Field(None, description="VOC style: the SegmentationObject mask column.")
    class_mask: str | None = Field(None, description="VOC style: the SegmentationClass mask column.")

    @model_validator(mode="after")
    def _one_style(self) -> LargestObjectSpec:
        masks = (self.instance_mask is None, self.class_mask is None)
        if masks[0] != masks[1]:
            raise ValueError("give both instance_mask and class_mask (VOC style)")
        if (self.objects is None) == (self.instance_mask is None):
            raise ValueError("give objects (COCO style) or instance_mask and class_mask (VOC style), not both")
        return self


class RealImagesSpec(StrictTypes):
    """Real images of each class (for LAR scoring and augmentation-conditioning): a dataset or a folder."""

    dataset: str | None = Field(None, description="A `datasets` hub id or local path (load_dataset).")
    config: str | None = Field(None, description="The dataset's config name, when it has several.")
    folder: Path | None = Field(None, description="An image folder: <folder>/<wnid or class name>/*.jpg", strict=False)
    split: str = Field("train", description="The dataset split holding the real images.")
    image_column: str = Field("image", description="The column holding the images.")
    label_column: str = Field("label", description="The column holding the labels.")
    match: Literal["index", "name"] = Field(
        "index",
        description="index: the dataset's labels are this class set's labels; name: match label names, compared "
        "lowercased with '_' as a space (DA-Fusion's rule for Caltech101 folder names).",
    )
    label_from: LargestObjectSpec | None = Field(
        None, description="Label each image by its largest object (COCO, PASCAL VOC) instead of label_column."
    )

    @model_validator(mode="after")
    def _exactly_one_source(self) -> RealImagesSpec:
        if (self.dataset is None) == (self.folder is None):
            raise ValueError("give exactly one of dataset or folder")
        if self.label_from is not None and self.folder is not None:
            raise ValueError("label_from needs a dataset (an image folder has one class per directory)")
        return self


class LARSpec(StrictTypes):
    clip_model: str = Field(
        "ViT-B-32", description="open_clip model name, local-dir:<path>, hf-hub:<id>, or synthset-testing:tiny-clip."
    )
    clip_pretrained: str | None = Field("openai", description="open_clip pretrained tag (for a model name).")
    images_per_class: Annotated[int, Field(gt=0)] = Field(50, description="Real images scored per class (M).")
    batch_size: Annotated[int, Field(gt=0)] = Field(64, description="Images per CLIP forward pass.")
    candidates: Literal["wordnet", "llm", "both"] | None = Field(
        None,
        description="Where candidate meanings come from: wordnet (the class's own gloss and every synset sharing "
        "its name), llm (meanings the LLM lists, as paper A), or both. Default: both with an LLM, else wordnet. "
        "classes.parquet records each candidate's source and the winner's (lar_meaning_from).",
    )


class StorageSpec(StrictTypes):
    format: Literal["jpeg", "png", "webp"] = Field("jpeg", description="How each image is encoded.")
    quality: Annotated[int, Field(ge=1, le=100)] = Field(95, description="JPEG/WebP quality.")
    resize: Annotated[int, Field(gt=0)] | None = Field(
        None, description="Store images at this square size (e.g. generate at 512, store at 256)."
    )
    shard_size: Annotated[int, Field(gt=0)] = Field(
        1000, description="Images per Parquet shard: the unit of work a crash can lose."
    )
    row_group_size: Annotated[int, Field(gt=0)] = Field(100, description="Rows per Parquet row group.")

    def stored_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of an image generated at `width` x `height` as stored: the shorter side scaled to
        `resize` when set. The writer resizes to it, validation expects it, the plan sizes the layout by it."""
        if self.resize is None or min(width, height) == self.resize:
            return width, height
        scale = self.resize / min(width, height)
        return round(width * scale), round(height * scale)


NSFW_POLICIES = ("drop", "redraw", "keep")
DEFAULT_SAFETY_CHECKER = "CompVis/stable-diffusion-safety-checker"


class NearDuplicateSpec(StrictTypes):
    """Near-duplicates: an image whose CLIP image embedding is this close to an earlier one of its class."""

    threshold: Annotated[float, Field(gt=0, le=1)] = Field(
        0.95, description="Cosine similarity of CLIP image embeddings at or above which an image is a near-duplicate."
    )
    drop: bool = Field(False, description="Drop near-duplicates (the rows are recorded as dropped); else count them.")


class QualitySpec(StrictTypes):
    """The quality and safety gate: every generated image is scored before it is written, and the policy
    decides whether it is kept, drawn again with the sample's next seed, or dropped."""

    checker: str | None = Field(
        DEFAULT_SAFETY_CHECKER,
        description="NSFW checker: a diffusers StableDiffusionSafetyChecker (Hub id or local directory holding "
        "config.json, weights and preprocessor_config.json), synthset-testing:tiny-safety-checker, or null for "
        "no NSFW screening (push then needs --allow-unscreened).",
    )
    checker_revision: str | None = Field(None, description="Hub branch, tag or commit of the checker.")
    nsfw: Literal["drop", "redraw", "keep"] = Field(
        "redraw",
        description="An image the checker flags: redraw (next seed, up to max_redraws, then dropped), drop, or "
        "keep (published, with nsfw: true in its row).",
    )
    nsfw_adjustment: Annotated[float, Field(ge=-1, le=1)] = Field(
        0.0,
        description="Added to every concept score of the checker (its own `adjustment`): > 0 flags more images, "
        "< 0 fewer.",
    )
    clip_model: str | None = Field(
        "ViT-B-32",
        description="open_clip model for the per-image CLIP score (image vs 'a photo of a <class>') and "
        "near-duplicates: a name (with clip_pretrained), hf-hub:<id>, local-dir:<path>, a directory, "
        "synthset-testing:tiny-clip, or null.",
    )
    clip_pretrained: str | None = Field("openai", description="open_clip pretrained tag (for a model name).")
    min_clip_score: Annotated[float, Field(ge=0, le=100)] | None = Field(
        None, description="An image scoring below is drawn again (up to max_redraws); then see low_clip."
    )
    low_clip: Literal["keep", "drop"] = Field(
        "keep",
        description="An image still below min_clip_score after max_redraws: keep it (the last attempt) or drop it.",
    )
    max_redraws: Annotated[int, Field(ge=0, le=100)] = Field(
        3, description="Further seeds a sample may try; attempt k uses the seed derived from (seed, sample_id, k)."
    )
    near_duplicates: NearDuplicateSpec | None = Field(
        None, description="Count (or drop) near-duplicates among a class's images within a shard."
    )

    @model_validator(mode="after")
    def _each_check_has_its_model(self) -> QualitySpec:
        if self.checker is None and self.clip_model is None:
            raise ValueError("names neither a checker nor a clip_model: leave quality out to screen nothing")
        if self.clip_model is None and self.min_clip_score is not None:
            raise ValueError("min_clip_score needs a clip_model")
        if self.clip_model is None and self.near_duplicates is not None:
            raise ValueError("near_duplicates needs a clip_model (they are judged on CLIP image embeddings)")
        # By value, not by which keys were given: the lock writes every default out and is read back.
        if self.checker is None and (self.nsfw != "redraw" or self.nsfw_adjustment != 0):
            raise ValueError("nsfw and nsfw_adjustment need a checker")
        if self.low_clip != "keep" and self.min_clip_score is None:
            raise ValueError("low_clip needs min_clip_score")
        return self


class Recipe(StrictTypes):
    name: str = Field(description="The run's name: its directory is <output_dir>/<name>.")
    builder: Literal["synth_imagenet", "synth_imagenet_lt", "synth_fewshot", "synth_classes"] = Field(
        "synth_imagenet",
        description="The dataset family, which fixes the published config names. Default: synth_imagenet for "
        "imagenet-1k, synth_classes (strategy-named configs over any class list) for every other class set.",
    )
    seed: int = Field(0, description="The run's seed: every image's seed derives from it and its sample_id.")
    license: str | None = Field(
        None,
        description="Hub license id of the dataset (e.g. creativeml-openrail-m); needed when the generator's "
        "model card does not state one.",
    )
    output_dir: Path = Field(
        Path("runs"),
        description="The run directory is <output_dir>/<name> (a local directory; for an object store, "
        "`synthset plan --run-dir s3://bucket/runs/<name>`).",
        strict=False,
    )
    classes: ClassSetSpec = Field(ClassSetSpec(), description="Which classes to generate.")
    configs: Annotated[list[ConfigSpec], Field(min_length=1)] = Field(
        description="The dataset configs to generate and publish."
    )
    generator: GeneratorSpec = Field(description="The diffusion model and how it samples.")
    storage: StorageSpec = Field(StorageSpec(), description="How images and shards are written.")
    prompts: PromptsSpec = Field(PromptsSpec(), description="How prompts are written.")
    lar: LARSpec = Field(LARSpec(), description="Label Ambiguity Resolution (paper A): picking each class's meaning.")
    real_images: RealImagesSpec | None = Field(
        None, description="Real images of each class, for LAR scoring, shots and conditioning."
    )
    quality: QualitySpec | None = Field(
        None, description="Score every image before it is written (CLIP score, NSFW checker, near-duplicates)."
    )

    @model_validator(mode="before")
    @classmethod
    def _default_builder_fits_the_classes(cls, data: Any) -> Any:
        """Without `builder:`, ImageNet-1k is synth_imagenet and any other class list synth_classes."""
        if not isinstance(data, dict) or "builder" in data:
            return data
        classes = data.get("classes")
        imagenet = not isinstance(classes, dict) or (
            classes.get("set", "imagenet-1k") == "imagenet-1k" and classes.get("dataset") is None
        )
        return {**data, "builder": "synth_imagenet" if imagenet else "synth_classes"}

    @field_validator("output_dir", mode="before")
    @classmethod
    def _output_dir_is_local(cls, value: Any) -> Any:
        if isinstance(value, str) and re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", value):
            raise ValueError(
                f"{value!r} is a URL; output_dir is a local directory (for an object-store run: "
                f"synthset plan RECIPE --run-dir {value.rstrip('/')}/<name>)"
            )
        return value

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
    def _llm_named_when_used(self) -> Recipe:
        no_llm = self.prompts.llm.backend == "template"
        if no_llm and self.prompts.cd_aspects == "llm":
            raise ValueError("prompts.cd_aspects: llm needs prompts.llm (a transformers or openai backend)")
        if no_llm and self.lar.candidates in ("llm", "both"):
            raise ValueError(
                f"lar.candidates: {self.lar.candidates} needs prompts.llm (a transformers or openai backend)"
            )
        return self

    def lar_candidates(self) -> str:
        """wordnet, llm or both: the recipe's choice, or both when an LLM is configured."""
        if self.lar.candidates is not None:
            return self.lar.candidates
        return "wordnet" if self.prompts.llm.backend == "template" else "both"

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

    @property
    def screened(self) -> bool:
        """Whether every image of the run passes an NSFW checker before it is written."""
        return self.quality is not None and self.quality.checker is not None

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
        raise RecipeError(f"{source}: a recipe must be a YAML mapping, got {type(data).__name__}")
    try:
        return Recipe.model_validate(data)
    except ValidationError as error:
        raise RecipeError(describe_validation_error(error, source)) from None


def read_text_file(path: Path, what: str) -> str:
    """A text file's contents; a missing or binary file is one `RecipeError` line naming it."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(f"{path}: no such {what} file") from None
    except IsADirectoryError:
        hint = " (a run directory: its recipe is recipe.lock.yaml)" if (path / "recipe.lock.yaml").is_file() else ""
        raise RecipeError(f"{path}: is a directory, not a {what} file{hint}") from None
    except UnicodeDecodeError as error:  # a binary file given by mistake
        raise RecipeError(f"{path}: not a {what} file: byte {error.start} is not UTF-8 text") from None


def read_yaml_file(path: Path, what: str) -> Any:
    """A YAML file's data; a missing file or a syntax error is one `SynthsetError` line naming file and line."""
    text = read_text_file(path, what)
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader that refuses repeated keys
    except yaml.YAMLError as error:
        raise RecipeError(f"{path}{_yaml_where(error)}: not valid YAML ({_yaml_problem(error)})") from None


def _yaml_where(error: yaml.YAMLError) -> str:
    """`: line N` where the parser stopped, or nothing when it does not say (a reader error)."""
    mark = getattr(error, "problem_mark", None)
    return f": line {mark.line + 1}" if mark is not None else ""


def _yaml_problem(error: yaml.YAMLError) -> str:
    problem = getattr(error, "problem", None) or str(error)
    return " ".join(problem.split())  # PyYAML's reader errors span two lines


MERGE_TAG = "tag:yaml.org,2002:merge"


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader, except that a key written twice in one mapping is an error: YAML 1.2 says
    keys are unique, and PyYAML silently keeps the last, so a recipe's second `configs:` would win."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:  # `<<: *base`: a key given here overrides the merged one, as meant
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue  # PyYAML refuses an unhashable key itself
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is written twice in one mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file; every problem is one `SynthsetError` line naming file and key."""
    return recipe_from_dict(read_yaml_file(Path(path), "recipe"), str(path))


def recipe_json_schema() -> dict[str, Any]:
    """The recipe's JSON Schema, from the pydantic models: editors validate and complete recipes with it.

    `synthset schema recipe` prints it; docs/schema/recipe.schema.json is this, kept equal by a test.
    """
    schema = Recipe.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "synthset recipe"
    return schema


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """Plain data for YAML: paths as strings, every default written out so the lock is complete."""
    return recipe.model_dump(mode="json")
