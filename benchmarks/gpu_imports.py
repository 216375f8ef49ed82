"""What the GPU check imports: found by reading the code (for the bundle's list), then proved by importing it.

`third_party_imports()` walks `benchmarks.gpu` and every first-party module it reaches (synthset's and the
benchmarks' own), with the AST: every `import`, function-level ones included, since the check's lazy imports
(diffusers, torch) are the ones that matter, but not `if TYPE_CHECKING:` blocks. The one exception is
`MODULE_LEVEL_ONLY`: modules the check takes a class or two from, whose functions (and their lazy imports)
serve other benchmarks. The result names the third-party modules, each with the first-party modules that
import it; `tests/test_gpu_bundle.py` checks that each is in the bundle or in the GPU image.

`python -m benchmarks.gpu_imports` (run by `benchmarks/gpu_run.sh`, with the bundle first on PYTHONPATH) then
imports all of them, plus the classes the replicas' `model_index.json` files name (diffusers and
transformers resolve those lazily, so their own imports only happen then). With `--origins` (the dry run
here) it also says where each loaded top-level module came from and fails on any that came from this
machine's site-packages while its distribution is not in the GPU image's list: there, it would be missing.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIRST_PARTY = ("synthset", "benchmarks")
ENTRY = "benchmarks.gpu"
MODULE_LEVEL_ONLY = {
    "benchmarks.common": "gpu.py takes Context and Row from it; its functions (plan_run, ...) run other benches",
    "synthset": "its PEP 562 __getattr__ loads synthset.api for `synthset.plan` & co.; the check uses submodules",
    "synthset.generation.families.unclip": "the check reads its memory figures and call inputs; `conditioner()`'s "
    "lazy import (augcond's real-image conditioning: datasets, torchvision) serves augcond runs, not made by it",
}
# Imported on the check's path by a library rather than by our code: diffusers imports xformers.ops when a
# row asks for attention="xformers" (`enable_xformers_memory_efficient_attention`).
OPTIONAL_MODULES = {"xformers": "the xformers rows", "xformers.ops": "the xformers rows"}


def module_path(module: str, root: Path = REPO) -> Path | None:
    """The source file of a first-party module (a package's __init__.py), or None if there is none."""
    path = root.joinpath(*module.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(test)


def _nodes(tree: ast.Module, module_level_only: bool) -> Iterator[ast.AST]:
    """Every node that runs (TYPE_CHECKING blocks left out); only top-level statements if asked."""
    todo: list[ast.AST] = list(tree.body)
    while todo:
        node = todo.pop()
        if _is_type_checking(node):
            continue
        yield node
        if not module_level_only or isinstance(node, ast.If | ast.Try):
            todo.extend(ast.iter_child_nodes(node))


def imported_names(module: str, path: Path) -> Iterator[str]:
    """Dotted names an import in `module` asks for: `from a.b import c` gives a.b and a.b.c (c may be a module)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in _nodes(ast.parse(path.read_text()), module in MODULE_LEVEL_ONLY):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def walk(entry: str = ENTRY, root: Path = REPO) -> tuple[set[str], dict[str, set[str]]]:
    """(first-party modules reached, third-party dotted name -> first-party modules importing it)."""
    seen: set[str] = set()
    third: dict[str, set[str]] = {}
    todo = [entry]
    while todo:
        for module in _parents(todo.pop()):
            path = module_path(module, root)
            if module in seen or path is None:
                continue
            seen.add(module)
            for name in imported_names(module, path):
                top = name.split(".")[0]
                if top in FIRST_PARTY:
                    todo.append(name)
                elif top not in sys.stdlib_module_names and top != "__future__":
                    third.setdefault(name, set()).add(module)
    return seen, third


def third_party_imports(entry: str = ENTRY, root: Path = REPO) -> dict[str, set[str]]:
    """Top-level third-party module -> the first-party modules that import it (or something under it)."""
    tops: dict[str, set[str]] = {}
    for name, importers in walk(entry, root)[1].items():
        tops.setdefault(name.split(".")[0], set()).update(importers)
    return tops


def replica_classes() -> list[tuple[str, str]]:
    """(module, class) of every pipeline and component class the measured replicas' model_index.json name."""
    from synthset.testing.replicas import PIPELINE_REPLICAS, REPLICAS

    classes = {("diffusers", "AutoencoderKL")}  # the sdxl-vae-fp16-fix swap
    for name in PIPELINE_REPLICAS:
        index = json.loads((REPLICAS[name].config_dir / "model_index.json").read_text())
        classes.add(("diffusers", index["_class_name"]))
        for component, value in index.items():
            if component == "safety_checker" or not (isinstance(value, list) and len(value) == 2 and value[1]):
                continue  # the check leaves the safety checker out, as synthset does
            library, cls = value
            if cls in ("CLIPFeatureExtractor", "CLIPImageProcessor"):  # assemble_pipeline builds either as this
                library, cls = "transformers", "CLIPImageProcessor"
            elif library not in ("diffusers", "transformers"):
                library = f"diffusers.pipelines.{library}"
            classes.add((library, cls))
    return sorted(classes)


def import_everything() -> list[str]:
    """Import every module the check imports and every replica class; returns what could not be imported."""
    seen, third = walk()
    failures = []
    for name in sorted(seen) + sorted(third):
        failures += _try(lambda name=name: _load(name), name)
    for library, cls in replica_classes():
        failures += _try(lambda library=library, cls=cls: getattr(importlib.import_module(library), cls),
                         f"{library}.{cls}")  # fmt: skip
    return failures


def _load(name: str):
    """Import `name`; `from a.b import C` gave us a.b.C, which is an attribute (often a lazy one) of a.b."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        parent, _, attr = name.rpartition(".")
        if not parent or error.name != name:
            raise  # a module it needs is missing, not the name itself
        return getattr(importlib.import_module(parent), attr)


def _try(load, name: str) -> list[str]:
    try:
        load()
    except Exception as error:  # noqa: BLE001 - every failure is reported, one line each
        return [f"{name}: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"]
    return []


def optional_modules() -> dict[str, str]:
    """OPTIONAL_MODULES that import here ('bundle'/'image'/...) or the first line of why they do not."""
    found = {}
    for name in OPTIONAL_MODULES:
        problems = _try(lambda name=name: importlib.import_module(name), name)
        found[name] = problems[0] if problems else "importable"
    return found


def record_importers() -> dict[str, str]:
    """From now on, note which module first imports each top-level module: {imported: importer's top level}."""
    import builtins

    importers: dict[str, str] = {}
    original = builtins.__import__

    def noting(name, globals=None, locals=None, fromlist=(), level=0):
        top = name.split(".")[0]
        if level == 0 and top not in sys.modules and top not in importers:
            importers[top] = str((globals or {}).get("__name__") or "__main__").split(".")[0]
        return original(name, globals, locals, fromlist, level)

    builtins.__import__ = noting
    return importers


def origin_problems(
    origins: dict[str, tuple[str, str | None]], importers: dict[str, str], image: frozenset[str]
) -> list[str]:
    """Lines for modules from this machine's site-packages that the GPU image lacks and the check needs.

    A module whose distribution the image lacks is fine where an image package imported it (the image's
    version of that package brings its own); it is a problem where the chain of first importers leads back
    to the check or the bundle, which would then fail there.

    Args:
        origins: top-level module -> (where: "bundle" | "repo" | "stdlib" | "site-packages", distribution).
        importers: top-level module -> the top-level module that imported it first (`record_importers`).
        image: the GPU image's distributions (canonical names).
    """

    def needed_by_check(module: str, chain: tuple[str, ...]) -> tuple[str, ...] | None:
        where, distribution = origins.get(module, ("repo", None))
        if where == "stdlib" or (where == "site-packages" and distribution in image):
            return None
        if where in ("bundle", "repo"):
            return chain
        importer = importers.get(module)
        if importer is None or importer in chain:
            return (*chain, module)
        return needed_by_check(importer, (*chain, module))

    problems = []
    for module, (where, distribution) in sorted(origins.items()):
        if where != "site-packages" or distribution in image:
            continue
        chain = needed_by_check(module, ())
        if chain is not None:
            path = " <- ".join([*chain, importers.get(chain[-1], "?")])
            problems.append(f"{module} (distribution {distribution}) was imported from this machine's "
                            f"site-packages ({path}): it is neither in the bundle nor in the GPU image")  # fmt: skip
    return problems


def module_origins(sites: list[Path]) -> dict[str, tuple[str, str | None]]:
    """Where each loaded top-level module's file lies, with its distribution when it is site-packages'."""
    from importlib.metadata import packages_distributions

    from benchmarks.gpu_bundle import canonical

    distributions = packages_distributions()
    origins: dict[str, tuple[str, str | None]] = {}
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if "." in name or name.startswith("_") or file is None:
            continue  # submodules follow their package; builtins and namespace stubs have no file
        path = Path(file).resolve()
        if any(path.is_relative_to(site.resolve()) for site in sites):
            origins[name] = ("bundle", None)
        elif path.is_relative_to(REPO):
            origins[name] = ("repo", None)
        elif "site-packages" in path.parts or "dist-packages" in path.parts:
            found = distributions.get(name)
            origins[name] = ("site-packages", canonical(found[0]) if found else None)
        else:
            origins[name] = ("stdlib", None)
    return origins


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--site", type=Path, action="append", default=[], help="where the bundle is installed")
    parser.add_argument("--origins", action="store_true", help="fail on modules the GPU image would not have")
    args = parser.parse_args(argv)
    importers = record_importers()
    failures = import_everything()
    for line in failures:
        print(f"gpu_imports: cannot import {line}", file=sys.stderr)
    for name, state in optional_modules().items():
        print(f"gpu_imports: optional {name} ({OPTIONAL_MODULES[name]}): {state}")
    problems: list[str] = []
    if args.origins:
        from benchmarks.gpu_bundle import IMAGE_PACKAGES

        origins = module_origins(args.site)
        problems = origin_problems(origins, importers, IMAGE_PACKAGES)
        bundled = sorted(m for m, (where, _) in origins.items() if where == "bundle")
        print(f"gpu_imports: from the bundle: {', '.join(bundled) or 'nothing'}")
    for line in problems:
        print(f"gpu_imports: {line}", file=sys.stderr)
    if failures or problems:
        raise SystemExit(2)
    print(f"gpu_imports: every module the check imports loaded ({len(sys.modules)} modules in all)")


if __name__ == "__main__":
    main()
