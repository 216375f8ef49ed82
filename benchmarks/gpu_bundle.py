"""`make gpu-bundle`: the wheels the GPU check needs that the GPU machine's image lacks, for that machine.

The GPU machine reaches no package index. Its image (the device tool's KINDS.md, "Python packages already
there", read 2026-11-17; versions from the same page's pip list, 2026-11) runs Python 3.12 with torch 2.11
and ~200 packages, but not diffusers, pydantic, open_clip_torch or xformers. A call ships at most 64 MiB:
the working tree (synthset and the benchmarks travel as source, tracked files) plus the folders named in
`carry`. So this module:

- downloads `PINS` (exact versions, `--no-deps`) as cp312 manylinux wheels into `benchmarks/gpu-bundle/`,
  and, for the few that are built for CPython 3.12 only, the same versions built for this machine's Python
  into `benchmarks/gpu-bundle-host/` (not shipped: the dry run here imports those);
- checks that the pins are closed and exact (`closure_problems`): every requirement of every bundled wheel
  (markers evaluated for CPython 3.12 on Linux x86_64) is met by another pin or by the image, at the
  image's recorded version where one is recorded; and every pin is imported by the check
  (`benchmarks.gpu_imports`) or required by a pin that is;
- prints the bundle's wheels and size, and fails if the bundle plus the working tree reach 64 MiB.

`python -m benchmarks.gpu_bundle preflight` (first step of `benchmarks/gpu_run.sh` on the GPU machine) runs
the same requirement check against what is installed there, so a version the image does not have is one
line, seconds into the call, not a traceback minutes into it.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUNDLE = REPO / "benchmarks" / "gpu-bundle"
HOST_BUNDLE = REPO / "benchmarks" / "gpu-bundle-host"
LIMIT_BYTES = 64 * 1024**2  # what one device call carries: working tree + carried folders
MIB = 1024**2
PLATFORM_ARGS = [
    "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp", "--abi", "cp312",
    "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64",
    "--platform", "manylinux_2_28_x86_64",
]  # fmt: skip
# Markers of the GPU machine's interpreter (CPython 3.12.3 on Linux x86_64, KINDS.md).
TARGET_ENVIRONMENT = {
    "python_version": "3.12", "python_full_version": "3.12.3", "implementation_name": "cpython",
    "implementation_version": "3.12.3", "platform_python_implementation": "CPython", "os_name": "posix",
    "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64", "extra": "",
}  # fmt: skip


def canonical(name: str) -> str:
    """PEP 503 name: `Open_Clip.Torch` and `open-clip-torch` are one distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


# The image's distributions, as KINDS.md lists them (read on a machine running it, 2026-11-17).
_IMAGE_LIST = """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools
formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna
imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe
matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals
networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13
nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy
peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout
pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core
scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six
sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile
tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm
transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel
wrapt xarray xxhash yarl zipp
"""
IMAGE_PACKAGES = frozenset(canonical(name) for name in _IMAGE_LIST.split())
# The versions KINDS.md's pip list gives (2026-11); the other image packages' versions are not recorded.
IMAGE_VERSIONS = {
    "accelerate": "1.15.0", "huggingface-hub": "1.33.0", "numpy": "2.5.2", "safetensors": "0.8.0",
    "tokenizers": "0.23.2", "torch": "2.11.0", "torchvision": "0.26.0", "transformers": "5.17.0", "triton": "3.6.0",
}  # fmt: skip


@dataclass(frozen=True)
class Pin:
    version: str
    why: str


PINS: dict[str, Pin] = {
    "diffusers": Pin(
        "0.42.1",
        "the pipelines the check times; the version synthset is tested with here; needs "
        "huggingface-hub>=1.32 and safetensors>=0.8, which the image's 1.33.0 and 0.8.0 meet",
    ),
    "importlib-metadata": Pin("9.1.0", "required by diffusers; 9.x needs only zipp (10.x adds lazy-importer)"),
    "pydantic": Pin(
        "2.13.5",
        "synthset.recipe (GeneratorSpec, for the memory formula); 2.13 needs "
        "typing-extensions>=4.14.1 where 2.14 needs 4.16 (2026-07), and the image's is not recorded",
    ),
    "pydantic-core": Pin("2.46.5", "pydantic 2.13.5 pins it exactly"),
    "annotated-types": Pin("0.7.0", "required by pydantic; no dependencies"),
    "typing-inspection": Pin("0.4.2", "required by pydantic (>=0.4.2); needs typing-extensions>=4.12 only"),
    "open-clip-torch": Pin(
        "3.3.0",
        "synthset.testing.clip_bpe reads CLIP's BPE merges from its package (the "
        "replicas' tokenizers); the version tested here",
    ),
    "ftfy": Pin("6.3.1", "required by open-clip-torch"),
    "wcwidth": Pin("0.9.5", "required by ftfy"),
    "xformers": Pin(
        "0.0.35",
        "the xformers rows: its manylinux wheel is 3.1 MiB (0.0.34's was 106 MiB), built on "
        "torch's stable ABI and needing torch>=2.10, so the image's torch 2.11 takes it",
    ),
}


@dataclass(frozen=True)
class Wheel:
    name: str  # canonical
    version: str
    requires: tuple[str, ...]
    path: Path | None = None


def read_wheel(path: Path) -> Wheel:
    """Name, version and Requires-Dist from a wheel's METADATA."""
    with zipfile.ZipFile(path) as archive:
        metadata = next(n for n in archive.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA"))
        message = Parser().parsestr(archive.read(metadata).decode("utf-8"))
    return Wheel(canonical(message["Name"]), message["Version"], tuple(message.get_all("Requires-Dist") or ()), path)


def bundle_wheels(folder: Path) -> dict[str, Wheel]:
    wheels = [read_wheel(path) for path in sorted(folder.glob("*.whl"))]
    return {wheel.name: wheel for wheel in wheels}


def _met(
    wheel: Wheel, requirement: str, wheels: dict[str, Wheel], available: dict[str, str | None], machine: str
) -> str | None:
    """None if `requirement` of `wheel` holds, else the line that says why not; 'unverified: ...' if unknown."""
    from packaging.requirements import Requirement

    needed = Requirement(requirement)
    name, who = canonical(needed.name), f"{wheel.name}=={wheel.version} needs {requirement}"
    if name in wheels:
        have, where = wheels[name].version, "the bundle"
    elif name in available:
        have, where = available[name], machine
        if have is None:
            return f"unverified: {who}; the image's version is not recorded (preflight checks it there)"
    else:
        return f"{who}, which is neither in the bundle nor in {machine}: add it to PINS"
    if needed.specifier.contains(have, prereleases=True):
        return None
    return f"{who}, but {where} has {have}"


def closure_problems(
    wheels: dict[str, Wheel],
    available: dict[str, str | None],
    roots: set[str] | None = None,
    environment: dict[str, str] | None = None,
    machine: str = "the GPU image",
) -> tuple[list[str], list[str]]:
    """(problems, notes) of a bundle: unmet requirements, and pins that nothing the check imports needs.

    Args:
        wheels: the bundle, by canonical name.
        available: what the machine already has: canonical name -> version (None where it is not known).
        roots: the distributions the check imports directly; None skips the "nothing needs it" check.
        environment: marker values of the interpreter that will run it (default: the GPU machine's).
        machine: what `available` describes, for the lines.
    """
    from packaging.requirements import Requirement

    environment = environment or TARGET_ENVIRONMENT
    problems, notes, edges = [], [], {name: set() for name in wheels}
    for wheel in wheels.values():
        for requirement in wheel.requires:
            marker = Requirement(requirement).marker
            if marker is not None and not marker.evaluate(environment):
                continue
            edges[wheel.name].add(canonical(Requirement(requirement).name))
            line = _met(wheel, requirement, wheels, available, machine)
            if line is not None:
                (notes if line.startswith("unverified") else problems).append(line)
    if roots is not None:
        reached, todo = set(), [name for name in roots if name in wheels]
        while todo:
            name = todo.pop()
            if name not in reached:
                reached.add(name)
                todo += [n for n in edges[name] if n in wheels]
        problems += [f"{name} is in the bundle but nothing the check imports needs it" for name in
                     sorted(set(wheels) - reached)]  # fmt: skip
    return problems, notes


def check_roots() -> set[str]:
    """Distributions of the third-party modules the check imports (benchmarks.gpu_imports), optional ones too."""
    from importlib.metadata import packages_distributions

    from benchmarks.gpu_imports import OPTIONAL_MODULES, third_party_imports

    distributions = packages_distributions()
    modules = set(third_party_imports()) | {name.split(".")[0] for name in OPTIONAL_MODULES}
    roots = {canonical(distributions[m][0]) for m in modules if m in distributions}
    return roots | {canonical(m) for m in modules if m not in distributions}  # xformers: not installed here


def image_available() -> dict[str, str | None]:
    return {name: IMAGE_VERSIONS.get(name) for name in IMAGE_PACKAGES}


def installed_available() -> dict[str, str | None]:
    """What this interpreter imports, by distribution: the first on sys.path wins, as it does for imports."""
    from importlib.metadata import distributions

    found: dict[str, str | None] = {}
    for distribution in distributions():
        if distribution.metadata["Name"]:
            found.setdefault(canonical(distribution.metadata["Name"]), distribution.version)
    return found


def tree_bytes(repo: Path = REPO) -> int:
    """Bytes of the working tree that a device call sends: tracked files and untracked, not ignored ones."""
    listed = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            check=True, capture_output=True).stdout.decode().split("\0")  # fmt: skip
    return sum((repo / name).stat().st_size for name in listed if name and (repo / name).is_file())


def size_lines(wheels: list[Path], tree: int, limit: int = LIMIT_BYTES) -> list[str]:
    """The bundle's wheels and sizes; raises SystemExit if bundle + tree reach `limit`."""
    lines = [f"  {path.name}  {path.stat().st_size / MIB:.2f} MiB" for path in sorted(wheels)]
    bundle = sum(path.stat().st_size for path in wheels)
    total = bundle + tree
    lines.append(f"bundle {bundle / MIB:.2f} MiB in {len(wheels)} wheels + working tree (synthset and benchmarks "
                 f"as source) {tree / MIB:.2f} MiB = {total / MIB:.2f} MiB of the {limit / MIB:.0f} MiB "
                 "a call carries")  # fmt: skip
    if total >= limit:
        raise SystemExit("\n".join([*lines, f"gpu-bundle: {total / MIB:.2f} MiB is over the {limit / MIB:.0f} MiB "
                                    "limit: drop a wheel or shrink the tree"]))  # fmt: skip
    return lines


def _pip_download(specs: list[str], dest: Path, extra: list[str]) -> None:
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", str(dest), *extra, *specs]
    subprocess.run(command, check=True)


def host_compatible(path: Path) -> bool:
    """Whether this interpreter can install the wheel at `path` (its filename's tags)."""
    from packaging.tags import sys_tags
    from packaging.utils import parse_wheel_filename

    return not parse_wheel_filename(path.name)[3].isdisjoint(set(sys_tags()))


def download(bundle: Path = BUNDLE, host: Path = HOST_BUNDLE) -> None:
    """PINS as the GPU machine's wheels into `bundle`; those this interpreter cannot install, again, into `host`."""
    for folder in (bundle, host):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    _pip_download([f"{name}=={pin.version}" for name, pin in PINS.items()], bundle, PLATFORM_ARGS)
    others = [read_wheel(path) for path in bundle.glob("*.whl") if not host_compatible(path)]
    if others:
        _pip_download([f"{w.name}=={w.version}" for w in others], host, ["--only-binary=:all:"])


def dry_run_wheels(bundle: Path = BUNDLE, host: Path = HOST_BUNDLE) -> list[Path]:
    """The wheels the dry run installs here: the bundle's, with this machine's builds of the cp312-only ones."""
    chosen = [path for path in sorted(bundle.glob("*.whl")) if host_compatible(path)]
    missing = sorted({read_wheel(p).name for p in bundle.glob("*.whl")} - {read_wheel(p).name for p in chosen}
                     - set(bundle_wheels(host)))  # fmt: skip
    if missing:
        raise SystemExit(f"gpu-bundle: no build of {', '.join(missing)} for this Python in {host}: make gpu-bundle")
    return chosen + sorted(host.glob("*.whl"))


def build(bundle: Path = BUNDLE, host: Path = HOST_BUNDLE) -> None:
    """`make gpu-bundle`: download, check closure and exactness against the image's list, print the size."""
    download(bundle, host)
    wheels = bundle_wheels(bundle)
    if set(wheels) != set(PINS) or any(wheels[n].version != PINS[n].version for n in PINS):
        raise SystemExit(f"gpu-bundle: downloaded {sorted((w.name, w.version) for w in wheels.values())}, not PINS")
    problems, notes = closure_problems(wheels, image_available(), check_roots())
    if notes:
        unverified = "; ".join(note.removeprefix("unverified: ").split(";")[0] for note in notes)
        print(f"gpu-bundle: {len(notes)} requirements are on image packages whose version is not recorded "
              f"(the preflight checks them there): {unverified}")  # fmt: skip
    if problems:
        raise SystemExit("\n".join(f"gpu-bundle: {line}" for line in problems))
    print("\n".join(size_lines(list(bundle.glob("*.whl")), tree_bytes())))
    print(f"gpu-bundle: closed over the image's list; this machine's builds for the dry run in {host.name}/: "
          f"{', '.join(p.name for p in sorted(host.glob('*.whl'))) or 'none needed'}")  # fmt: skip


def preflight(bundle: Path = BUNDLE) -> None:
    """On the machine that will run the check: every bundled wheel's requirements hold for what is installed."""
    wheels = bundle_wheels(bundle)
    problems, _ = closure_problems(wheels, installed_available(), environment=_here(), machine="this machine")
    if problems:
        raise SystemExit("\n".join(f"preflight: {line}" for line in problems))
    print(f"preflight: the requirements of {len(wheels)} bundled wheels hold here")


def _here() -> dict[str, str]:
    from packaging.markers import default_environment

    return {**default_environment(), "extra": ""}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("build", "preflight", "dry-run-wheels"), nargs="?", default="build")
    parser.add_argument("--bundle", type=Path, default=BUNDLE)
    parser.add_argument("--host", type=Path, default=HOST_BUNDLE)
    args = parser.parse_args(argv)
    if args.action == "build":
        build(args.bundle, args.host)
    elif args.action == "preflight":
        preflight(args.bundle)
    else:
        print("\n".join(str(path) for path in dry_run_wheels(args.bundle, args.host)))


if __name__ == "__main__":
    main()
