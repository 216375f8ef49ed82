"""Loading a pipeline into no more host memory than its weights need (issue 29).

Two costs were measured on SDXL's full-size replica in float32 on this CPU (fp16 files, as the Hub's
fp16 variants): neither is in the weights themselves, both are in how they are loaded.

- **Cast on load.** diffusers and transformers load a component's safetensors file memory-mapped and
  cast each tensor to the requested dtype, so until the component is done its file's pages are resident
  beside its cast weights: SDXL's UNet peaks at 14.4 GiB above the imports for 9.6 GiB of float32 weights
  (+4.8 GiB, the fp16 file). diffusers loads a pipeline's components in `model_index.json` order, the UNet
  after both text encoders, so that transient lands on top of everything else. Loading the largest
  component first (`preload_largest_component`) puts it on top of nothing.
- **Freed heap kept.** Giving each weight fresh memory (`diffusion.copy_module_to_aligned_memory`) frees
  the old tensors; glibc keeps freed chunks that lie below the heap's top mapped, so after the copy the
  process held 3.05 GiB more than SDXL's UNet weights (13.36 vs 10.31 GiB RSS) until `malloc_trim`
  (`release_freed_memory`). That memory is never used again by the large activations of a pipeline call
  (glibc maps those separately), so it stayed on top of the VAE decode's peak.
"""

from __future__ import annotations

import ctypes
import importlib
from pathlib import Path
from typing import Any

WEIGHT_SUFFIXES = (".safetensors", ".bin")


def release_freed_memory() -> None:
    """Hand the heap memory already freed back to the OS (glibc's `malloc_trim`; a no-op elsewhere)."""
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)  # the C library this process already runs on
    if trim is not None:
        trim(0)


def component_file_bytes(folder: Path, model_index: dict[str, Any], skip: set[str]) -> dict[str, int]:
    """Bytes of weight files per model component of a local pipeline (diffusers or transformers classes)."""
    sizes = {}
    for name, value in model_index.items():
        if name in skip or not (isinstance(value, list) and len(value) == 2 and (folder / name).is_dir()):
            continue
        if value[0] in ("diffusers", "transformers") and value[1] is not None:
            files = [f for f in (folder / name).iterdir() if f.name.endswith(WEIGHT_SUFFIXES)]
            if files:
                sizes[name] = sum(f.stat().st_size for f in files)
    return sizes


def preload_largest_component(
    load_path: str, model_index: dict[str, Any], dtype: Any, skip: set[str]
) -> dict[str, Any]:
    """{name: model} for the local pipeline's largest component, loaded as `from_pretrained` of the pipeline
    would load it (the same class and dtype, so the same weights); {} for a Hub id, whose files are not on
    disk until diffusers fetches them, or a pipeline without model files. Pass it on to the pipeline's
    `from_pretrained`, which then loads the rest around it.

    Args:
        load_path: what the pipeline's `from_pretrained` receives.
        model_index: the pipeline's `model_index.json`.
        dtype: the torch dtype the pipeline is loaded in.
        skip: components the caller passes itself (e.g. `safety_checker=None`).

    Returns:
        The preloaded component by name, or {}.
    """
    folder = Path(load_path)
    if not folder.is_dir():
        return {}
    sizes = component_file_bytes(folder, model_index, skip)
    if not sizes:
        return {}
    name = max(sizes, key=lambda key: sizes[key])
    library, class_name = model_index[name]
    model_class = getattr(importlib.import_module(library), class_name)
    dtype_key = "torch_dtype" if library == "diffusers" else "dtype"  # as diffusers' load_sub_model passes it
    return {name: model_class.from_pretrained(folder / name, **{dtype_key: dtype})}
