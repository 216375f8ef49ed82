"""The release artefact: the wheel a stranger installs runs the demo without the repository.

`python -m build` makes an sdist and, from it, a wheel (so the sdist is complete too); `twine check` passes;
the wheel goes into a fresh virtual environment outside the checkout, which reuses this environment's
third-party packages (torch & co.) but gets synthset only from the wheel; `synthset demo --quick` runs there
in an empty directory, and `load_dataset` reads the result.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO

import synthset
from synthset.api.demo import QUICK_CLASSES, QUICK_IMAGES_PER_CLASS


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{command}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel, built offline (--no-isolation: this environment's setuptools)."""
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(REPO)], cwd=REPO)
    return out


def fresh_venv(where: Path) -> Path:
    """A new venv whose only extra path is this environment's site-packages, after its own.

    A `.pth` line adds a directory without running the `.pth` files inside it, so this environment's
    editable install of synthset (a `.pth` hook) stays invisible there.
    """
    run([sys.executable, "-m", "venv", "--system-site-packages", str(where)], cwd=where.parent)
    (site_packages,) = where.glob("lib/python*/site-packages")
    (site_packages / "reuse-test-env.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return where / "bin"


def outside_env(home: Path) -> dict[str, str]:
    """The environment of a user's shell: nothing points into the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "SYNTHSET_HOME": str(home), "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}


def test_the_sdist_and_wheel_pass_twine_check(dist: Path):
    names = sorted(p.name for p in dist.iterdir())
    assert names == [f"synthset-{synthset.__version__}-py3-none-any.whl", f"synthset-{synthset.__version__}.tar.gz"]
    assert "PASSED" in run([sys.executable, "-m", "twine", "check", *map(str, dist.iterdir())], cwd=dist)


def test_the_wheel_runs_the_demo_in_a_fresh_venv(dist: Path, tmp_path: Path, synthset_home: Path):
    bin_dir = fresh_venv(tmp_path / "venv")
    (wheel,) = dist.glob("*.whl")
    pip = [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", "--no-index", "--no-deps"]
    run([*pip, "--ignore-installed", str(wheel)], cwd=tmp_path)
    env, work = outside_env(synthset_home), tmp_path / "work"
    work.mkdir()
    assert run([str(bin_dir / "synthset"), "--version"], work, env).strip() == f"synthset {synthset.__version__}"
    run([str(bin_dir / "synthset"), "demo", "--quick"], work, env)
    load = (
        "import datasets, synthset; print(synthset.__file__); "
        "print(*(len(datasets.load_dataset(d, c, split='train')) for d, c in "
        "[('runs/demo/dataset', 'naive'), ('runs/demo-augcond/dataset', 'augcond')]))"
    )
    module_file, counts = run([str(bin_dir / "python"), "-c", load], work, env).strip().splitlines()[-2:]
    assert Path(module_file).is_relative_to(tmp_path / "venv")
    naive, augcond = map(int, counts.split())
    # The demo is deterministic: every naive sample passes the gate; one augcond sample is flagged past its
    # redraws and dropped (as `synthset build` warns).
    assert (naive, augcond) == (QUICK_CLASSES * QUICK_IMAGES_PER_CLASS, QUICK_CLASSES * QUICK_IMAGES_PER_CLASS - 1)
