"""The GPU check's wheel bundle (benchmarks/gpu_bundle.py), its import walk, and `gpu_run.sh --dry-run`.

Downloading the real bundle needs PyPI, so `make gpu-bundle` checks the real wheels itself (closure over the
image's list, exactness, size); here the logic runs on lists and on wheels made in the test, and the dry
run on a bundle repacked from this venv's installed copies of the pinned packages.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from importlib.metadata import distribution, packages_distributions
from pathlib import Path

import pytest

from benchmarks import gpu_bundle, gpu_imports
from benchmarks.gpu_bundle import IMAGE_PACKAGES, PINS, Wheel, canonical, closure_problems

REPO = Path(__file__).resolve().parent.parent


def test_every_third_party_module_the_check_imports_is_in_the_bundle_or_the_image() -> None:
    imports = gpu_imports.third_party_imports()
    # Exactly these: a new import on the check's path must be placed in the bundle or found in the image.
    assert set(imports) == {"diffusers", "huggingface_hub", "open_clip", "pydantic", "safetensors", "tokenizers",
                            "torch", "transformers", "yaml"}  # fmt: skip
    assert imports["pydantic"] == {"synthset.recipe"}
    assert imports["open_clip"] == {"synthset.testing.clip_bpe", "synthset.testing.tiny"}
    names = packages_distributions()
    distributions = {canonical(names[module][0]) for module in imports}
    assert distributions <= set(PINS) | IMAGE_PACKAGES
    assert sorted(distributions - IMAGE_PACKAGES) == ["diffusers", "open-clip-torch", "pydantic"]
    assert gpu_bundle.check_roots() - IMAGE_PACKAGES == {"diffusers", "open-clip-torch", "pydantic", "xformers"}
    assert not set(PINS) & IMAGE_PACKAGES  # nothing the image has is shipped again (it would shadow the image's)


def test_the_walk_follows_lazy_imports_but_not_type_checking_blocks_or_module_level_only_modules(
    tmp_path: Path,
) -> None:
    package = tmp_path / "benchmarks"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "gpu.py").write_text(
        "from typing import TYPE_CHECKING\nimport yaml\nfrom benchmarks.common import Row\nfrom . import helper\n"
        "if TYPE_CHECKING:\n    import pandas\n\ndef run():\n    import torch.utils\n    from diffusers import X\n"
    )
    (package / "common.py").write_text("import numpy\n\ndef other_bench():\n    import datasets\n")
    (package / "helper.py").write_text("try:\n    import open_clip\nexcept ImportError:\n    pass\n")
    assert gpu_imports.third_party_imports(root=tmp_path) == {
        "yaml": {"benchmarks.gpu"}, "torch": {"benchmarks.gpu"}, "diffusers": {"benchmarks.gpu"},
        "numpy": {"benchmarks.common"}, "open_clip": {"benchmarks.helper"},
    }  # fmt: skip


def test_closure_finds_unmet_unpinned_and_unneeded_requirements_with_markers_for_python_312() -> None:
    wheels = {
        "diffusers": Wheel(
            "diffusers",
            "0.42.1",
            ("importlib_metadata", "huggingface-hub<3.0,>=1.32.0", "Pillow", 'pytest; extra == "test"'),
        ),  # fmt: skip
        "importlib-metadata": Wheel(
            "importlib-metadata", "10.2.0", ("zipp>=3.20", 'lazy-importer>=0.1; python_version < "3.15"')
        ),  # fmt: skip
        "ftfy": Wheel("ftfy", "6.3.1", ("wcwidth", 'tomli; python_version < "3.11"')),
    }
    image = {"huggingface-hub": "1.33.0", "pillow": None, "zipp": "3.23.0"}
    problems, notes = closure_problems(wheels, image, roots={"diffusers"})
    assert problems == [
        'importlib-metadata==10.2.0 needs lazy-importer>=0.1; python_version < "3.15", which is neither in the '
        "bundle nor in the GPU image: add it to PINS",
        "ftfy==6.3.1 needs wcwidth, which is neither in the bundle nor in the GPU image: add it to PINS",
        "ftfy is in the bundle but nothing the check imports needs it",
    ]
    assert notes == ["unverified: diffusers==0.42.1 needs Pillow; the image's version is not recorded "
                     "(preflight checks it there)"]  # fmt: skip
    older = {**image, "huggingface-hub": "1.20.0", "zipp": "3.19.0"}
    problems, _ = closure_problems({"diffusers": wheels["diffusers"]}, older, roots={"diffusers"})
    assert problems == [
        "diffusers==0.42.1 needs importlib_metadata, which is neither in the bundle nor in the GPU image: add it "
        "to PINS",
        "diffusers==0.42.1 needs huggingface-hub<3.0,>=1.32.0, but the GPU image has 1.20.0",
    ]


def test_pins_and_image_versions_are_keyed_by_canonical_name_so_lookups_match() -> None:
    from packaging.version import Version

    assert all(canonical(name) == name for name in [*PINS, *IMAGE_PACKAGES, *gpu_bundle.IMAGE_VERSIONS])
    assert set(gpu_bundle.IMAGE_VERSIONS) <= IMAGE_PACKAGES and gpu_bundle.IMAGE_VERSIONS["torch"] == "2.11.0"
    assert all(str(Version(pin.version)) == pin.version for pin in PINS.values())  # exact releases, no ranges


def make_wheel(
    folder: Path, name: str, version: str, tag: str = "py3-none-any", requires: tuple = (), files: dict | None = None
) -> Path:
    """A minimal installable wheel: one module (or `files`) and its dist-info."""
    stem = f"{name.replace('-', '_')}-{version}"
    path = folder / f"{stem}-{tag}.whl"
    metadata = "".join([f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
                        *(f"Requires-Dist: {r}\n" for r in requires)])  # fmt: skip
    with zipfile.ZipFile(path, "w") as archive:
        for file, text in (files or {f"{name.replace('-', '_')}.py": ""}).items():
            archive.writestr(file, text)
        archive.writestr(f"{stem}.dist-info/METADATA", metadata)
        archive.writestr(f"{stem}.dist-info/WHEEL", f"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: {tag}\n")
        archive.writestr(f"{stem}.dist-info/RECORD", "")
    return path


def test_size_over_the_limit_fails_with_the_sizes(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "probe", "1.0")
    size = wheel.stat().st_size
    lines = gpu_bundle.size_lines([wheel], tree=1000, limit=size + 1001)
    assert lines[0] == f"  {wheel.name}  {size / 2**20:.2f} MiB"
    with pytest.raises(SystemExit) as raised:
        gpu_bundle.size_lines([wheel], tree=1000, limit=size + 1000)
    assert str(raised.value).splitlines()[-1] == (
        f"gpu-bundle: {(size + 1000) / 2**20:.2f} MiB is over the 0 MiB limit: drop a wheel or shrink the tree"
    )


def test_the_dry_run_takes_this_machines_build_of_a_cp312_only_wheel(tmp_path: Path) -> None:
    bundle, host = tmp_path / "bundle", tmp_path / "host"
    bundle.mkdir(), host.mkdir()
    pure = make_wheel(bundle, "probe-pure", "1.0")
    make_wheel(bundle, "probe-core", "2.0", "cp312-cp312-manylinux_2_17_x86_64")
    with pytest.raises(SystemExit, match=r"no build of probe-core for this Python in .*host: make gpu-bundle"):
        gpu_bundle.dry_run_wheels(bundle, host)
    here = make_wheel(host, "probe-core", "2.0")
    assert gpu_bundle.dry_run_wheels(bundle, host) == [pure, here]


def test_preflight_names_the_requirement_this_machine_does_not_meet(tmp_path: Path) -> None:
    make_wheel(tmp_path, "probe", "1.0", requires=("pyyaml>=5", "huggingface-hub<0.1", 'nope; python_version < "3"'))
    installed = distribution("huggingface-hub").version
    with pytest.raises(SystemExit) as raised:
        gpu_bundle.preflight(tmp_path)
    assert str(raised.value) == f"preflight: probe==1.0 needs huggingface-hub<0.1, but this machine has {installed}"


def test_origins_blame_modules_the_check_needs_but_not_those_an_image_package_imports() -> None:
    origins = {
        "synthset": ("repo", None), "pydantic": ("site-packages", "pydantic"), "dill": ("site-packages", "dill"),
        "torch": ("site-packages", "torch"), "diffusers": ("bundle", None), "kernels": ("site-packages", "kernels"),
        "truststore": ("site-packages", "truststore"), "httpx2": ("site-packages", "httpx2"),
        "huggingface_hub": ("site-packages", "huggingface-hub"), "json": ("stdlib", None),
    }  # fmt: skip
    importers = {"pydantic": "synthset", "dill": "torch", "kernels": "diffusers", "truststore": "httpx2",
                 "httpx2": "huggingface_hub", "torch": "synthset", "diffusers": "benchmarks"}  # fmt: skip
    assert gpu_imports.origin_problems(origins, importers, IMAGE_PACKAGES) == [
        "kernels (distribution kernels) was imported from this machine's site-packages (kernels <- diffusers): it "
        "is neither in the bundle nor in the GPU image",
        "pydantic (distribution pydantic) was imported from this machine's site-packages (pydantic <- synthset): "
        "it is neither in the bundle nor in the GPU image",
    ]


def repack_installed(name: str, folder: Path) -> Path:
    """This venv's installed copy of `name` as a py3-none-any wheel (its files per RECORD, and its dist-info).

    Requirements on distributions not installed here are left out of the copy's METADATA: the test bundle is
    what this machine has, not the pins (the real bundle's closure is checked by `make gpu-bundle`).
    """
    dist = distribution(name)
    root = Path(dist.locate_file(""))
    info = next(f for f in dist.files if f.name == "METADATA").parent
    path = folder / f"{canonical(name).replace('-', '_')}-{dist.version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for file in dist.files:
            if str(file).startswith("..") or "__pycache__" in str(file) or file.parent == info:
                continue
            archive.write(root / file, str(file))
        for file in (f for f in dist.files if f.parent == info and f.name in ("WHEEL", "METADATA")):
            text = (root / file).read_text()
            if file.name == "METADATA":
                text = "".join(line for line in text.splitlines(keepends=True) if _kept(line))
            archive.writestr(str(file), text)
        archive.writestr(f"{info}/RECORD", "")
    return path


def _kept(line: str) -> bool:
    from importlib.metadata import PackageNotFoundError

    from packaging.requirements import Requirement

    if not line.startswith("Requires-Dist:"):
        return True
    try:
        distribution(Requirement(line.split(":", 1)[1].strip()).name)
    except PackageNotFoundError:
        return False
    return True


def test_gpu_run_dry_run_installs_the_bundle_imports_everything_from_it_and_prints_the_plan(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    installed_here = [name for name in PINS if name != "xformers" and _is_installed(name)]
    assert {"diffusers", "pydantic", "pydantic-core", "open-clip-torch", "ftfy", "wcwidth"} <= set(installed_here)
    for name in installed_here:
        repack_installed(name, bundle)
    # An xformers whose import fails (as a CUDA build may on another torch) is removed before it stops diffusers.
    make_wheel(bundle, "xformers", "0.0.35", files={"xformers/__init__.py": "raise ImportError('built for torch X')"})
    env = {**os.environ, "PYTHON": sys.executable, "GPU_BUNDLE": str(bundle), "GPU_BUNDLE_HOST": str(tmp_path)}
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_run.sh"), "--dry-run", "--only", "sd15,sdxl-base"],
                          env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    wheels = len(installed_here) + 1
    assert f"gpu_run: pip installs the {wheels} wheels of {bundle} for CPython 3.12 (the GPU machine)" in lines
    assert f"preflight: the requirements of {wheels} bundled wheels hold here" in lines
    assert (
        "gpu_run: xformers does not import here (ImportError: built for torch X); removed, its rows are skipped"
        in lines
    )
    assert ("gpu_imports: from the bundle: annotated_types, diffusers, ftfy, open_clip, pydantic, pydantic_core, "
            "typing_inspection, wcwidth") in lines  # fmt: skip
    assert any(line.startswith("gpu_imports: every module the check imports loaded") for line in lines)
    assert (
        "gpu_imports: optional xformers (the xformers rows): xformers: ModuleNotFoundError: No module named 'xformers'"
        in lines
    )
    plan = lines[lines.index(next(line for line in lines if line.startswith("plan: "))) :]
    assert plan[:5] == [
        "plan: 22 rows, dtype float16, 25 steps; no row starts after 420 s, compile rows only with 150 s left",
        "  sd15 [model]: b1; b2; b4; b8; b16; b8, channels_last; b8, attention=xformers; b16, vae_slicing; "
        "b16, vae_tiling",
        "  sdxl-base [model]: b1; b2; b4; b8; b16; b8, channels_last; b8, attention=xformers; b16, vae_slicing; "
        "b16, vae_tiling",
        "  sdxl-base [bfloat16 vae]: b8, vae=bfloat16",
        "  sdxl-base [fp16-fix vae]: b8, vae=sdxl-vae-fp16-fix",
    ]
    assert plan[5:7] == ["  sd15 [compile]: b8, compile", "  sdxl-base [compile]: b8, compile"]


def _is_installed(name: str) -> bool:
    from importlib.metadata import PackageNotFoundError

    try:
        distribution(name)
    except PackageNotFoundError:
        return False
    return True
