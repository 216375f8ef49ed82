"""`make smoke-full`: every full-size replica, one image each, through the real runner on CPU.

For each generator a recipe names (SD 1.5, SD 2.1-base, SD 2.1 768-v, SD 2.1-unCLIP, SDXL base) this
builds its full-size replica (`synthset.testing.replicas`: the published configs, random weights) if
missing, writes a recipe naming the real Hub id, and runs the stages a user runs, in offline test mode
(`SYNTHSET_TEST_REPLICAS=full`, so the Hub id resolves to the replica):

    synthset plan RECIPE  ->  synthset generate RUN (instrumented)  ->  synthset build RUN  ->  load_dataset

at the model's native resolution, 2 steps, batch size 1, `dtype: auto` and `attention: auto` (float32
and SDPA on a CPU). `generate` runs in a child process as `synthset.cli.main(["generate", RUN])` with
hooks on the UNet and VAE (`benchmarks/observe.py`), so the checks see what the model is fed:

- the scheduler swap keeps the model's prediction type (v for SD 2.1 768 and unCLIP) and timestep
  spacing, and the UNet gets the timesteps that scheduler sets;
- unCLIP: class labels of width 2 x 1024 (image embedding + noise-level embedding), the recipe's
  `noise_level` in the second half, zeros in the unconditional row;
- SDXL: `text_encoder_2` loaded, 2048-wide text states (768 + 1280), 1280-wide pooled embeddings, the
  six time ids (original size, crop, target size), zeros as the unconditional embedding;
- the safety checker of SD 1.5 is not loaded and the generate log says so;
- `dtype: auto` gave float32 and `attention: auto` gave SDPA processors, both recorded in the rows;
- the stored image has the native size.

Memory is a check too: each replica has a peak-RSS bound (`Case.rss_bound_gib`). Every stage's child is
watched while it runs and stopped once its RSS passes the bound (a clear FAIL line, not the kernel's OOM
killer taking it at the machine's limit), and the largest peak of any stage is checked against the bound
at the end. The smoke runs what a CPU run of synthset runs (`dtype: auto` = float32): nothing is switched
off or down for it.

It prints, per replica: parameters, load time, seconds per UNet call (one denoising step with
classifier-free guidance) and per VAE decode, and peak RSS against its bound; and writes
`benchmarks/results/smoke-full-<time>.json`. Exit status 1 when a check fails. The full replicas take
~20 GB of disk under $SYNTHSET_HOME/models (SD 1.5 2.7, SD 2.1-base 2.6, SD 2.1 2.6, unCLIP 3.9, SDXL
6.9); SDXL is bounded at 19.0 GiB of RAM. Run one replica with `--only sdxl-base`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import PYTHON, REPO, ChildResult, kill_tree, start_child, wait_child

STEPS = 2
NOISE_LEVEL = 100  # unCLIP: a nonzero level, so the check sees it travel from the recipe to the UNet
GIB = 1024**3


@dataclass(frozen=True)
class Case:
    replica: str
    scheduler: str  # the recipe's generator.scheduler: "default" keeps the model's own
    expect_prediction: str
    expect_spacing: str  # the model scheduler's effective timestep spacing, kept through a swap
    text_width: int  # encoder_hidden_states width the UNet gets
    rss_bound_gib: float  # peak RSS of any stage's process; see BOUNDS below
    augcond: bool = False


# Peak-RSS bounds, GiB: float32 weights + the VAE decode at native size (the larger phase) + ~0.9 GiB of
# imports, rounded up, and below this 23 GiB machine with room for the rest of it. SDXL: 12.9 GiB of
# weights + 3.8 GiB decoding 1024 px; measured 17.69, 17.93 and 18.04 GiB in three runs of the same code on
# 2026-12-06 (0.35 GiB apart), 22.9 GiB (OOM-killed) before issue 29. Its bound is 19.0: about 1 GiB above the
# highest, so CI (which runs this) does not fail on allocator noise, and still 3.9 GiB below the regression it
# must catch. The others: their last full runs
# (README table) with ~10% of room.
CASES = {
    "sd15": Case("sd15", "dpm++", "epsilon", "leading", 768, 7.5),
    "sd21-base": Case("sd21-base", "default", "epsilon", "leading", 1024, 8.5),
    "sd21": Case("sd21", "dpm++", "v_prediction", "leading", 1024, 10.0),
    "sd21-unclip": Case("sd21-unclip", "default", "v_prediction", "leading", 1024, 13.0, augcond=True),
    "sdxl-base": Case("sdxl-base", "default", "epsilon", "leading", 2048, 19.0),
}


@dataclass
class Outcome:
    replica: str
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def check(self, name: str, ok: bool, detail: Any = "") -> None:
        self.checks.append((name, bool(ok), str(detail)))
        print(f"  [{'ok' if ok else 'FAIL'}] {name}" + (f": {detail}" if detail != "" else ""), flush=True)

    @property
    def passed(self) -> bool:
        return all(ok for _, ok, _ in self.checks)


def smoke_env(home: Path) -> dict[str, str]:
    from synthset.testing.replicas import offline_test_env

    return {**offline_test_env("full"), "SYNTHSET_HOME": str(home), "HF_HUB_OFFLINE": "1"}


def write_recipe(case: Case, work: Path, threads: int) -> Path:
    """One image at native size, naming the real Hub id; unCLIP gets two noise JPEGs as its real images."""
    from synthset.testing.replicas import REPLICAS

    replica = REPLICAS[case.replica]
    data: dict[str, Any] = {
        "name": f"smoke-{case.replica}",
        "output_dir": str(work / "runs"),
        "classes": {"set": "imagenet-1k", "limit": 1},
        "configs": [{"name": "naive", "strategy": "naive", "images_per_class": 1}],
        "generator": {
            "model": replica.hub_id,
            "scheduler": case.scheduler,
            "steps": STEPS,
            "guidance": 7.5,
            "width": replica.native_size,
            "height": replica.native_size,
            "batch_size": 1,
            "cpu_threads": threads,
        },
        "storage": {"format": "jpeg", "quality": 95, "shard_size": 1, "row_group_size": 1},
    }
    if case.augcond:
        import numpy as np
        from PIL import Image

        folder = work / "real" / "n01440764"  # the first ImageNet class (tench), by wnid
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")
        data["configs"] = [{"name": "augcond", "strategy": "augcond", "images_per_class": 1}]
        data["real_images"] = {"folder": str(work / "real")}
        data["generator"]["noise_level"] = NOISE_LEVEL
    path = work / f"{case.replica}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class MemoryBoundExceeded(RuntimeError):
    """A stage's process passed its replica's peak-RSS bound and was stopped."""


def process_rss(pid: int) -> int:
    """Bytes resident in process `pid` now (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def rss_bound_line(tag: str, peak_bytes: float, bound_gib: float) -> str:
    """The one line that says a stage's peak RSS against the bound."""
    verdict = "within" if peak_bytes <= bound_gib * GIB else "over"
    return f"{tag}: peak RSS {peak_bytes / GIB:.2f} GiB, {verdict} the bound of {bound_gib:g} GiB"


def run_bounded(argv: list[str], log_dir: Path, tag: str, bound_gib: float, timeout_s: float = 7200) -> ChildResult:
    """Run `argv`, stopping it (and raising MemoryBoundExceeded) as soon as its RSS passes `bound_gib`.

    The kernel's OOM killer would only stop it at the machine's limit, as a signal with no reason given,
    and may take another process instead; this makes a memory regression an ordinary failed check.
    """
    started = time.perf_counter()
    proc, out, err = start_child(argv, log_dir, tag)
    over: list[int] = []

    def watch() -> None:
        rss = process_rss(proc.pid)
        if rss > bound_gib * GIB and not over:
            over.append(rss)
            kill_tree(proc.pid)
        elif time.perf_counter() - started > timeout_s:
            kill_tree(proc.pid)

    result = wait_child(proc, out, err, started, watch)
    if over:
        raise MemoryBoundExceeded(rss_bound_line(tag, over[0], bound_gib) + "; stopped")
    return result


def _stage(argv: list[str], work: Path, tag: str, env: dict[str, str], bound_gib: float, peaks: dict[str, float]):
    """One stage in a child process under the replica's memory bound; its peak RSS goes to `peaks`."""
    os.environ.update(env)  # the child gets this process's environment
    result = run_bounded([*PYTHON, *argv], work / "logs", tag, bound_gib)
    peaks[tag] = result.max_rss_mib * 2**20
    if result.returncode != 0:
        raise RuntimeError(f"{tag}: {' '.join(argv)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


def check_peak_rss(outcome: Outcome, peaks: dict[str, float], bound_gib: float) -> None:
    """The largest peak of any stage against the replica's bound (a regression fails the smoke)."""
    tag = max(peaks, key=lambda name: peaks[name])
    outcome.check(
        "peak RSS within its bound", peaks[tag] <= bound_gib * GIB, rss_bound_line(tag, peaks[tag], bound_gib)
    )
    outcome.figures.update(
        peak_rss_gib=round(peaks[tag] / GIB, 2),
        peak_rss_stage=tag,
        rss_bound_gib=bound_gib,
        stage_peak_rss_gib={name: round(value / GIB, 2) for name, value in peaks.items()},
    )


def model_scheduler(replica_dir: Path) -> dict[str, Any]:
    """The replica's own scheduler as diffusers builds it (defaults filled in): what a swap must keep."""
    import diffusers

    config = json.loads((replica_dir / "scheduler" / "scheduler_config.json").read_text())
    scheduler = getattr(diffusers, config["_class_name"]).from_config(config)
    return {key: scheduler.config.get(key) for key in ("prediction_type", "timestep_spacing")}


def check_observations(case: Case, obs: dict[str, Any], outcome: Outcome, replica_dir: Path) -> None:
    from synthset.generation.pipeline_options import SAFETY_CHECKER_OFF
    from synthset.testing.replicas import REPLICAS, read_configs

    own = model_scheduler(replica_dir)
    scheduler = obs["scheduler"]
    outcome.check(
        "scheduler keeps prediction_type",
        scheduler["prediction_type"] == own["prediction_type"] == case.expect_prediction,
        f"{scheduler['class']}: {scheduler['prediction_type']} (model: {own['prediction_type']})",
    )
    outcome.check(
        "scheduler keeps timestep_spacing",
        scheduler["timestep_spacing"] == own["timestep_spacing"] == case.expect_spacing,
        f"{scheduler['timestep_spacing']} (model: {own['timestep_spacing']})",
    )
    timesteps = [call["timestep"] for call in obs["unet_calls"]]
    outcome.check("UNet got the scheduler's timesteps", timesteps == obs["scheduler_timesteps"], timesteps)
    first = obs["unet_calls"][0]
    outcome.check("text states width", first["encoder_hidden_states"][-1] == case.text_width,
                  first["encoder_hidden_states"])  # fmt: skip
    outcome.check("dtype auto -> float32 on CPU", obs["unet_dtype"] == "float32" and obs["row"]["dtype"] == "float32",
                  obs["unet_dtype"])  # fmt: skip
    outcome.check(
        "attention auto -> SDPA",
        obs["attention_processors"] == ["AttnProcessor2_0"] and obs["row"]["attention"] == "sdpa",
        obs["attention_processors"],
    )
    index = read_configs(REPLICAS[case.replica])["model_index.json"]
    ships = isinstance(index.get("safety_checker"), list) and index["safety_checker"][1] is not None
    if ships:
        outcome.check(
            "safety checker not run, and the generate log says so",
            not obs["safety_checker_loaded"] and f"safety checker: {SAFETY_CHECKER_OFF}" in obs["log"],
            "pipe.safety_checker is None; log: 'safety checker: the model ships a safety checker; ...'",
        )
    else:
        outcome.check("no safety checker in the repo, none loaded", not obs["safety_checker_loaded"])
    if case.replica == "sdxl-base":
        size = REPLICAS[case.replica].native_size
        outcome.check("SDXL text_encoder_2 loaded", obs["components"].get("text_encoder_2") ==
                      "CLIPTextModelWithProjection", obs["components"].get("text_encoder_2"))  # fmt: skip
        outcome.check("SDXL pooled embeddings 1280 wide", first["text_embeds"][-1] == 1280, first["text_embeds"])
        outcome.check(
            "SDXL micro-conditioning time ids",
            all(row == [size, size, 0, 0, size, size] for row in first["time_ids"]),
            first["time_ids"][0],
        )
        outcome.check(
            "SDXL empty negative prompt -> zero embeddings (force_zeros_for_empty_prompt)",
            first["uncond_text_zero"] and first["uncond_pooled_zero"],
        )
        outcome.check("SDXL VAE force_upcast (fp16 overflow guard)", obs["vae_force_upcast"])
    if case.augcond:
        outcome.check("unCLIP class labels 2 x 1024 wide", first["class_labels"][-1] == 2048, first["class_labels"])
        outcome.check(
            f"unCLIP noise_level {NOISE_LEVEL} embedded in the class labels",
            first["noise_level_embedding_max_error"] < 1e-5,
            f"max error {first['noise_level_embedding_max_error']:.2e}",
        )
        outcome.check("unCLIP unconditional class labels are zeros", first["uncond_class_labels_zero"])


def load_and_check(case: Case, run_dir: Path, outcome: Outcome) -> dict[str, Any]:
    """load_dataset of the built dataset: one row, the native size, the generator columns."""
    import datasets
    import numpy as np

    from synthset.testing.replicas import REPLICAS

    dataset_dir = run_dir / "dataset"
    names = datasets.get_dataset_config_names(str(dataset_dir))
    data = datasets.load_dataset(str(dataset_dir), names[0], split="train")
    row = data[0]
    size = REPLICAS[case.replica].native_size
    outcome.check("load_dataset: one row", len(data) == 1, f"config {names[0]}: {len(data)} rows")
    outcome.check("stored image at native size", row["image"].size == (size, size), row["image"].size)
    pixels = np.asarray(row["image"].convert("RGB"), dtype=np.float32)
    outcome.check("image is not blank (no NaN decoded to black)", pixels.std() > 1.0, f"pixel std {pixels.std():.1f}")
    outcome.check("row names the Hub id", row["model"] == REPLICAS[case.replica].hub_id, row["model"])
    options = row["generator_options"]
    outcome.check(
        "row records prediction type and spacing",
        (options["prediction_type"], options["timestep_spacing"]) == (case.expect_prediction, case.expect_spacing),
        options,
    )
    if case.augcond:
        outcome.check("augcond row records its conditioning", bool(row["cond_images"]), row["cond_aug"])
    return {key: row[key] for key in ("dtype", "attention", "scheduler", "width", "height", "generator_options")}


def smoke_one(case: Case, work: Path, home: Path, threads: int) -> Outcome:
    from synthset.testing.replicas import REPLICAS, parameter_counts, replica_dir_name

    outcome = Outcome(case.replica)
    env = smoke_env(home)
    peaks: dict[str, float] = {}
    bound = case.rss_bound_gib
    print(f"{case.replica} ({REPLICAS[case.replica].hub_id}):", flush=True)
    replica_dir = home / "models" / replica_dir_name(case.replica, "full")
    started = time.perf_counter()
    build = [f"from synthset.testing import replica_path; replica_path({case.replica!r}, 'full')"]
    _stage(["-c", *build], work, f"{case.replica}-replica", env, bound, peaks)
    outcome.figures["replica_build_or_reuse_s"] = round(time.perf_counter() - started, 1)
    outcome.figures["replica_disk_gib"] = round(
        sum(f.stat().st_size for f in replica_dir.rglob("*") if f.is_file()) / GIB, 2
    )
    recipe = write_recipe(case, work, threads)
    run_dir = work / "runs" / f"smoke-{case.replica}"
    _stage(["-m", "synthset", "plan", str(recipe)], work, f"{case.replica}-plan", env, bound, peaks)
    obs_file = work / f"{case.replica}-observed.json"
    generated = _stage(["-m", "benchmarks.smoke_full", "observe", str(run_dir), str(obs_file)], work,
                       f"{case.replica}-generate", env, bound, peaks)  # fmt: skip
    obs = json.loads(obs_file.read_text())
    obs["log"] = generated.stderr
    _stage(["-m", "synthset", "build", str(run_dir)], work, f"{case.replica}-build", env, bound, peaks)
    obs["row"] = load_and_check(case, run_dir, outcome)
    check_observations(case, obs, outcome, replica_dir)
    check_peak_rss(outcome, peaks, bound)
    unet = [call["seconds"] for call in obs["unet_calls"]]
    counts = parameter_counts(case.replica, "full")
    outcome.figures.update(
        parameters=sum(counts.values()),
        parameters_by_component=counts,
        parameters_loaded=sum(obs["parameters"].values()),
        load_s=round(obs["load_s"], 1),
        unet_calls=len(unet),
        s_per_unet_call=round(sum(unet) / len(unet), 2),
        vae_decode_s=round(sum(d["seconds"] for d in obs["vae_decodes"]), 2),
        generate_wall_s=round(generated.wall_s, 1),
        rss_after_load_gib=round(obs["rss_after_load"] / GIB, 2),
        generate_peak_rss_gib=round(obs["peak_rss"] / GIB, 2),
        pipeline=obs["pipeline"],
        scheduler=obs["scheduler"],
        timesteps=[call["timestep"] for call in obs["unet_calls"]],
    )
    return outcome


def observe(run_dir: Path, out: Path) -> int:
    """Child mode: `synthset generate RUN` with the generator instrumented; observations to `out`."""
    import synthset.generation.diffusion as diffusion
    from benchmarks import rss
    from benchmarks.observe import instrument
    from synthset.cli import main as cli_main
    from synthset.run.lock import read_lock
    from synthset.run.paths import RunDir

    lock = read_lock(RunDir.planned(run_dir))
    augcond = any(c.strategy == "augcond" for c in lock.recipe.configs)
    obs: dict[str, Any] = {}
    real_load = diffusion.load_generator
    real_generate = diffusion.generate_images

    def load(*args, **kwargs):
        begin = time.perf_counter()
        generator = real_load(*args, **kwargs)
        obs["load_s"] = time.perf_counter() - begin
        obs["rss_after_load"] = rss.current_rss()
        instrument(generator, obs, noise_level=lock.recipe.generator.noise_level if augcond else None)
        return generator

    def generate(generator, rows):
        result = real_generate(generator, rows)
        obs["scheduler_timesteps"] = [float(t) for t in generator.pipe.scheduler.timesteps]
        return result

    diffusion.load_generator = load
    diffusion.generate_images = generate
    code = cli_main(["generate", str(run_dir)])
    obs["peak_rss"] = rss.peak_rss()
    out.write_text(json.dumps(obs, indent=2))
    return code


def print_table(outcomes: list[Outcome]) -> None:
    print("\n| replica | parameters | load s | s / UNet call (CFG) | VAE decode s | peak RSS / bound GiB | checks |")
    print("|---|---|---|---|---|---|---|")
    for o in outcomes:
        f = o.figures
        passed = sum(ok for _, ok, _ in o.checks)
        if "parameters" in f:
            print(f"| {o.replica} | {f['parameters'] / 1e9:.3f}B ({f['parameters_loaded'] / 1e9:.3f}B loaded) | "
                  f"{f['load_s']} | {f['s_per_unet_call']} x {f['unet_calls']} | {f['vae_decode_s']} | "
                  f"{f['peak_rss_gib']} / {f['rss_bound_gib']} | {passed}/{len(o.checks)} |")  # fmt: skip
        else:
            print(f"| {o.replica} | - | - | - | - | - | {passed}/{len(o.checks)} (error) |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode")
    child = sub.add_parser("observe", help="(internal) the instrumented generate child")
    child.add_argument("run", type=Path)
    child.add_argument("out", type=Path)
    parser.add_argument(
        "--only", default=",".join(CASES), help=f"comma-separated replicas (default: {','.join(CASES)})"
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch CPU threads (cpu_threads)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (runs, logs)")
    args = parser.parse_args(argv)
    if args.mode == "observe":
        return observe(args.run, args.out)

    from synthset.models import synthset_home

    names = [n for n in args.only.split(",") if n]
    unknown = sorted(set(names) - set(CASES))
    if unknown:
        parser.error(f"unknown replica(s) {', '.join(unknown)} (known: {', '.join(CASES)})")
    home = synthset_home()
    work = Path(tempfile.mkdtemp(prefix="smoke-full-"))
    print(f"replicas under {home / 'models'}; scratch {work}", flush=True)
    outcomes = []
    for name in names:
        outcome = Outcome(name)
        try:
            outcome = smoke_one(CASES[name], work, home, args.threads)
        except MemoryBoundExceeded as error:
            outcome.check("peak RSS within its bound", False, str(error))
        except Exception as error:  # noqa: BLE001 - one replica's failure is reported, the others still run
            outcome.check("ran to the end", False, f"{type(error).__name__}: {str(error)[-2000:]}")
        outcomes.append(outcome)
    print_table(outcomes)
    results = REPO / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"smoke-full-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps([{"replica": o.replica, "passed": o.passed, "checks": o.checks, **o.figures}
                                for o in outcomes], indent=2))  # fmt: skip
    print(f"results: {path}")
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"kept: {work}")
    return 0 if all(o.passed for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
