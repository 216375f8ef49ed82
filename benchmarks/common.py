"""What every measurement shares: the generation settings, recipes, fresh child processes, and table rows.

Every generation case uses the same tiny offline pipeline and settings (`GEN`), so the ratios isolate what
synthset adds around the pipeline calls. Timed cases run in fresh child processes (`run_child`), so each
starts with the same interpreter state and its wall time, CPU time and peak RSS are its own
(`os.wait4` gives one child's resource usage, unlike `RUSAGE_CHILDREN`, which is a running maximum).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
REPORT_PREFIX = "BENCH "

# The pipeline settings of every generation case: bs 8, 64 px, 4 DDIM steps, CFG (guidance 7.5).
GEN: dict[str, Any] = {
    "model": "synthset-testing:tiny-sd",
    "scheduler": "ddim",
    "steps": 4,
    "guidance": 7.5,
    "width": 64,
    "height": 64,
    "batch_size": 8,
}
# synthset's default storage format (JPEG q95); small shards so that a few hundred images make several.
STORAGE: dict[str, Any] = {"format": "jpeg", "quality": 95, "shard_size": 32, "row_group_size": 16}
CLASSES = 8  # images are spread over this many ImageNet classes
PYTHON = [sys.executable]
# The only launch that starts N CPU processes here (`--cpu --num_processes 2` silently starts one).
ACCELERATE_LAUNCH = [str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu", "--num_machines", "1"]
ACCELERATE_LAUNCH += ["--mixed_precision", "no", "--dynamo_backend", "no"]


@dataclass
class Row:
    """One line of the printed table; `data` goes to the JSON."""

    measurement: str
    value: str
    goal: str = "-"
    status: str = "info"  # pass | FAIL | info | not measured | error
    data: dict[str, Any] = field(default_factory=dict)


def judged(ok: bool) -> str:
    return "pass" if ok else "FAIL"


@dataclass
class Context:
    """What the measurements share: the scratch directory, the CLI arguments and the run's notes."""

    work: Path
    args: Any
    notes: list[str] = field(default_factory=list)
    runs: dict[str, Path] = field(default_factory=dict)  # finished runs a later measurement may reuse

    def note(self, text: str) -> None:
        print(f"  note: {text}", flush=True)
        self.notes.append(text)

    def check_long_enough(self, what: str, seconds: float) -> None:
        """The issue asks for timed sections over 20 s; say so when one was shorter (e.g. --quick)."""
        if seconds < self.args.min_section_s:
            self.note(f"{what} ran {seconds:.1f} s < {self.args.min_section_s:.0f} s: raise its N for a firm figure")


def images_per_class(images: int) -> int:
    if images <= 0 or images % CLASSES:
        raise SystemExit(f"image counts must be positive multiples of {CLASSES} (the classes), got {images}")
    return images // CLASSES


def write_recipe(
    out: Path,
    name: str,
    images: int,
    seed: int = 0,
    cpu_threads: int = 1,
    generator: dict | None = None,
    quality: dict | None = None,
) -> Path:
    """A naive-prompt recipe of `images` images over `CLASSES` classes, run dir `out/name`."""
    data = {
        "name": name,
        "seed": seed,
        "output_dir": str(out),
        "classes": {"set": "imagenet-1k", "limit": CLASSES},
        "configs": [{"name": "naive", "strategy": "naive", "images_per_class": images_per_class(images)}],
        "generator": {**GEN, "cpu_threads": cpu_threads, **(generator or {})},
        "storage": STORAGE,
        **({"quality": quality} if quality is not None else {}),
    }
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Swallow this process's progress bars (stages run in-process would bury the table)."""
    with contextlib.redirect_stderr(io.StringIO()):
        yield


def planned_run(out: Path, name: str, images: int, **kwargs: Any) -> Path:
    """Write a recipe and plan it (in this process: planning is not what these cases time)."""
    from synthset.generation.plan import plan_run
    from synthset.recipe import load_recipe

    recipe = load_recipe(write_recipe(out, name, images, **kwargs))
    with quiet():
        summary = plan_run(recipe)
    assert summary.rows == images, (summary.rows, images)
    return recipe.run_dir


@dataclass
class ChildResult:
    cmd: list[str]
    returncode: int
    wall_s: float
    cpu_s: float  # user + system of the child and the children it waited for
    max_rss_mib: float  # peak RSS of the largest process in the child's tree
    stdout: str
    stderr: str

    @property
    def reports(self) -> list[dict[str, Any]]:
        """The `BENCH {...}` lines the benchmark children print (one per rank under a launcher)."""
        return [
            json.loads(line[len(REPORT_PREFIX) :])
            for line in self.stdout.splitlines()
            if line.startswith(REPORT_PREFIX)
        ]

    @property
    def report(self) -> dict[str, Any]:
        reports = self.reports
        if len(reports) != 1:
            raise RuntimeError(f"expected one report from {self.cmd}, got {len(reports)}:\n{self.stderr[-3000:]}")
        return reports[0]

    def check(self) -> ChildResult:
        if self.returncode != 0:
            raise RuntimeError(f"{' '.join(self.cmd)} exited {self.returncode}:\n{self.stderr[-3000:]}")
        return self


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def start_child(argv: list[str], log_dir: Path, tag: str) -> tuple[subprocess.Popen, Path, Path]:
    """Start `argv` in its own session (so a signal reaches its whole process group)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    out, err = log_dir / f"{tag}.out", log_dir / f"{tag}.err"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        proc = subprocess.Popen(
            argv,
            cwd=REPO,
            env=child_env(),
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return proc, out, err


def wait_child(
    proc: subprocess.Popen, out: Path, err: Path, started: float, while_running: Callable[[], None] | None = None
) -> ChildResult:
    """Reap the child with `os.wait4`, which gives its own rusage; optionally poll `while_running`."""
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG if while_running else 0)
        if pid:
            break
        while_running()  # type: ignore[misc]
        time.sleep(0.02)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return ChildResult(
        cmd=[str(a) for a in proc.args],  # type: ignore[union-attr]
        returncode=proc.returncode,
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        max_rss_mib=usage.ru_maxrss / 1024,
        stdout=out.read_text(errors="replace"),
        stderr=err.read_text(errors="replace"),
    )


def process_tree(root: int) -> list[int]:
    """`root` and every live descendant, from /proc (torchrun starts its workers in new sessions)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def kill_tree(root: int) -> list[int]:
    """SIGKILL a process and all its descendants together, as a machine losing power would: stop them all
    first, so that none can see another die and react, then kill them."""
    tree = process_tree(root)
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
    tree = sorted(set(tree) | set(process_tree(root)))  # anything started meanwhile
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return tree


def run_child(argv: list[str], log_dir: Path, tag: str, timeout_s: float = 900) -> ChildResult:
    started = time.perf_counter()
    proc, out, err = start_child(argv, log_dir, tag)

    def watchdog() -> None:
        if time.perf_counter() - started > timeout_s:
            kill_tree(proc.pid)

    return wait_child(proc, out, err, started, watchdog)


def launched(module_args: list[str], processes: int) -> list[str]:
    """`python -m MODULE ...`, or `accelerate launch --num_processes N ... -m MODULE ...` for N > 1."""
    if processes == 1:
        return [*PYTHON, *module_args]
    return [*ACCELERATE_LAUNCH, "--num_processes", str(processes), *module_args]


def synthset_generate(run_dir: Path, processes: int = 1) -> list[str]:
    """The command line of `synthset generate RUN`, under `accelerate launch` for several processes."""
    return launched(["-m", "synthset", "generate", str(run_dir)], processes)


_RANK_LINE = re.compile(r"rank (\d+)/(\d+) \(worker \w+\): made (\d+) images .* in ([0-9.]+) s")


def rank_summaries(stdout: str) -> dict[int, dict[str, float]]:
    """The per-rank summary lines `synthset generate` prints: rank -> images made, seconds."""
    found = {}
    for match in _RANK_LINE.finditer(stdout):
        found[int(match.group(1))] = {"images": int(match.group(3)), "seconds": float(match.group(4))}
    return found


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")
