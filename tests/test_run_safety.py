"""Everything around the generation loop: concurrent launches, a killed launcher, edits after planning,
a killed build, a full disk, bad class input, leftovers. Each of these broke before the run layer."""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import datasets
import pytest
import yaml
from helpers import REPO, accelerate_launch_command, images_by_sample, shard_hashes, synthset_cli, synthset_command

from synthset.builders.assemble import build_dataset
from synthset.cli import main
from synthset.errors import SynthsetError
from synthset.generation.plan import plan_run
from synthset.generation.processes import ORPHANED_AT_START, orphaned_at_start
from synthset.generation.progress import GlobalProgress
from synthset.generation.runner import generate_run
from synthset.recipe import load_recipe
from synthset.run.claims import ClaimBook, Worker
from synthset.run.lock import read_lock
from synthset.run.paths import RunDir
from synthset.run.records import read_records
from synthset.run.status import format_status, run_status

SLOW = {"storage": {"shard_size": 2}, "generator": {"steps": 20}}  # 8 shards of 2 images, ~1 s each


def planned(write_recipe, name: str, changes: dict | None = None) -> Path:
    recipe = load_recipe(write_recipe({**(changes or {}), "name": name}, f"{name}.yaml"))
    plan_run(recipe)
    return recipe.run_dir


@pytest.fixture
def reference(write_recipe) -> Path:
    run_dir = planned(write_recipe, "reference", SLOW)
    generate_run(run_dir)
    return run_dir


def start_generate(run_dir: Path, *extra: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [*synthset_command(), "generate", str(run_dir), *extra],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def shards_made(stdout: str) -> int:
    return sum(int(n) for n in re.findall(r"made \d+ images in (\d+) shards", stdout))


def wait_for_records(run_dir: Path, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(read_records(RunDir(run_dir))) < count:
        assert time.monotonic() < deadline, f"no {count} records after {timeout} s"
        time.sleep(0.05)


# -- concurrent launches -------------------------------------------------------------------------------
def test_two_launches_started_together_share_the_run(reference: Path, write_recipe):
    run_dir = planned(write_recipe, "together", SLOW)
    first, second = start_generate(run_dir), start_generate(run_dir)
    outputs = [process.communicate(timeout=300) for process in (first, second)]
    for process, (_, stderr) in zip((first, second), outputs, strict=True):
        assert process.returncode == 0, stderr[-2000:]
        assert "Traceback" not in stderr
    assert shards_made(outputs[0][0]) + shards_made(outputs[1][0]) == 8  # no shard made twice
    assert min(shards_made(stdout) for stdout, _ in outputs) >= 1  # and both did some of the work
    assert shard_hashes(run_dir) == shard_hashes(reference)
    assert not list(RunDir(run_dir).claims_dir.rglob("*.claim.*"))


def test_a_worker_whose_claim_was_taken_over_does_not_count_the_shard_it_dropped(reference: Path, write_recipe):
    run_dir = planned(write_recipe, "paused", SLOW)
    first = start_generate(run_dir, "--lease-seconds", "3")
    wait_for_records(run_dir, 1)
    time.sleep(0.3)  # inside its second shard (about 1 s each)
    first.send_signal(signal.SIGSTOP)  # paused mid-shard: its heartbeats stop too
    try:
        time.sleep(4)  # past its lease
        second = start_generate(run_dir, "--lease-seconds", "3")  # takes the paused worker's shard over
        out2, err2 = second.communicate(timeout=300)
    finally:
        first.send_signal(signal.SIGCONT)
    out1, err1 = first.communicate(timeout=300)
    assert (first.returncode, second.returncode) == (0, 0), err1[-2000:] + err2[-2000:]
    assert "1 shards made but dropped unrecorded: another worker had taken over their claims" in out1, out1
    assert shards_made(out1) + shards_made(out2) == 8  # the dropped copy is not counted as made
    assert shard_hashes(run_dir) == shard_hashes(reference)


def test_a_second_launch_joining_a_running_one_shares_the_rest(reference: Path, write_recipe):
    run_dir = planned(write_recipe, "joined", SLOW)
    first = start_generate(run_dir)
    wait_for_records(run_dir, 2)
    second = start_generate(run_dir)
    (out1, err1), (out2, err2) = first.communicate(timeout=300), second.communicate(timeout=300)
    assert (first.returncode, second.returncode) == (0, 0), err1[-2000:] + err2[-2000:]
    assert "Traceback" not in err1 + err2
    assert shards_made(out1) + shards_made(out2) == 8
    assert images_by_sample(run_dir) == images_by_sample(reference)


def running_workers(marker: str) -> list[int]:
    """Pids of live processes whose command line mentions `marker` (a run directory)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (proc / "stat").read_text().split(")")[-1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            pids.append(int(proc.name))
    return pids


def test_killing_the_launchers_process_group_leaves_no_worker_running(reference: Path, write_recipe):
    run_dir = planned(write_recipe, "orphans", SLOW)
    launcher = subprocess.Popen(
        accelerate_launch_command(2, "generate", str(run_dir)),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_for_records(run_dir, 1)
    assert len(running_workers(str(run_dir))) >= 3  # the launcher and its two workers
    os.killpg(launcher.pid, signal.SIGKILL)
    launcher.wait()
    deadline = time.monotonic() + 10
    while running_workers(str(run_dir)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert running_workers(str(run_dir)) == []  # torch elastic's workers had their own sessions

    summary = generate_run(run_dir)  # the restart takes over the dead workers' claims at once
    assert summary.all_shards_done
    assert shard_hashes(run_dir) == shard_hashes(reference)


def test_a_worker_orphaned_while_starting_says_so_truly_and_a_pid_1_launcher_is_not_gone(write_recipe, tmp_path):
    assert orphaned_at_start(1, "/sbin/init splash") and orphaned_at_start(1, None)
    in_a_container = "/usr/bin/python3 /usr/local/bin/accelerate launch -m synthset generate runs/x"
    assert not orphaned_at_start(1, in_a_container)  # `accelerate launch` as a container's pid 1: alive
    assert not orphaned_at_start(4242, "bash")  # a parent still there: watched, not judged
    run_dir = planned(write_recipe, "orphaned")
    errors = tmp_path / "worker.err"
    worker = f"LOCAL_RANK=0 exec {' '.join(synthset_command())} generate {run_dir} 2>{errors}"
    subprocess.run(["bash", "-c", f"( {worker} & )"], cwd=REPO, check=True)  # its parent exits at once
    deadline = time.monotonic() + 60
    while "worker" not in (errors.read_text() if errors.exists() else "") and time.monotonic() < deadline:
        time.sleep(0.2)
    lines = [line for line in errors.read_text().splitlines() if line.startswith("synthset: error")]
    assert len(lines) == 1 and lines[0].startswith(f"synthset: error: {ORPHANED_AT_START}; worker "), lines
    assert "(pid 1) is gone" not in errors.read_text() and read_records(RunDir(run_dir)) == {}


# -- edits after planning ------------------------------------------------------------------------------
def test_a_lock_edited_after_planning_is_refused(write_recipe):
    run_dir = planned(write_recipe, "edited")
    lock_file = RunDir(run_dir).lock_file
    lock_file.write_text(lock_file.read_text().replace("steps: 2", "steps: 4"))
    result = synthset_cli("generate", str(run_dir))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"synthset: error: {lock_file}: edited after planning (its recipe's generation settings no longer match "
        f"generation_key {read_generation_key(lock_file)}); change the recipe file and run `synthset plan` instead"
    ]
    assert not RunDir(run_dir).shards_dir.exists()


def read_generation_key(lock_file: Path) -> str:
    return yaml.safe_load(lock_file.read_text())["generation_key"]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda text: text.replace("generation_key:", "generation_kee:"), "generation_key missing or malformed"),
        (lambda text: text + "\n  - : [unclosed\n", "not valid YAML; run `synthset plan` again to rewrite it"),
        (lambda text: "just a string\n", "not a lock file (a YAML mapping)"),
    ],
)
def test_a_broken_lock_is_one_line(write_recipe, damage, message: str):
    run_dir = planned(write_recipe, "broken-lock")
    lock_file = RunDir(run_dir).lock_file
    lock_file.write_text(damage(lock_file.read_text()))
    for stage in ("generate", "validate", "build"):
        result = synthset_cli(stage, str(run_dir))
        assert result.returncode == 2, stage
        assert len(result.stderr.splitlines()) == 1 and message in result.stderr, (stage, result.stderr)


@pytest.fixture
def local_model(tmp_path: Path, synthset_home: Path) -> Path:
    model = tmp_path / "my-model"
    shutil.copytree(synthset_home / "models" / "tiny-sd", model)
    return model


def test_a_local_model_edited_after_planning_is_refused(write_recipe, local_model: Path):
    run_dir = planned(write_recipe, "local", {"generator": {"model": str(local_model)}})
    generate_run(run_dir)  # the files are as pinned: fine (and the cheap index is written)
    config = local_model / "scheduler" / "scheduler_config.json"
    config.write_text(config.read_text().replace('"steps_offset": 1', '"steps_offset": 0'))
    result = synthset_cli("generate", str(run_dir))
    assert result.returncode == 2
    pinned = read_lock(RunDir(run_dir)).model.revision
    assert result.stderr.startswith(
        f"synthset: error: generator.model: the files of {str(local_model)!r} changed after planning "
        f"(pinned {pinned[:19]}..., now sha256:"
    )
    assert len(result.stderr.splitlines()) == 1
    shutil.rmtree(local_model)
    result = synthset_cli("generate", str(run_dir))
    assert result.stderr.splitlines() == [
        f"synthset: error: generator.model: the model directory {str(local_model)!r} that the plan pinned is gone; "
        "restore it, or plan the run again"
    ]


def test_a_model_missing_its_unet_weights_stops_at_plan(write_recipe, local_model: Path):
    for weights in (local_model / "unet").glob("*.safetensors"):
        weights.unlink()
    path = write_recipe({"name": "no-unet", "generator": {"model": str(local_model)}}, "no-unet.yaml")
    result = synthset_cli("plan", str(path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"synthset: error: {path}: generator.model: component 'unet' (UNet2DConditionModel) has no weights in "
        f"{str(local_model / 'unet')!r}"
    ]


# -- a killed build ------------------------------------------------------------------------------------
KILL_AFTER_TWO_LINKS = """
import os, signal, sys
from synthset.builders import assemble
linked = []
def link_then_die(source, target, _link=assemble._link_or_copy):
    _link(source, target)
    linked.append(target)
    if len(linked) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
assemble._link_or_copy = link_then_die
assemble.build_dataset(sys.argv[1])
"""


def killed_build(run_dir: Path) -> int:
    import sys

    return subprocess.run([sys.executable, "-c", KILL_AFTER_TWO_LINKS, str(run_dir)], cwd=REPO).returncode


def test_a_killed_build_never_leaves_a_loadable_partial_dataset(write_recipe):
    run_dir = planned(write_recipe, "built", {"configs": [{"name": "naive", "images_per_class": 2}, {
        "name": "lar", "strategy": "lar", "images_per_class": 2}], "storage": {"shard_size": 2}})  # fmt: skip
    generate_run(run_dir)
    assert killed_build(run_dir) == -signal.SIGKILL
    dataset_dir = RunDir(run_dir).dataset_dir
    assert not dataset_dir.exists()  # the killed first build left nothing at dataset/
    with pytest.raises(FileNotFoundError):
        datasets.load_dataset(str(dataset_dir))

    build_dataset(run_dir)  # removes the killed build's directory, then builds
    assert not list(run_dir.glob(".dataset-build-*"))
    before = {p.relative_to(dataset_dir): p.read_bytes() for p in dataset_dir.rglob("*") if p.is_file()}
    assert killed_build(run_dir) == -signal.SIGKILL
    after = {p.relative_to(dataset_dir): p.read_bytes() for p in dataset_dir.rglob("*") if p.is_file()}
    assert after == before  # a killed rebuild leaves the previous dataset exactly as it was
    assert datasets.load_dataset(str(dataset_dir), "naive", split="train").num_rows == 6


# -- filesystem faults ---------------------------------------------------------------------------------
def test_a_file_size_limit_is_one_line_naming_the_shard_and_leaves_no_record(write_recipe):
    run_dir = planned(write_recipe, "efbig")
    command = " ".join([*synthset_command(), "generate", str(run_dir)])
    result = subprocess.run(["bash", "-c", f"ulimit -f 4; exec {command}"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2, result.stderr[-2000:]
    shard = RunDir(run_dir).shard_file("naive/train-b0-00000")
    assert "Traceback" not in result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("synthset: error")] == [
        f"synthset: error: {shard}: file too large for this process (see `ulimit -f`): raise the limit or use a "
        "smaller storage.shard_size, then run the same command again"
    ]
    assert read_records(RunDir(run_dir)) == {}
    assert not list(RunDir(run_dir).shards_dir.rglob(".tmp-*"))


def test_a_full_disk_is_one_line_naming_the_shard_and_leaves_no_record(write_recipe):
    run_dir = planned(write_recipe, "enospc")
    shard = RunDir(run_dir).shard_file("naive/train-b0-00000")
    shard.parent.mkdir(parents=True)
    # This process's temp file for the first shard leads to /dev/full: every write fails with ENOSPC.
    os.symlink("/dev/full", shard.with_name(f".tmp-{socket.gethostname()}.{os.getpid()}-{shard.name}"))
    with pytest.raises(SynthsetError) as raised:
        generate_run(run_dir)
    assert str(raised.value) == (
        f"{shard}: no space left on the device: free some space, then run the same command again"
    )
    assert read_records(RunDir(run_dir)) == {}
    assert not list(shard.parent.glob(".tmp-*"))


def test_a_run_directory_mkdir_may_not_make_is_one_line(write_recipe, tmp_path: Path, monkeypatch, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    real_mkdir = Path.mkdir

    def immutable(self: Path, *args, **kwargs) -> None:  # `chattr +i locked`: the kernel answers EPERM inside it
        if self.parent == locked:
            raise PermissionError(errno.EPERM, "Operation not permitted", str(self))
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", immutable)
    path = write_recipe({"output_dir": str(locked)}, "eperm.yaml")
    assert main(["plan", str(path)]) == 2
    assert capsys.readouterr().err.splitlines() == [f"synthset: error: {locked / 't'}: operation not permitted"]


def test_a_file_size_limit_on_a_file_other_than_a_shard_gives_no_shard_advice(write_recipe):
    path = write_recipe({}, "efbig-plan.yaml")
    command = " ".join([*synthset_command(), "plan", str(path)])
    result = subprocess.run(["bash", "-c", f"ulimit -f 1; exec {command}"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    classes = RunDir(load_recipe(path).run_dir).classes_file  # the first file plan writes, over 1 KB
    assert result.stderr.splitlines() == [
        f"synthset: error: {classes}: file too large for this process (see `ulimit -f`): raise the limit, then run "
        "the same command again"
    ]


def test_an_output_dir_that_is_a_file_is_one_line(write_recipe, tmp_path: Path):
    (tmp_path / "taken").write_text("not a directory")
    path = write_recipe({"output_dir": str(tmp_path / "taken")}, "file.yaml")
    result = synthset_cli("plan", str(path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"synthset: error: {path}: output_dir: {str(tmp_path / 'taken')!r} is a file, not a directory; choose another "
        "output_dir"
    ]


# -- class input ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("classes", "message"),
    [
        ({"subset": []}, "classes.subset: is empty: name at least one class, or leave subset out"),
        ({"subset": ["tench", "   "]}, "classes.subset: entry 1 is blank"),
        ({"subset": ["tench\ngoldfish"]}, "classes.subset: entry 0 ('tench\\ngoldfish') spans several lines"),
        (
            {"subset": ["tench", "goldfish", "tench"]},
            "classes.subset: entry 2 ('tench') names the same class as 'tench'; name each once",
        ),
        (
            {"subset": ["tench", "n01440764"]},  # the same class by its wnid
            "classes.subset: entry 1 ('n01440764') names the same class as 'tench'; name each once",
        ),
        (
            {"limit": 5000},
            "classes.limit: 5000 is more classes than imagenet-1k's 1000; lower it or leave it out",
        ),
        (
            {"subset": ["tench", "goldfish"], "limit": 3},
            "classes.limit: 3 is more classes than the 2 that classes.subset names; lower it or leave it out",
        ),
    ],
)
def test_bad_class_subsets_are_refused_at_plan(write_recipe, classes: dict, message: str):
    result = synthset_cli("plan", str(write_recipe({"classes": classes}, "subset.yaml")))
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and message in result.stderr


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (["cat", "   "], "entry 1: the class name is blank"),
        (["cat", "big\ndog"], "entry 1: the class name 'big\\ndog' spans several lines; give it on one line"),
    ],
)
def test_blank_or_multi_line_names_in_a_class_list_are_refused(write_recipe, tmp_path: Path, entries, message):
    class_list = tmp_path / "classes.yaml"
    class_list.write_text(yaml.safe_dump(entries))
    changes = {
        "builder": "synth_fewshot",
        "classes": {"set": str(class_list)},
        "configs": [{"name": "custom_1shot", "images_per_class": 1}],
    }
    result = synthset_cli("plan", str(write_recipe(changes, "custom.yaml")))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"synthset: error: {class_list}: {message}"]


# -- leftovers -----------------------------------------------------------------------------------------
def test_clean_removes_exactly_what_no_plan_row_owns(write_recipe):
    run_dir = planned(write_recipe, "shrunk", {"storage": {"shard_size": 2}})
    generate_run(run_dir)  # 3 classes x 5 images in 8 shards
    plan_run(load_recipe(write_recipe({"name": "shrunk", "storage": {"shard_size": 2}, "classes": {"limit": 2}},
                                      "shrunk.yaml")))  # fmt: skip
    # 2 classes: 10 images in shards 0..4, the same rows as before; shards 5..7 of the old plan are stale
    with pytest.raises(SynthsetError, match=r"not in the plan \(`synthset clean .*` removes it\)"):
        build_dataset(run_dir)
    listed = synthset_cli("clean", str(run_dir))
    stale = [f"shards/naive/train-b0-{i:05d}.{suffix}" for i in (5, 6, 7) for suffix in ("json", "parquet")]
    assert listed.returncode == 0
    assert [line.strip() for line in listed.stdout.splitlines()[1:-1]] == sorted(stale)
    assert all((run_dir / path).exists() for path in stale)  # listing removes nothing
    assert synthset_cli("clean", str(run_dir), "--yes").returncode == 0
    assert not any((run_dir / path).exists() for path in stale)
    assert sorted(read_records(RunDir(run_dir))) == [f"naive/train-b0-{i:05d}" for i in range(5)]
    generate_run(run_dir)
    build_dataset(run_dir)


# -- the progress bar ----------------------------------------------------------------------------------
def test_progress_counts_a_redone_shard_once(write_recipe):
    run_dir = planned(write_recipe, "progress")
    generate_run(run_dir)
    run = RunDir(run_dir)
    progress = GlobalProgress(run, 15, read_lock(run).generation_key, enabled=True)
    assert progress.bar.n == 15
    progress.redoing("naive/train-b0-00001")  # its record (6 rows) is about to be replaced
    counts = []
    for _ in range(3):
        progress.generated("naive/train-b0-00001", 2)
        progress.refresh(force=True)
        counts.append(progress.bar.n)
    assert counts == [15, 15, 15]  # 9 recorded + the 2, 4, 6 redone: never 17, 19, 21
    record = read_records(run)["naive/train-b0-00001"]
    os.utime(run.record_file(record.shard))  # the new record lands
    progress.recorded(record)
    progress.refresh(force=True)
    assert progress.bar.n == 15
    progress.close()


# -- synthset status -----------------------------------------------------------------------------------
def test_status_counts_match_the_records_and_claims(write_recipe):

    run_dir = planned(write_recipe, "status", {"storage": {"shard_size": 2}})
    generate_run(run_dir)  # 8 shards of 2, 2, ..., 1 images
    run = RunDir(run_dir)
    records = read_records(run)
    maker = next(iter(records.values())).worker
    host, pid, worker_id = maker.rsplit(".", 2)
    for name in ("naive/train-b0-00005", "naive/train-b0-00006", "naive/train-b0-00007"):
        run.record_file(name).unlink()  # 3 shards (2 + 2 + 1 images) no longer done
    live = ClaimBook(run, Worker(worker_id, host, int(pid)), lease_seconds=3600)  # the same worker, still alive
    assert live.try_claim("naive/train-b0-00005") is not None
    gone = ClaimBook(run, Worker("gone", "another-host", 1), lease_seconds=3600)
    assert gone.try_claim("naive/train-b0-00006") is not None
    old = time.time() - 7200
    os.utime(run.claims_dir / "naive" / "train-b0-00006.claim.0", (old, old))  # no heartbeat for 2 h

    status = run_status(run_dir, lease_seconds=3600)
    assert (status.shards, status.shards_done, len(status.claimed), len(status.expired), status.shards_pending) == (
        8, 5, 1, 1, 1,
    )  # fmt: skip
    assert (status.images, status.images_done) == (15, 10)
    workers = {w.worker: w for w in status.workers}
    assert (workers[maker].shards_done, workers[maker].images_done, workers[maker].holding) == (
        5, 10, ["naive/train-b0-00005"],
    )  # fmt: skip
    assert workers["another-host.1.gone"].expired and workers["another-host.1.gone"].holding == ["naive/train-b0-00006"]
    rate = 10 / sum(records[n].seconds for n in records if n not in ("naive/train-b0-00005", "naive/train-b0-00006",
                                                                       "naive/train-b0-00007"))  # fmt: skip
    assert status.eta_seconds == pytest.approx(5 / rate)
    report = format_status(status)
    assert report.splitlines()[0] == "shards: 5 done, 1 being made, 1 with an expired lease, 1 pending (of 8)"
    assert "naive/train-b0-00006 (EXPIRED)" in report
    live.close()
    gone.close()


def test_status_gives_no_eta_reason_that_contradicts_the_shards_being_made(write_recipe):
    run_dir = planned(write_recipe, "starting", SLOW)
    run = RunDir(run_dir)
    books = [ClaimBook(run, Worker(f"w{i}", "gpu-host", os.getpid()), lease_seconds=3600) for i in range(2)]
    for book, shard in zip(books, ("naive/train-b0-00000", "naive/train-b0-00001"), strict=True):
        assert book.try_claim(shard) is not None  # two workers started; neither has recorded a shard
    report = format_status(run_status(run_dir, lease_seconds=3600)).splitlines()
    assert report[0] == "shards: 0 done, 2 being made, 0 with an expired lease, 6 pending (of 8)"
    assert report[3] == "ETA: unknown until a shard is recorded (2 being made, no rate measured yet)"
    for book in books:
        book.close()
    assert format_status(run_status(run_dir)).splitlines()[3] == "ETA: unknown (no live worker)"
