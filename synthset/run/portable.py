"""What of a run may leave the publisher's machine: paths made relative, nothing of their file system.

The lock records the recipe as given, and a recipe names paths: `output_dir`, a class list file, a local
model directory (`local-dir:/...`), a real-image folder. On the publisher's disk they are often absolute
(`/home/<user>/runs`), and the card and `recipe.lock.yaml` go to the Hub. `portable` rewrites every
absolute path in such data: one inside the run becomes relative to the run; any other becomes its last
component (`/home/u/lists/birds.yaml` -> `birds.yaml`), which is what a reader who downloads the
dataset has to put beside the recipe anyway. Nothing else changes, so the published lock still reads
as the run's lock.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from synthset.run.lock import Lock
    from synthset.run.paths import RunDir

PATH_PREFIXES = ("local-dir:", "file://")  # model references that carry a path after a scheme


def portable_path(text: str, run_root: Path) -> str:
    """`text` with an absolute path in it made relative to the run (or cut to its last component)."""
    prefix = next((p for p in PATH_PREFIXES if text.startswith(p)), "")
    path = text[len(prefix) :]
    if not os.path.isabs(path):
        return text
    try:
        relative = Path(path).resolve().relative_to(run_root.resolve()).as_posix()
    except ValueError:
        relative = PurePosixPath(path.replace(os.sep, "/").rstrip("/")).name or "."
    return prefix + relative


def portable(data: Any, run_root: Path) -> Any:
    """A copy of plain data (lock, recipe) with every absolute path rewritten by `portable_path`."""
    if isinstance(data, dict):
        return {key: portable(value, run_root) for key, value in data.items()}
    if isinstance(data, list):
        return [portable(value, run_root) for value in data]
    if isinstance(data, str):
        return portable_path(data, run_root)
    return data


def published_lock_text(run: RunDir) -> str:
    """`recipe.lock.yaml` as it is published: the run's lock (already read and checked by the caller) with
    its paths made portable."""
    import yaml

    data = yaml.safe_load(run.lock_file.read_text(encoding="utf-8"))
    return yaml.safe_dump(portable(data, run.root), sort_keys=False, allow_unicode=True)


def portable_lock(lock: Lock, run_root: Path) -> Lock:
    """The lock as the card shows it: the recipe, the model's load path and the aux models made portable."""
    from synthset.models import ResolvedModel
    from synthset.recipe import recipe_from_dict, recipe_to_dict

    recipe = recipe_from_dict(portable(recipe_to_dict(lock.recipe), run_root), "recipe.lock.yaml")
    model = ResolvedModel(portable_path(lock.model.load_path, run_root), lock.model.revision, lock.model.source)
    return dataclasses.replace(lock, recipe=recipe, model=model, aux_models=portable(lock.aux_models, run_root))
