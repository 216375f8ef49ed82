"""`synthset submit --slurm` against a real SLURM: Debian's slurmctld, slurmd and munged on loopback.

The cluster (tests/slurmcluster.py) is one node with this machine's CPUs and no GPUs; the workers run the
tiny model on CPU. Nothing here is skipped: a machine where the daemons cannot start fails these tests
with the daemons' logs. Every run is checked the same way: each planned sample exactly once, every shard's
bytes those of a local `synthset generate`, no claim or temp file left behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from conftest import BASE_RECIPE, deep_update
from helpers import images_by_sample, shard_hashes, synthset_cli

from synthset import api
from synthset.generation.plan import plan_run
from synthset.generation.runner import generate_run
from synthset.recipe import load_recipe
from synthset.run.claims import ClaimBook, all_claims
from synthset.run.paths import RunDir
from synthset.run.plan import open_plan, plan_shard_names
from synthset.run.records import read_records
from synthset.scheduling.jobs import read_submissions, read_workers, task_states
from synthset.testing.slurm_cluster import SlurmCluster, start_cluster

# 4 classes x 4 images, 2 per shard: 8 shards of the tiny model at 16 px, one denoising step.
RECIPE = {
    "classes": {"set": "imagenet-1k", "limit": 4},
    "configs": [{"name": "naive", "strategy": "naive", "images_per_class": 4}],
    "generator": {"steps": 1, "width": 16, "height": 16, "batch_size": 2},
    "storage": {"format": "png", "shard_size": 2, "row_group_size": 2},
}
WAIT_SECONDS = 240.0  # generous: the machine is shared, and a requeued task waits ~cred_expire before it starts


@pytest.fixture(scope="session")
def slurm() -> SlurmCluster:
    """A one-node SLURM cluster for the whole session; SLURM_CONF points every client command at it."""
    # Its own folder, outside pytest's rotating basetemp: short (munge's socket path) and never pruned mid-run.
    folder = Path(tempfile.mkdtemp(prefix="synthset-slurm-"))
    cluster = start_cluster(folder)
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    yield cluster
    cluster.stop()
    shutil.rmtree(folder, ignore_errors=True)
    if previous is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = previous


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    """Plan a run of RECIPE named `name` (storage changed by `storage`); -> its run directory."""
    root = tmp_path_factory.mktemp("slurm-runs")

    def plan(name: str, storage: dict | None = None) -> Path:
        changes = {**RECIPE, "name": name, "output_dir": str(root / "runs")}
        changes["storage"] = {**RECIPE["storage"], **(storage or {})}
        path = root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(deep_update(BASE_RECIPE, changes), sort_keys=False))
        recipe = load_recipe(path)
        plan_run(recipe)
        return Path(recipe.run_dir)

    return plan


@pytest.fixture(scope="module")
def local_reference(planned) -> Path:
    """The run made by one local `synthset generate`: the bytes every SLURM run must reproduce."""
    run = planned("local")
    assert generate_run(run).all_shards_done
    return run


def submit(run: Path, *options: str) -> str:
    """`synthset submit RUN --slurm ...` as a user types it; -> the job id it printed."""
    done = synthset_cli("submit", str(run), "--slurm", *options)
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.split("submitted SLURM job ", 1)[1].split(":", 1)[0]
    assert read_submissions(RunDir(run).slurm_dir)[-1].job_id == job_id
    return job_id


def wait_until(condition, what: str, cluster: SlurmCluster, timeout: float = WAIT_SECONDS):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}\n{cluster.command('squeue', '-a').stdout}\n{cluster.logs()}")


def tasks_of(run: Path, job_id: str) -> dict[int, object]:
    return {task.task_id: task for task in task_states(RunDir(run).slurm_dir) if task.job_id == job_id}


def ended(run: Path, job_id: str) -> bool:
    """Every task of the job has ended for good, as the controller says (the test cluster keeps ended jobs
    for MinJobAge=600 s; a task missing from squeue for a moment, e.g. while requeued, has not ended)."""
    states = [task.state for task in tasks_of(run, job_id).values()]
    return bool(states) and all(state in ("finished", "cancelled", "failed", "timed out") for state in states)


def log_of(run: Path, job_id: str, task: int) -> str:
    """The task's log (stdout and stderr); a one-worker submission is a plain job: `<job>_0_log.*`."""
    folder = RunDir(run).slurm_dir
    paths = [*folder.glob(f"{job_id}_{task}_0_log.*"), *folder.glob(f"{job_id}_0_log.*")]
    return "".join(path.read_text() for path in sorted(paths))


class Blocker:
    """A live claim on the run's last shard, held by this test: the workers keep running (waiting for it)
    until it is released, so a requeue or a cancel always meets running workers, however fast they are."""

    def __init__(self, run: Path):
        self.book = ClaimBook(RunDir(run), lease_seconds=600)
        assert self.book.try_claim(plan_shard_names(open_plan(RunDir(run)))[-1]) is not None

    def release(self) -> None:
        self.book.close()


def recorded_by(run: Path, job_id: str, task: int) -> int:
    """Shards recorded by the task's workers (any of its restarts)."""
    workers = {
        w["worker"] for w in read_workers(RunDir(run).slurm_dir) if (w["job_id"], w["task_id"]) == (job_id, task)
    }
    return sum(record.worker in workers for record in read_records(RunDir(run)).values())


def assert_complete_once_like(run: Path, reference: Path) -> None:
    """Every planned sample exactly once, with the reference run's bytes; nothing left in flight."""
    names = plan_shard_names(open_plan(RunDir(run)))
    assert sorted(read_records(RunDir(run))) == sorted(names)
    assert images_by_sample(run) == images_by_sample(reference)  # fails on a sample written twice
    assert shard_hashes(run) == shard_hashes(reference)
    assert all_claims(RunDir(run)) == []
    assert not [p for p in (run / "shards").rglob("*") if p.name.startswith(".tmp")]


def test_three_workers_on_slurm_make_the_local_runs_bytes(slurm, planned, local_reference):
    run = planned("three")
    job_id = submit(run, "--workers", "3", "--time", "10")
    wait_until(lambda: ended(run, job_id), "the array to end", slurm)
    assert_complete_once_like(run, local_reference)
    tasks = tasks_of(run, job_id)
    assert sorted(tasks) == [0, 1, 2] and {t.state for t in tasks.values()} == {"finished"}
    assert {len(t.workers) for t in tasks.values()} == {1}
    for task in range(3):  # each task's own log, under RUN/logs/slurm/
        assert "Job completed successfully" in log_of(run, job_id, task)
    status = synthset_cli("status", str(run))
    assert status.returncode == 0, status.stderr
    for task in tasks.values():  # each worker's row names its job and task, and the task table lists them
        row = next(line for line in status.stdout.splitlines() if line.startswith(task.workers[0]))
        assert f"{job_id}_{task.task_id} finished" in row
        assert any(line.split()[:2] == [f"{job_id}_{task.task_id}", "finished"] for line in status.stdout.splitlines())


def test_a_requeued_task_stops_cleanly_and_the_run_completes_once(slurm, planned, local_reference):
    run = planned("requeue")
    blocker = Blocker(run)
    try:
        job_id = submit(run, "--workers", "2", "--time", "10")
        wait_until(lambda: recorded_by(run, job_id, 0) >= 1, "task 0's first shard", slurm)
        slurm.command("scontrol", "requeue", f"{job_id}_0")
        wait_until(lambda: "stop requested" in log_of(run, job_id, 0), "task 0 to stop", slurm)
    finally:
        blocker.release()
    wait_until(lambda: ended(run, job_id), "the array to end", slurm)
    assert_complete_once_like(run, local_reference)
    task = tasks_of(run, job_id)[0]
    assert (task.state, task.restarts) == ("finished", 1)
    log = log_of(run, job_id, 0)
    assert "SIGTERM received" in log  # the worker stopped itself (and released its shard); it was not killed
    assert "stop requested" in log


def test_a_task_at_its_time_limit_requeues_itself_and_the_run_completes_once(slurm, planned, local_reference):
    """A claim held by this test keeps the worker waiting for the last shard until its time-limit warning."""
    run = planned("timelimit")
    blocker = Blocker(run)
    try:
        # slurmctld checks limits every 30 s, so the warning comes early (measured here: up to ~20 s before
        # the time asked): asking for it 15 s before a 1-minute limit, it comes 25-45 s into an instance,
        # time enough for a restarted worker to start and make the freed shard (else it is warned again).
        job_id = submit(run, "--workers", "1", "--time", "1", "--signal-seconds", "15")
        wait_until(lambda: tasks_of(run, job_id)[0].restarts >= 1, "the time-limit requeue", slurm, timeout=180)
    finally:
        blocker.release()  # the last shard is free: the requeued worker makes it
    wait_until(lambda: ended(run, job_id), "the requeued task to end", slurm)
    assert_complete_once_like(run, local_reference)
    task = tasks_of(run, job_id)[0]
    assert task.state == "finished" and task.restarts >= 1
    log = log_of(run, job_id, 0)
    assert "SIGUSR1 received" in log and "Requeued job" in log


def test_cancel_then_a_new_submit_resumes(slurm, planned, local_reference):
    run = planned("cancel")
    blocker = Blocker(run)
    try:
        first = submit(run, "--workers", "2", "--time", "10")
        wait_until(lambda: len(read_records(RunDir(run))) >= 1, "a first shard", slurm)
        cancelled = synthset_cli("submit", "--cancel", str(run))
        assert cancelled.returncode == 0, cancelled.stderr
        assert f"cancelled SLURM job(s) {first};" in cancelled.stdout
        wait_until(lambda: ended(run, first), "the cancelled array to end", slurm)
        assert {t.state for t in tasks_of(run, first).values()} == {"cancelled"}
        # Stopped workers released their shards at once: only the test's own claim is left.
        assert [claim.worker for claim in all_claims(RunDir(run))] == [blocker.book.worker]
    finally:
        blocker.release()
    done_before = len(read_records(RunDir(run)))
    second = submit(run, "--workers", "1", "--time", "10")
    wait_until(lambda: ended(run, second), "the second submission to end", slurm)
    assert_complete_once_like(run, local_reference)
    worker = tasks_of(run, second)[0].workers[0]
    made_by_second = sum(record.worker == worker for record in read_records(RunDir(run)).values())
    assert made_by_second == len(plan_shard_names(open_plan(RunDir(run)))) - done_before
    assert [s.cancelled for s in read_submissions(RunDir(run).slurm_dir)] == [True, False]


def test_dry_run_prints_the_script_it_would_submit(planned):
    run = planned("dry")
    result = api.submit(run, dry_run=True)
    assert not (RunDir(run).slurm_dir / "jobs.json").exists()  # nothing submitted
    script = str(result)
    assert script.startswith("#!/bin/bash")
    assert "#SBATCH --signal=USR1@120" in script and "#SBATCH --requeue" in script
    assert f"--output={RunDir(run).slurm_dir}/%A_%a_0_log.out" not in script  # one worker: a plain job
    cli = synthset_cli(
        "submit", str(run), "--slurm", "--dry-run", "--workers", "4", "--gpus-per-worker", "2", "--time", "4:00:00",
        "--partition", "gpu", "--account", "lab", "--qos", "low", "--mem", "64G", "--cpus-per-worker", "16",
        "--setup", "module load cuda", "--sbatch=--constraint=a100", "--sbatch=--exclusive",
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    lines = set(cli.stdout.splitlines())
    expected = {
        "#SBATCH --array=0-3%4", "#SBATCH --ntasks-per-node=2", "#SBATCH --gpus-per-node=2", "#SBATCH --time=4:00:00",
        "#SBATCH --partition=gpu", "#SBATCH --account=lab", "#SBATCH --qos=low", "#SBATCH --mem=64G",
        "#SBATCH --cpus-per-task=8", "#SBATCH --constraint=a100", "#SBATCH --exclusive", "module load cuda",
        f"#SBATCH --output={RunDir(run).slurm_dir}/%A_%a_0_log.out",
    }  # fmt: skip
    assert expected <= lines, expected - lines


def test_bad_submit_options_are_one_line(planned, tmp_path):
    run = planned("bad")
    done = synthset_cli("submit", str(run), "--slurm", "--time", "soon")
    assert (done.returncode, done.stderr) == (
        2,
        "synthset: error: --time 'soon' is not a SLURM time (M, H:M:S or D-H:M:S)\n",
    )
    done = synthset_cli("submit", str(run), "--slurm", "--sbatch", "constraint=a100", "--dry-run")
    assert done.returncode == 2 and "--sbatch 'constraint=a100': write it as sbatch's long option" in done.stderr
    done = synthset_cli("submit", str(tmp_path / "nothing"), "--slurm", "--dry-run")
    assert done.returncode == 2 and "not a planned run directory" in done.stderr


def test_sbatch_refusal_is_one_line(slurm, planned):
    run = planned("refused")
    done = synthset_cli("submit", str(run), "--slurm", "--partition", "nosuch")
    assert done.returncode == 2
    assert done.stderr.startswith("synthset: error: sbatch refused the job: ") and "partition" in done.stderr.lower()
    assert len(done.stderr.splitlines()) == 1
    assert not (RunDir(run).slurm_dir / "jobs.json").exists()


def test_stop_event_releases_the_shard_in_hand_and_a_resume_matches(planned, local_reference, monkeypatch):
    """In process, no scheduler: the stop request arrives while the first of a shard's two batches is made.

    Shards of 4 here (two batches): a sample's bytes depend on the batch, not the shard, so the images are
    the reference's all the same.
    """
    import threading

    from synthset.generation import runner
    from synthset.generation.runner import WorkerOptions

    run = planned("stopped", {"shard_size": 4})
    stop = threading.Event()
    original = runner.ShardMaker._generate
    calls = []

    def generate_then_stop(self, batch):
        calls.append(1)
        if len(calls) == 3:  # the first batch of the second shard: stop arrives while it is generated
            stop.set()
        return original(self, batch)

    monkeypatch.setattr(runner.ShardMaker, "_generate", generate_then_stop)
    summary = generate_run(run, options=WorkerOptions(stop=stop))
    assert (summary.stopped, summary.shards_made, summary.all_shards_done) == (True, 1, False)
    assert len(read_records(RunDir(run))) == 1
    assert all_claims(RunDir(run)) == []  # released at once, not left to expire
    assert not [p for p in (run / "shards").rglob("*") if p.name.startswith(".tmp")]
    monkeypatch.setattr(runner.ShardMaker, "_generate", original)
    assert generate_run(run).all_shards_done
    assert sorted(read_records(RunDir(run))) == plan_shard_names(open_plan(RunDir(run)))
    assert images_by_sample(run) == images_by_sample(local_reference)


def test_generate_exits_75_on_sigterm_after_releasing_its_shard(planned, local_reference):
    import signal
    import subprocess
    import sys

    from helpers import REPO

    run = planned("sigterm")
    process = subprocess.Popen(
        [sys.executable, "-m", "synthset", "generate", str(run)], cwd=REPO, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + WAIT_SECONDS
    while not all_claims(RunDir(run)) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)  # until it holds its first shard
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 75, err
    assert "SIGTERM received" in err and "stopped by a signal" in out
    assert all_claims(RunDir(run)) == []
    shutil.rmtree(run / "logs", ignore_errors=True)
    assert generate_run(run).all_shards_done
    assert_complete_once_like(run, local_reference)


def doc_block(language: str, first_line: str) -> str:
    """The fenced `language` block of docs/clusters.md that starts with `first_line`."""
    from helpers import REPO
    from markdown_it import MarkdownIt

    tokens = MarkdownIt().parse((REPO / "docs" / "clusters.md").read_text())
    blocks = [
        t.content for t in tokens if t.type == "fence" and t.info.split()[:1] == [language]
    ]  # info: lang title=...
    matching = [block for block in blocks if block.startswith(first_line)]
    assert len(matching) == 1, f"docs/clusters.md: {len(matching)} {language} blocks start with {first_line!r}"
    return matching[0]


def test_the_docs_plain_sbatch_script_is_accepted_by_sbatch(slurm, tmp_path):
    script = tmp_path / "generate.sbatch"
    script.write_text(doc_block("bash", "#!/bin/bash\n#SBATCH"))
    # The test node has 2 CPUs and no GPUs: only the script's resource requests are overridden (command line
    # options win over #SBATCH lines); every other line is checked by the controller as written.
    fits = ("--cpus-per-task=1", "--gpus-per-task=0")
    done = slurm.command("sbatch", "--test-only", *fits, str(script), check=False)
    assert done.returncode == 0 and "to start at" in done.stderr, done.stderr
    bad = tmp_path / "bad.sbatch"
    bad.write_text(script.read_text().replace("--time=4:00:00", "--time=soon"))
    refused = slurm.command("sbatch", "--test-only", *fits, str(bad), check=False)
    assert refused.returncode != 0 and "time" in refused.stderr.lower()  # the check can fail


def test_the_docs_kubernetes_manifest_is_an_indexed_job_of_generate_workers():
    manifest = yaml.safe_load(doc_block("yaml", "apiVersion: batch/v1"))
    assert (manifest["apiVersion"], manifest["kind"]) == ("batch/v1", "Job")
    spec = manifest["spec"]
    assert spec["completionMode"] == "Indexed"
    assert isinstance(spec["completions"], int) and spec["parallelism"] == spec["completions"]
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"  # required by podFailurePolicy
    (container,) = pod["containers"]
    assert container["command"][:2] == ["synthset", "generate"]
    rules = spec["podFailurePolicy"]["rules"]
    assert {"type": "DisruptionTarget"} in rules[0]["onPodConditions"]
    assert rules[1]["onExitCodes"] == {"containerName": container["name"], "operator": "In", "values": [75]}
    mounts = {m["name"] for m in container["volumeMounts"]}
    assert mounts == {v["name"] for v in pod["volumes"]}
