"""Model references: what a recipe's model string means, and which exact version it pins.

A recipe names a model in one of three ways, for the generator, the LAR/quality CLIP and the LLM alike:
- a Hub id (`stabilityai/stable-diffusion-2-1-unclip`), pinned to the commit the Hub reports;
- a local directory saved with `save_pretrained` (or open_clip's local-dir layout), pinned by a hash of
  its files, since it has no commit;
- `synthset-testing:<name>`, one of the tiny offline models that `synthset tiny-models` (or the test
  suite) builds under `$SYNTHSET_HOME/models/<name>`: an ordinary local directory from here on.

Offline test mode: when `SYNTHSET_TEST_REPLICAS` is `full` or `small` (set by the test suite and
`make smoke-full`, never by a user's run), a Hub id of a model synthset has a replica of (same configs,
random weights; see `synthset.testing.replicas`) resolves to that replica's directory instead of the
Hub, so a recipe naming `stabilityai/stable-diffusion-xl-base-1.0` runs end to end without a network.
Unset, a Hub id always means the Hub.

This module only resolves: it never builds a tiny model (that is `synthset.testing`, which the product
does not import) and never loads weights. A reference that cannot be resolved is one `SynthsetError`
line naming the recipe field.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from synthset.errors import ModelError, first_line
from synthset.fsutil import sha256_tree, tree_files, write_text_atomic

TESTING_SCHEME = "synthset-testing:"
HUB_ID_PATTERN = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

REPLICA_ENV = "SYNTHSET_TEST_REPLICAS"  # offline test mode's switch (its value goes to the resolver)
RESOLVER_ENV = "SYNTHSET_TEST_RESOLVER"  # `module:function` resolving a model string in offline test mode
# (model string, REPLICA_ENV's value, recipe field) -> the directory that stands in for it, or None
ReplicaResolver = Callable[[str, str, str], "Path | None"]


def synthset_home() -> Path:
    """$SYNTHSET_HOME if set, else ~/.cache/synthset: where the tiny offline models live."""
    env = os.environ.get("SYNTHSET_HOME")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "synthset"


def tiny_model_dir(name: str, home: Path | None = None) -> Path:
    """Where the tiny model `name` is saved (whether or not it has been built)."""
    return (home if home is not None else synthset_home()) / "models" / name


def replica_resolver() -> ReplicaResolver:
    """The function RESOLVER_ENV names: the test package's hook into model resolution.

    Raises:
        ModelError: RESOLVER_ENV is unset or names nothing importable.
    """
    import importlib

    target = os.environ.get(RESOLVER_ENV, "")
    module, _, name = target.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        raise ModelError(
            f"{REPLICA_ENV} is set but {RESOLVER_ENV}={target!r} names no resolver (module:function)"
        ) from None


def replica_dir(model: str, field_name: str) -> Path | None:
    """In offline test mode, the directory the test package's resolver puts in place of `model`; else None."""
    mode = os.environ.get(REPLICA_ENV, "")
    if not mode:
        return None
    return replica_resolver()(model, mode, field_name)


@dataclass(frozen=True)
class ResolvedModel:
    """Where the weights are loaded from and which exact version they are."""

    load_path: str  # what from_pretrained receives: a hub id or a local directory
    revision: str  # hub commit hash, or "sha256:<tree hash>" for a local directory
    source: str  # "hub" | "local"

    @property
    def hub_revision(self) -> str | None:
        """The revision to pass to from_pretrained: the pinned commit for hub models, none for local ones."""
        return self.revision if self.source == "hub" else None


def local_model_dir(model: str, field_name: str) -> Path | None:
    """The local directory a model string names (a path or a tiny test model), or None for a Hub id.

    A tiny model that was never built is one line telling how to build it. In offline test mode a Hub id
    with a replica is that replica's directory.
    """
    replica = replica_dir(model, field_name)
    if replica is not None:
        return replica
    if model.startswith(TESTING_SCHEME):
        name = model.removeprefix(TESTING_SCHEME)
        path = tiny_model_dir(name)
        if not path.is_dir():
            raise ModelError(
                f"{field_name}: tiny model {model!r} is not built in {path.parent} "
                "(run `synthset tiny-models`, or set SYNTHSET_HOME to where they are)"
            )
        return path
    path = Path(model).expanduser()
    if path.exists() or not HUB_ID_PATTERN.match(model):
        return path
    return None


def _hub_commit(model: str, revision: str | None, field_name: str) -> str:
    from huggingface_hub import HfApi

    try:
        sha = HfApi().model_info(model, revision=revision).sha
    except Exception as error:  # network, auth, 404: all end the same way for the user
        raise ModelError(f"{field_name}: cannot resolve {model!r} on the Hub: {first_line(error)}") from None
    if sha is None:  # the Hub always answers a commit; a server that does not is not one we can pin
        raise ModelError(f"{field_name}: the Hub gave no commit for {model!r} at {revision or 'main'}")
    return sha


def resolve_pipeline(model: str, revision: str | None, field_name: str = "generator.model") -> ResolvedModel:
    """Pin a diffusers pipeline reference; a missing path or unknown repo is a one-line error."""
    local = local_model_dir(model, field_name)
    if local is None:
        return ResolvedModel(model, _hub_commit(model, revision, field_name), "hub")
    if not (local / "model_index.json").is_file():
        what = "no such model directory" if not local.exists() else "not a diffusers pipeline directory"
        raise ModelError(f"{field_name}: {what}: {str(local)!r} (model_index.json missing)")
    check_pipeline_components(local, field_name)
    return ResolvedModel(str(local.resolve()), "sha256:" + sha256_tree(local), "local")


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".msgpack", ".h5")


def check_pipeline_components(root: Path, field_name: str) -> None:
    """Every component `model_index.json` names must be there: a folder with its config, and weights
    for a model (a folder with a config.json), so a broken checkout stops at plan, not deep in generate."""
    try:
        index = json.loads((root / "model_index.json").read_text(encoding="utf-8"))
    except ValueError as error:
        raise ModelError(f"{field_name}: {root / 'model_index.json'}: not valid JSON ({error})") from None
    for name, spec in index.items():
        if name.startswith("_") or not isinstance(spec, list) or spec[0] is None:
            continue  # metadata (_class_name, _diffusers_version) or an optional component left out
        folder = root / name
        if not folder.is_dir() or not any(folder.iterdir()):
            raise ModelError(f"{field_name}: component {name!r} ({spec[1]}) is missing: no {str(folder)!r}")
        if (folder / "config.json").is_file() and not any(
            p.suffix in WEIGHT_SUFFIXES or p.name.endswith(".index.json") for p in folder.iterdir()
        ):
            raise ModelError(f"{field_name}: component {name!r} ({spec[1]}) has no weights in {str(folder)!r}")


def pin_model(model: str, revision: str | None, field_name: str) -> dict[str, str]:
    """A model other than the generator (CLIP, LLM) pinned like the generator: tree hash or hub commit."""
    local = local_model_dir(model, field_name)
    if local is None:
        return {"model": model, "revision": _hub_commit(model, revision, field_name)}
    if not local.is_dir():
        raise ModelError(f"{field_name}: no such model directory: {str(local)!r}")
    return {"model": model, "path": str(local.resolve()), "revision": "sha256:" + sha256_tree(local)}


def transformers_location(model: str, field_name: str) -> tuple[str, bool]:
    """`(what from_pretrained receives, whether it is a local directory)` for a transformers model string.

    A local directory must hold a config.json; anything else is a Hub id, checked when it is loaded.
    """
    local = local_model_dir(model, field_name)
    if local is None:
        return model, False
    if not local.is_dir():
        raise ModelError(f"{field_name}: no such model directory: {str(local)!r}")
    if not (local / "config.json").is_file():
        raise ModelError(f"{field_name}: not a transformers model directory: {str(local)!r} (no config.json)")
    return str(local), True


def open_clip_reference(model: str, pretrained: str | None, field_name: str) -> tuple[str, str | None, Path | None]:
    """`(name for open_clip, pretrained tag, local directory)` for a CLIP model string.

    Tiny test models and plain directories become open_clip's `local-dir:<path>`; `hf-hub:` ids and
    `local-dir:` pass through; a bare architecture name keeps its pretrained tag.
    """
    if model.startswith(TESTING_SCHEME):
        local = local_model_dir(model, field_name)
        return f"local-dir:{local}", None, local
    if model.startswith("local-dir:"):
        return model, None, Path(model.removeprefix("local-dir:"))
    if model.startswith("hf-hub:"):
        return model, None, None
    path = Path(model).expanduser()
    if path.is_dir():
        return f"local-dir:{path.resolve()}", None, path.resolve()
    return model, pretrained, None


def open_clip_revision(name: str, local: Path | None, pretrained: str | None) -> str:
    """A pin for an open_clip model: a tree hash for a local dir, the Hub commit for hf-hub:, else the tag."""
    if local is not None:
        return "sha256:" + sha256_tree(local)
    if name.startswith("hf-hub:"):
        return _hub_commit(name.removeprefix("hf-hub:"), None, "clip model")
    return f"open_clip:{pretrained}"


def _stat_index(root: Path) -> dict[str, list[int]]:
    """relative path -> [size, mtime_ns] of every file of a model directory: a cheap fingerprint."""
    index = {}
    for path in tree_files(root):
        stat = path.stat()
        index[path.relative_to(root).as_posix()] = [stat.st_size, stat.st_mtime_ns]
    return index


def check_local_model(path: Path, revision: str, cache_dir: Path, field_name: str) -> None:
    """A local model directory must still hold the files the plan pinned (`sha256:<tree hash>`).

    Hashing gigabytes of weights at every start is slow, so a size+mtime index of the files is kept in
    the run's cache with the hash it was checked against: while the index matches, the files are taken
    as unchanged; when it differs (a file edited, added or removed), the tree is hashed again.
    """
    if not path.is_dir():
        raise ModelError(
            f"{field_name}: the model directory {str(path)!r} that the plan pinned is gone; restore it, "
            "or plan the run again"
        )
    index_file = cache_dir / "model-index.json"
    current = _stat_index(path)
    try:
        cached = json.loads(index_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cached = {}
    if cached.get("path") == str(path) and cached.get("revision") == revision and cached.get("files") == current:
        return
    actual = "sha256:" + sha256_tree(path)
    if actual != revision:
        raise ModelError(
            f"{field_name}: the files of {str(path)!r} changed after planning (pinned {revision[:19]}..., "
            f"now {actual[:19]}...); restore them, or plan the run again under a new name"
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(index_file, json.dumps({"path": str(path), "revision": revision, "files": current}))
