"""Will a recipe's batch fit a GPU? A formula for the generator's peak memory, and what `plan` says about it.

Peak memory of one pipeline call (see README "Memory planning"):

    peak = weights + max(text+UNet phase, VAE phase) + context
    weights             = parameters loaded (no safety checker) x bytes per parameter of the dtype
    text+UNet phase     = (unet_fixed + unet_per_image x batch) x scale x (dtype bytes / 2)
    VAE phase           = (vae_fixed + vae_per_image x images) x scale x (VAE dtype bytes / 2),
                          images = 1 with vae_slicing, else batch
                          (+ the VAE's weights again in float32 when it upcasts: SDXL in float16)
    scale               = (width x height) / native pixels   (activations grow with pixels: conv maps
                          and, with SDPA's memory-efficient kernels, attention too)
    context             = 1 GiB for the CUDA context, cuBLAS/cuDNN workspaces and allocator slack

The two phases do not overlap (the UNet's activations are freed before the VAE decodes), so the larger
one counts. The per-image and fixed figures (bytes at the native size with 2-byte activations) are
measured, not guessed: `benchmarks/replica_memory.py` runs each full-size replica at batch 1, 4 and 8 in
bfloat16 on a CPU and fits a line per phase (benchmarks/README.md has the table, the residuals, and two
checks of the formula's scaling rules against measurements it was not fitted to: float32, and 768 px).
A model synthset does not know gets the largest per-pixel figures of the known ones. The figures of each
known model live in its model family's module (`synthset.generation.families`). The GPU check
(`python -m benchmarks.gpu`) prints measured GPU peaks beside this formula's.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from synthset.errors import SynthsetError
from synthset.generation.families import family_for, known_memory
from synthset.generation.families.base import GIB, ModelMemory

if TYPE_CHECKING:
    from synthset.recipe import GeneratorSpec

CONTEXT_BYTES = 1 * GIB
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
# Hub id -> figures measured on its replica; each model family's module holds its own (families/*.py).
KNOWN_MODELS: dict[str, ModelMemory] = known_memory()


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    activations: int
    phase: str  # "UNet" or "VAE decode": the phase that peaks
    context: int = CONTEXT_BYTES

    @property
    def total(self) -> int:
        return self.weights + self.activations + self.context


def estimate(model: ModelMemory, spec: GeneratorSpec, dtype: str, batch: int | None = None) -> MemoryEstimate:
    """Peak bytes of one pipeline call of `batch` (default: the recipe's) images, by the formula above."""
    batch = spec.batch_size if batch is None else batch
    size = DTYPE_BYTES[dtype]
    scale = spec.width * spec.height / model.native_size**2
    unet = (model.unet_fixed + model.unet_per_image * batch) * scale * size / 2
    upcast = model.vae_upcast and dtype == "float16"
    vae_size = 4 if upcast else size
    images = 1 if spec.vae_slicing else batch
    vae = (model.vae_fixed + model.vae_per_image * images) * scale * vae_size / 2
    if upcast:
        vae += model.vae_parameters * 4  # the float32 copy of the VAE diffusers makes to decode
    phase, activations = ("VAE decode", vae) if vae > unet else ("UNet", unet)
    return MemoryEstimate(model.parameters * size, int(activations), phase)


def largest_batch(model: ModelMemory, spec: GeneratorSpec, dtype: str, budget: int, limit: int = 4096) -> int:
    """The largest batch size whose estimate fits `budget` bytes (0 when not even one image does)."""
    fits = [b for b in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, limit) if b <= limit]
    best = 0
    for batch in fits:
        if estimate(model, spec, dtype, batch).total > budget:
            break
        best = batch
    return best


_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(GB|GiB|G|MB|MiB|M|TB|TiB)?\s*$", re.IGNORECASE)
_UNITS = {"gb": 10**9, "g": 10**9, "gib": GIB, "mb": 10**6, "m": 10**6, "mib": 2**20, "tb": 10**12, "tib": 2**40}


def parse_memory(text: str) -> int:
    """`80GB` -> 80e9 bytes (GB/MB/TB decimal, GiB/MiB/TiB binary; a bare number is GB)."""
    match = _SIZE.match(text)
    if not match:
        raise SynthsetError(f"--gpu-memory: {text!r} is not a size such as 80GB, 24GiB or 16000MB")
    return int(float(match.group(1)) * _UNITS[(match.group(2) or "GB").lower()])


def _safetensors_parameters(path: Path) -> int:
    """Parameters in a safetensors file, from its header alone (no weights read)."""
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    total = 0
    for name, entry in header.items():
        if name != "__metadata__":
            count = 1
            for dim in entry["shape"]:
                count *= dim
            total += count
    return total


def local_parameters(pipeline_dir: Path) -> tuple[int, int]:
    """(parameters synthset loads, VAE parameters) of a local diffusers pipeline, from its safetensors."""
    index = json.loads((pipeline_dir / "model_index.json").read_text("utf-8"))
    total = vae = 0
    for component, value in index.items():
        if not isinstance(value, list) or value[1] is None or component == "safety_checker":
            continue
        files = sorted((pipeline_dir / component).glob("*.safetensors"))
        plain = [f for f in files if f.name.count(".") == 1] or files[:1]  # not the fp16 variant too
        count = sum(_safetensors_parameters(f) for f in plain)
        total += count
        vae += count if component == "vae" else 0
    return total, vae


def model_memory(model: str, load_path: str | None) -> tuple[ModelMemory | None, str]:
    """The formula's figures for the recipe's model, and where they came from."""
    if model in KNOWN_MODELS:
        return KNOWN_MODELS[model], "measured on its replica"
    if load_path is None or not (Path(load_path) / "model_index.json").is_file():
        return None, f"no memory figures for {model!r} (not a known model, and no local copy to count)"
    parameters, vae = local_parameters(Path(load_path))
    index = json.loads((Path(load_path) / "model_index.json").read_text("utf-8"))
    vae_config = Path(load_path) / "vae" / "config.json"
    family = family_for(index.get("_class_name"))
    # Only some families (SDXL) upcast the VAE (its config's force_upcast, default true) to decode in float16.
    upcast = (
        family.vae_upcasts
        and vae_config.is_file()
        and bool(json.loads(vae_config.read_text("utf-8")).get("force_upcast", True))
    )
    denoiser_config = Path(load_path) / family.denoiser / "config.json"
    sample = json.loads(denoiser_config.read_text("utf-8")).get("sample_size", 64) if denoiser_config.is_file() else 64
    native = (sample if isinstance(sample, int) else sample[0]) * 8
    pixels = native**2

    # Unknown architecture: the largest per-pixel activation figures of the measured models (conservative).
    def largest(field: str) -> float:
        return max(getattr(m, field) / m.native_size**2 for m in KNOWN_MODELS.values()) * pixels

    figures = ModelMemory(parameters, vae, native, largest("unet_per_image"), largest("vae_per_image"), upcast,
                          largest("unet_fixed"), largest("vae_fixed"))  # fmt: skip
    return (
        figures,
        f"{index.get('_class_name', 'pipeline')} counted from its files; activations: the largest known per pixel",
    )


def gpu_dtype(spec: GeneratorSpec) -> str:
    """The dtype a GPU run uses: `auto` is float16 there."""
    return "float16" if spec.dtype == "auto" else spec.dtype


def memory_report(model: str, load_path: str | None, spec: GeneratorSpec, budget: int, budget_text: str) -> list[str]:
    """The lines `synthset plan --gpu-memory` prints: the estimate, and a warning when it does not fit."""
    figures, source = model_memory(model, load_path)
    if figures is None:
        return [f"memory: {source}; cannot check --gpu-memory {budget_text}"]
    dtype = gpu_dtype(spec)
    found = estimate(figures, spec, dtype)
    line = (
        f"memory: ~{found.total / GIB:.1f} GiB per GPU at batch size {spec.batch_size}, {spec.width}x{spec.height}, "
        f"{dtype}: weights {found.weights / GIB:.1f} + {found.phase} activations {found.activations / GIB:.1f} + "
        f"context {found.context / GIB:.1f} GiB ({source}; formula: README 'Memory planning')"
    )
    if found.total <= budget:
        return [line + f"; fits --gpu-memory {budget_text}"]
    best = largest_batch(figures, spec, dtype, budget)
    advice = f"batch_size: {best} fits" if best else "not even batch size 1 fits"
    if not spec.vae_slicing and found.phase == "VAE decode":
        sliced = estimate(figures, spec.model_copy(update={"vae_slicing": True}), dtype)
        advice += f"; with vae_slicing: true this batch needs ~{sliced.total / GIB:.1f} GiB"
    return [line, f"warning: generator.batch_size {spec.batch_size} would not fit --gpu-memory {budget_text} "
                  f"({budget / GIB:.1f} GiB): {advice}"]  # fmt: skip
