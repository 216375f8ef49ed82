"""`synthset <stage>`: a thin shell over the stage functions.

Heavy libraries (torch, diffusers, datasets) are imported inside each command, so `synthset --help`
answers at once. A `SynthsetError` becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from synthset import __version__
from synthset.errors import SynthsetError

# A full disk, a quota, a file size limit, a read-only or forbidden path: the user's to fix, in one line.
FILESYSTEM_FAULTS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES)

DESCRIPTION = """\
Make a synthetic image-classification dataset with an off-the-shelf diffusion model.

A run goes through these stages, each restartable and each reading the previous one's files
in the run directory <output_dir>/<name>/ that the recipe names:

  synthset plan recipes/demo.yaml          recipe -> recipe.lock.yaml, classes.parquet, plan.parquet
  accelerate launch -m synthset generate runs/demo
                                           plan -> shards/ (any number of processes; resumable)
  synthset build runs/demo                 shards -> dataset/ (validated; load it with datasets.load_dataset)
  synthset card runs/demo                  dataset/README.md: the full dataset card, samples.jpg
  synthset review runs/demo                review.html: every class's images, the gate's rejects, to look at
  synthset push runs/demo --repo org/name --tag v1.0
                                           a new version on the Hub, tagged; `synthset verify` checks it
"""


TRAIN_DESCRIPTION = """\
Train and evaluate a timm model on real + synthetic data, the way the papers measure a synthetic set.
Modes: aux_bn (paper A: every BatchNorm gets an auxiliary twin for synthetic rows; evaluation uses the
main one), long_tail (paper B: Balanced Softmax with the real class frequencies; top-1 by many/medium/few
shot bucket), few_shot (DA-Fusion: frozen pretrained backbone, linear head, k shots x trials, each real
draw swapped for a synthetic image of its class with probability p).

Run it plainly, or on many processes:  accelerate launch -m synthset train CONFIG.yaml
Checkpoints are written each epoch to OUTPUT_DIR/checkpoints/; after a crash run the same command and
it resumes. Results: OUTPUT_DIR/results.json, a printed table, OUTPUT_DIR/train.log, and the trained
weights as OUTPUT_DIR/model.safetensors (plain timm). For a baseline, run the same config with
train.synthetic_fraction: 0 (few_shot: few_shot.swap_probability: 0) and another output_dir.

Example (aux_bn; datasets are local directories or Hub ids, loaded with datasets.load_dataset):

  mode: aux_bn
  output_dir: runs/train-r50-auxbn
  model: {name: resnet50}                  # any timm name; pretrained: true or weights: FILE
  real: {path: ILSVRC/imagenet-1k, split: train}
  synthetic: {path: runs/demo/dataset, name: lar_cd_sd, split: train}
  eval: {path: ILSVRC/imagenet-1k, split: validation}
  ood:                                     # optional, scored after training
    - {path: axiong/imagenet-r, split: test, label_map: imagenet-r}
  train: {epochs: 90, batch_size: 256, synthetic_fraction: 0.5, lr: 0.1, weight_decay: 1.0e-4}

long_tail: the same with mode: long_tail (loss defaults to balanced_softmax; set train.lr: 0.2,
weight_decay: 5.0e-4 for paper B). few_shot: replace train: by
  few_shot: {shots: [1, 2, 4, 8, 16], trials: 4, swap_probability: 0.5, synthetic_pool: per_class}
and give model pretrained: true or weights: FILE. The default protocol is DA-Fusion's (its split per
trial, BatchNorm adapting, 50 x 200 Adam steps, best-epoch mean per-class accuracy); protocol: fast is a
quick cached-feature probe. To train each (k, trial) on the very real images a synthset few-shot dataset
was made from, add real_shots: {path: runs/X/dataset, config: coco_{k}shot_t{trial}}.
The papers' own settings ship in configs/train/ (README: Reproduce the papers); --set KEY=VALUE changes
one of them, e.g. --set synthetic.name=lar_cd. Every key is checked; see synthset/train/config.py.
"""


@contextlib.contextmanager
def _on_run(path: str, wanted: Callable[[str], bool] | None = None, writes: bool = True) -> Iterator:
    """The run directory at PATH. For an s3:// run: its local scratch copy, with the store's `wanted` files
    fetched before the stage and (for a stage that `writes`) what it wrote or changed put back after it
    (see run/mirror.py)."""
    from synthset.run import mirror
    from synthset.run.paths import RunDir

    run = RunDir.at(path)
    if run.store is None:
        yield run
        return
    mirror.pull(run, wanted or mirror.all_but_cache)
    yield run
    if writes:
        mirror.push(run)


def _cmd_plan(args: argparse.Namespace) -> int:
    from synthset.generation.plan import plan_run
    from synthset.recipe import load_recipe
    from synthset.run import mirror

    budget = None
    if args.gpu_memory is not None:
        from synthset.generation.memory import parse_memory

        budget = parse_memory(args.gpu_memory)  # a bad size fails before any planning
    if args.check:
        from synthset.generation.check import check_recipe

        checked = check_recipe(load_recipe(args.recipe))
        per_config = ", ".join(f"{name}: {n}" for name, n in checked.images_per_config.items())
        pools = "".join(f"; {name} conditions on {n} real images" for name, n in checked.pools.items())
        print(f"recipe OK: {checked.images} images over {checked.classes} classes ({per_config}){pools}")
        print(f"model: {checked.model} @ {checked.model_revision}; nothing was written")
        return 0
    with _on_run(args.run_dir, mirror.plan_files) if args.run_dir else contextlib.nullcontext() as run:
        summary = plan_run(load_recipe(args.recipe), run)
    per_config = ", ".join(f"{name}: {rows}" for name, rows in summary.rows_per_config.items())
    print(f"planned {summary.rows} images in {summary.shards} shards ({per_config})")
    if summary.lar_sources:
        sources = ", ".join(f"{source}: {n}" for source, n in sorted(summary.lar_sources.items()))
        print(
            f"label ambiguity resolution: {sources}; real images skipped (undecodable): {summary.real_image_failures}"
        )
        winners = ", ".join(f"{source}: {n}" for source, n in sorted(summary.lar_meaning_from.items()))
        print(f"LAR meanings from: {winners}")
    stats = summary.prompt_stats
    if stats.llm_requests:
        rejected = ", ".join(f"{reason}: {n}" for reason, n in sorted(stats.rejected.items())) or "none"
        print(
            f"LLM: {stats.llm_requests} requests ({summary.llm_backend_calls} sent, {summary.llm_cache_hits} from "
            f"cache); rejected: {rejected}; replaced by the template: {stats.replaced}"
        )
        if stats.aspect_lists_replaced:
            print(f"CD aspect lists the LLM failed to give (vocabulary used instead): {stats.aspect_lists_replaced}")
    if summary.llm_report:
        print(f"LLM servers: {summary.llm_report}")
    if summary.hub_layout:
        print(summary.hub_layout)
    if budget is not None:
        from synthset.generation.memory import memory_report
        from synthset.run.lock import read_lock

        lock = read_lock(summary.run)
        local = lock.model.load_path if lock.model.source == "local" else None
        for line in memory_report(lock.recipe.generator.model, local, lock.recipe.generator, budget, args.gpu_memory):
            if line.startswith("warning:"):
                print(f"synthset: {line}", file=sys.stderr)
            else:
                print(line)
    print(f"run directory: {summary.run}")
    print(f"next: accelerate launch -m synthset generate {summary.run}")
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from synthset.generation.runner import generate_run

    summary = generate_run(args.run, verify=not args.no_verify, lease_seconds=args.lease_seconds)
    print(
        f"rank {summary.rank}/{summary.world_size} (worker {summary.worker}): made {summary.images_made} images "
        f"in {summary.shards_made} shards ({summary.shards_redone} of them redone; {summary.shards_already_done} "
        f"were done before, {summary.shards_done_by_others} done by other workers meanwhile) "
        f"in {summary.seconds:.1f} s"
    )
    if summary.redraws or summary.dropped or summary.near_duplicates:
        print(
            f"quality gate (rank {summary.rank}): {summary.redraws} images drawn again, {summary.dropped} samples "
            f"dropped, {summary.near_duplicates} near-duplicates; `synthset review {args.run}` shows them"
        )
    if summary.all_shards_done:
        print(f"all shards done; next: synthset build {args.run}")
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from synthset.builders.assemble import build_dataset

    with _on_run(args.run) as run:
        dataset_dir, splits = build_dataset(run)
    for split in splits:
        print(f"{split.config}/{split.split}: {split.num_examples} images in {len(split.files)} files")
    if run.store is not None:  # a Hub-layout folder on S3: read through fsspec with its data_files globs
        url = f"{run.store.url}/{dataset_dir.name}"
        print(f"dataset: {url}")
        print("load it:")
        for split in splits:
            files = [f"{url}/{pattern}" for pattern in split.patterns]
            print(f'  datasets.load_dataset("parquet", data_files={{"{split.split}": {files}}}, split="{split.split}")')
        return 0
    print(f"dataset: {dataset_dir}")
    print("load it:")
    for split in splits:
        print(f'  datasets.load_dataset("{dataset_dir}", "{split.config}", split="{split.split}")')
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from synthset.train.config import load_train_config
    from synthset.train.results import format_table
    from synthset.train.run import run

    config = load_train_config(args.config, args.set)
    results = run(config, stop_after_epoch=args.stop_after_epoch)
    if results is None:  # not the main process: it prints nothing
        return 0
    if not results.get("complete", True):
        print(f"stopped after epoch {results['epochs_done']} of {results['epochs']}; run the same command to continue")
        return 0
    print(format_table(results))
    print(f"results: {config.output_dir / 'results.json'}")
    if args.to_card is not None:
        import json

        from synthset.fsutil import write_text_atomic
        from synthset.run import mirror

        with _on_run(args.to_card, mirror.nothing) as card_run:  # an s3:// run: written in scratch, then put
            target = card_run.evaluation_dir / f"{config.output_dir.name}.json"
            write_text_atomic(target, json.dumps(results, indent=2, default=str))
        where = f"{args.to_card.rstrip('/')}/{card_run.rel(target)}" if card_run.store is not None else target
        print(f"added to the card's evaluation: {where}; run `synthset card {args.to_card}` to render it")
    return 0


def _cmd_card(args: argparse.Namespace) -> int:
    from synthset.cards import write_card

    with _on_run(args.run) as run:
        result = write_card(
            run,
            license=args.license,
            repo_id=args.repo,
            clip_model=args.clip_model,
            clip_pretrained=args.clip_pretrained,
            quality_per_class=args.quality_per_class,
            license_name=args.license_name,
            license_link=args.license_link,
        )
    print(f"card: {result.readme} (license {result.license.license}, from the {result.license.source})")
    print(f"samples: {result.samples}")
    for q in result.quality or []:
        print(
            f"{q.config}: mean CLIP score {q.mean_clip_score:.2f}, mean intra-class Vendi score "
            f"{q.mean_vendi:.2f} ({q.images} images, at most {q.per_class} per class)"
        )
    print(f"next: synthset push {args.run} --repo {args.repo or '<org/name>'} --tag v1.0")
    return 0


def _cmd_review(args: argparse.Namespace) -> int:
    from synthset.cards.review import write_review

    with _on_run(args.run) as run:
        result = write_review(run, out=args.out, per_class=args.per_class, publish=args.publish)
    for config in result.configs:
        dropped = sum(config.dropped.values())
        print(
            f"{config.name}: {config.published} published images of {len(config.classes)} classes "
            f"({config.shards_done} of {config.shards} shards made), {config.redrawn} redrawn, {dropped} dropped, "
            f"{config.flagged_nsfw} flagged NSFW, {config.near_duplicates} near-duplicates"
        )
    print(f"review: {result.path} ({result.bytes / 1e6:.1f} MB); open it in a browser")
    return 0


def _cmd_push(args: argparse.Namespace) -> int:
    from synthset.hub import push_dataset

    with _on_run(args.run) as run:
        result = push_dataset(
            run,
            args.repo,
            private=args.private,
            tag=args.tag,
            branch=args.revision,
            allow_unscreened=args.allow_unscreened,
        )
    if result.already_published:
        print(f"{args.repo}: {result.tag} already is commit {result.commit[:12]} with these files; nothing to do")
        return 0
    changes = f"{result.added} added, {result.changed} changed, {result.deleted} deleted, {result.unchanged} unchanged"
    if result.pull_request is not None:
        print(
            f"pushed {args.run.rstrip('/')}/dataset to {args.repo}@{result.branch}: {changes}; "
            f"{result.commits} commits on pull request #{result.pull_request}, merged as {result.commit[:12]}"
        )
    else:
        print(f"{args.repo}@{result.branch} already holds these files (commit {result.commit[:12]}): {changes}")
    if result.tag:
        print(f"tagged {result.tag} -> {result.commit[:12]}")
    print(f'load it: datasets.load_dataset("{args.repo}", "<config>", revision="{result.tag or result.branch}")')
    return 0


def _cmd_versions(args: argparse.Namespace) -> int:
    from synthset.hub import list_versions

    versions = list_versions(args.repo)
    if not versions:
        print(f"{args.repo}: no tagged versions")
    for version in versions:
        configs = ", ".join(
            f"{config} {sum(splits.values())} rows"
            + (f" ({', '.join(f'{s} {n}' for s, n in splits.items())})" if len(splits) > 1 else "")
            for config, splits in version.rows.items()
        )
        if version.problem:
            configs = f"cannot be read: {version.problem}"
        heads = f"  [head of {', '.join(version.branches)}]" if version.branches else ""
        print(f"{version.tag}  {version.commit[:12]}  {configs}{heads}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from synthset.hub import verify_repo

    with _on_run(args.run, writes=False) if args.run else contextlib.nullcontext() as run:
        report = verify_repo(
            args.repo, revision=args.revision, run_dir=run, sample=args.sample, full=args.full, seed=args.seed
        )
    rows = "; ".join(
        f"{config}: " + ", ".join(f"{split} {n} rows" for split, n in splits.items())
        for config, splits in report.rows.items()
    )
    checked = "downloaded and" if report.mode == "full" else "listed by the Hub,"
    print(
        f"verified {report.repo_id}@{report.revision} (commit {report.commit[:12]}): {report.files} files, "
        f"{report.bytes} bytes {checked} match manifest.jsonl; {report.footers} Parquet footers read; {rows}"
    )
    if report.mode == "full":
        print("load_dataset: every config loaded with the rows above")
    else:
        print(f"load_dataset(streaming=True): {len(report.streamed)} configs, first rows decoded")
    if report.sampled:
        print(
            f"sampled {len(report.sampled)} files: downloaded, sha256 checked, {report.sampled_images} images decoded"
        )
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from synthset.builders.validate import format_reports, validate_run

    with _on_run(args.run, writes=False) as run:
        reports = validate_run(run, fast=args.fast)
    print(format_reports(reports))
    return 0 if all(report.ok for report in reports) else 1


def _cmd_status(args: argparse.Namespace) -> int:
    import time

    from synthset.run import mirror
    from synthset.run.status import format_status, run_status

    while True:
        with _on_run(args.run, mirror.plan_and_records, writes=False) as run:
            report = format_status(run_status(run, lease_seconds=args.lease_seconds))
        if not args.watch:
            print(report)
            return 0
        print("\033[2J\033[H" + time.strftime("%H:%M:%S ") + str(args.run) + "\n" + report, flush=True)
        time.sleep(args.watch)


def _cmd_clean(args: argparse.Namespace) -> int:
    from synthset.run.clean import find_unowned, remove
    from synthset.run.paths import RunDir

    run = RunDir.at(args.run)
    if run.store is not None:
        raise SynthsetError(
            f"{run}: clean works on local run directories; an object store holds no temp files or killed builds "
            "(a put is whole or absent), and an expired claim is taken over by the next worker"
        )
    run = RunDir.planned(run)
    unowned = find_unowned(run)
    groups = [
        ("shard files no plan row owns", unowned.stale_shards),
        ("temp files of killed processes", unowned.dead_temp_files),
        ("directories of killed builds", unowned.dead_builds),
    ]
    for what, paths in groups:
        if paths:
            print(f"{what} ({len(paths)}):")
            for path in paths:
                print(f"  {path.relative_to(run.root).as_posix()}")
    if not unowned.paths:
        print(f"{run}: nothing to clean")
    elif args.yes:
        remove(unowned.paths)
        print(f"removed {len(unowned.paths)} paths")
    else:
        print(f"run `synthset clean {run} --yes` to remove them")
    return 0


def _cmd_tiny_models(args: argparse.Namespace) -> int:
    from synthset import testing

    if args.replicas is None:
        built = testing.build_all(args.home)
    else:
        names = args.only.split(",") if args.only else None
        unknown = sorted(set(names or []) - set(testing.REPLICAS))
        if unknown:
            raise SynthsetError(f"--only: unknown replica {unknown[0]!r} (known: {', '.join(testing.REPLICAS)})")
        built = testing.build_replicas(args.replicas, names, args.home)
    for name, path in built.items():
        print(f"{name}: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synthset", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"synthset {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", metavar="<stage>", required=True)

    plan = commands.add_parser(
        "plan", help="resolve a recipe and write the plan: one row per image to make", description=(
            "Validate RECIPE, pin its model to a commit (recipe.lock.yaml), write the class table "
            "(classes.parquet) and the plan (plan.parquet: prompt, seed and shard of every image). "
            "Nothing is generated yet; review the plan before spending GPU hours."
        ),
    )  # fmt: skip
    plan.add_argument("recipe", help="recipe YAML file, e.g. recipes/demo.yaml")
    plan.add_argument(
        "--check",
        action="store_true",
        help="validate only: resolve the model, read train lists, open real images, draw shots and build the "
        "conditioning pools (the leak guards), then stop; writes nothing and calls no LLM",
    )
    plan.add_argument(
        "--run-dir",
        metavar="DIR_OR_URL",
        default=None,
        help="write the run here instead of <output_dir>/<name>: a local directory or an object-store URL, e.g. "
        "s3://bucket/runs/demo (credentials and AWS_ENDPOINT_URL from the environment, as for the AWS CLI)",
    )
    plan.add_argument(
        "--gpu-memory",
        metavar="SIZE",
        default=None,
        help="memory of one GPU, e.g. 80GB or 24GiB: print the generator's estimated peak at the recipe's batch "
        "size, and warn (with the largest batch size that fits) when it would not fit",
    )
    plan.set_defaults(func=_cmd_plan)

    generate = commands.add_parser(
        "generate", help="generate the planned images into shards (run under `accelerate launch`)", description=(
            "Generate every planned image exactly once. Run it plainly for one process, or as "
            "`accelerate launch [--multi_gpu --num_processes N] -m synthset generate RUN` for many. "
            "Workers claim shards, so several launches (other nodes, a job array, a second command started "
            "later) can work on one run directory at once; a worker whose claim goes unrenewed for the lease "
            "time is taken to be dead and its shard is taken over. Restartable: finished shards (checked by "
            "sha256) are skipped, so an interrupted run loses at most the shards in progress, and may resume "
            "with another number of processes."
        ),
    )  # fmt: skip
    generate.add_argument("run", help="run directory written by `synthset plan`, e.g. runs/demo")
    generate.add_argument(
        "--no-verify",
        action="store_true",
        help="trust finished shards' sizes without re-hashing them on start",
    )
    generate.add_argument(
        "--lease-seconds",
        type=float,
        default=300.0,
        metavar="S",
        help="a shard claim not renewed for S seconds is taken over by another worker (default 300; claims of "
        "a dead process on this host are taken over at once)",
    )
    generate.set_defaults(func=_cmd_generate)

    build = commands.add_parser(
        "build", help="assemble finished shards into dataset/ for load_dataset and the Hub", description=(
            "Link the finished shards into RUN/dataset/ in the Hub layout (<config>/<split>-NNNNN-of-MMMMM.parquet) "
            "and write its README.md with `configs` and `dataset_info`. Refuses while a shard is missing."
        ),
    )  # fmt: skip
    build.add_argument("run", help="run directory, e.g. runs/demo")
    build.set_defaults(func=_cmd_build)

    train = commands.add_parser(
        "train", help="does the synthetic set help? train and evaluate a timm model (run under `accelerate launch`)",
        formatter_class=argparse.RawDescriptionHelpFormatter, description=TRAIN_DESCRIPTION,
    )  # fmt: skip
    train.add_argument("config", help="training config YAML file (see the example above)")
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting of the config (value read as YAML), e.g. --set synthetic.name=lar_cd "
        "--set output_dir=runs/train/lar_cd; repeatable",
    )
    train.add_argument(
        "--to-card",
        metavar="RUN",
        default=None,
        help="also store the results beside RUN's dataset, for `synthset card RUN` to show in an Evaluation section",
    )
    train.add_argument(
        "--stop-after-epoch",
        type=int,
        metavar="N",
        default=None,
        help="end this session once N epochs are done (e.g. a scheduler's time slice); rerun to continue",
    )
    train.set_defaults(func=_cmd_train)

    card = commands.add_parser(
        "card", help="write the dataset card (README.md) and samples.jpg of a built run", description=(
            "Render RUN/dataset/README.md from the card template: license, configs and dataset_info, how the "
            "data was made (models with revisions, recipe hash, the command that regenerates it), per-config "
            "and per-class counts, prompt examples, limitations, citations; and RUN/dataset/samples.jpg, one "
            "row per config. With --clip-model, adds per-config mean CLIP score and Vendi diversity."
        ),
    )  # fmt: skip
    card.add_argument("run", help="run directory after `synthset build`, e.g. runs/demo")
    card.add_argument(
        "--license",
        default=None,
        help="Hub license id, when the generator's model card states none (e.g. apache-2.0; `other` for any "
        "license not on the Hub's list, with --license-name and --license-link)",
    )
    card.add_argument("--license-name", default=None, help="with --license other: an id for it, e.g. my-license-1.0")
    card.add_argument(
        "--license-link", default=None, help="with --license other: a URL, or LICENSE (a file you put in dataset/)"
    )
    card.add_argument(
        "--repo", default=None, help="the repo the local card's examples name; push always names the repo it pushes to"
    )
    card.add_argument(
        "--clip-model",
        default=None,
        help="open_clip model for quality figures: a name (with --clip-pretrained), hf-hub:<id>, local-dir:<path>, "
        "a directory, or synthset-testing:tiny-clip",
    )
    card.add_argument("--clip-pretrained", default=None, help="open_clip pretrained tag, e.g. openai")
    card.add_argument("--quality-per-class", type=int, default=50, help="images scored per class (default 50)")
    card.set_defaults(func=_cmd_card)

    review = commands.add_parser(
        "review", help="write an HTML contact sheet of every class to look at before publishing", description=(
            "Write RUN/review.html: a self-contained static page (no server; open it from disk) with one contact "
            "sheet per class, worst classes first, flagged images (NSFW, below the minimum CLIP score, "
            "near-duplicates) first; each thumbnail shows its CLIP score and NSFW result, and its prompt, seed and "
            "attempt on hover. The samples the quality gate redrew and dropped are shown apart. Works on the "
            "shards made so far, before `synthset build`. With --publish it goes into RUN/dataset/ (and so to "
            "the Hub with `synthset push`), without the images of rejected attempts."
        ),
    )  # fmt: skip
    review.add_argument("run", help="run directory, e.g. runs/demo")
    review.add_argument("--out", type=Path, default=None, help="where to write the page (default RUN/review.html)")
    review.add_argument(
        "--per-class", type=int, default=16, metavar="N", help="published images shown per class (default 16)"
    )
    review.add_argument(
        "--publish", action="store_true", help="write it into RUN/dataset/ to be published beside the card"
    )
    review.set_defaults(func=_cmd_review)

    push = commands.add_parser(
        "push", help="publish RUN/dataset/ to a Hub dataset repo as a new version, and tag it", description=(
            "Create the repo if needed and publish RUN/dataset/ (Parquet shards, README.md with this repo's "
            "id, recipe.lock.yaml, samples.jpg, manifest.jsonl) in commits of 50 files to a pull request, "
            "then merge it, so readers of the branch and of every tag see the previous version or the new "
            "one, never a mix; then tag it. Re-running an interrupted push resumes where it stopped and sends "
            "no file twice. The token comes from HF_TOKEN or `hf auth login`."
        ),
    )  # fmt: skip
    push.add_argument("run", help="run directory after `synthset card`, e.g. runs/demo")
    push.add_argument("--repo", required=True, help="dataset repo id, org/name")
    push.add_argument("--private", action="store_true", help="create the repo private")
    push.add_argument("--tag", default=None, help="version tag for this push, e.g. v1.0 (never moved once made)")
    push.add_argument("--revision", default="main", help="branch to commit to (default main; created if missing)")
    push.add_argument(
        "--allow-unscreened",
        action="store_true",
        help="publish even though no NSFW checker screened the images (the recipe has no quality.checker); "
        "the card says so in its first lines",
    )
    push.set_defaults(func=_cmd_push)

    versions = commands.add_parser(
        "versions", help="list a dataset repo's tagged versions with their configs and row counts", description=(
            "List the tags of a Hub dataset repo, each with its commit, its configs and their row counts "
            "(from that version's dataset_info), and the branches whose head it is."
        ),
    )  # fmt: skip
    versions.add_argument("repo", help="dataset repo id, org/name")
    versions.set_defaults(func=_cmd_versions)

    verify = commands.add_parser(
        "verify", help="check a published version against its manifest, without downloading it", description=(
            "Compare REPO at REVISION with its published manifest.jsonl without downloading the data: every "
            "file's size and sha256 as the Hub lists them, no file the manifest lacks, every Parquet footer "
            "(rows, Features; read with range requests), each config's rows against dataset_info, and a "
            "streamed load_dataset of every config. --sample N also downloads N random files and decodes "
            "every image; --full downloads everything and loads every config. With --run, also compares with "
            "the run's shard records. Exit 2 on any mismatch."
        ),
    )  # fmt: skip
    verify.add_argument("repo", help="dataset repo id, org/name")
    verify.add_argument("--revision", default="main", help="tag, branch or commit (default main)")
    verify.add_argument("--run", default=None, help="also compare with this run directory's shards")
    verify.add_argument(
        "--sample", type=int, default=0, metavar="N", help="download N random files, decode every image"
    )
    verify.add_argument("--seed", type=int, default=None, help="seed of --sample's choice (default: random)")
    verify.add_argument("--full", action="store_true", help="download every file and load every config (slow)")
    verify.set_defaults(func=_cmd_verify)

    validate = commands.add_parser(
        "validate", help="check a generated run against its plan (counts, ids, labels, every image)", description=(
            "Check every shard of RUN against its record (size and sha256) and every config and split against "
            "plan.parquet: each planned sample exactly once, exact per-class counts, labels in range, and every "
            "image decodes at the stored size. Prints a report naming each file or sample at fault; exits 1 on "
            "any problem. `synthset build` runs it too."
        ),
    )  # fmt: skip
    validate.add_argument("run", help="run directory, e.g. runs/demo")
    validate.add_argument(
        "--fast", action="store_true", help="check each shard's size against its record instead of its sha256"
    )
    validate.set_defaults(func=_cmd_validate)

    status = commands.add_parser(
        "status", help="where a generate run stands: shards done / being made / pending, workers, ETA", description=(
            "Read RUN's shard records and claims (nothing is asked of the workers) and print shards done, "
            "being made, with an expired lease and pending; per worker its shards, images per second, last "
            "heartbeat and the shards it holds; the ETA at the live workers' rate; and the GPU-hours spent."
        ),
    )  # fmt: skip
    status.add_argument("run", help="run directory, e.g. runs/demo")
    status.add_argument("--watch", type=float, metavar="S", default=None, help="refresh every S seconds")
    status.add_argument(
        "--lease-seconds", type=float, default=300.0, metavar="S", help="the workers' lease (default 300)"
    )
    status.set_defaults(func=_cmd_status)

    clean = commands.add_parser(
        "clean", help="list (and with --yes remove) files of a run that no plan row owns", description=(
            "List the shard files and records that the current plan.parquet does not own (left by an earlier, "
            "larger plan), temp files of killed processes of this host and half-assembled builds; with --yes, "
            "remove them. Nothing the plan owns, and nothing of a live process, is touched."
        ),
    )  # fmt: skip
    clean.add_argument("run", help="run directory, e.g. runs/demo")
    clean.add_argument("--yes", action="store_true", help="remove what is listed")
    clean.set_defaults(func=_cmd_clean)

    tiny = commands.add_parser(
        "tiny-models", help="build the tiny offline models used by tests and the demo", description=(
            "Build tiny models from configs (no download) and save them with save_pretrained under "
            "$SYNTHSET_HOME (default ~/.cache/synthset). Recipes name them as synthset-testing:<name>. "
            "With --replicas, build replicas of the real generators (SD 1.5, SD 2.1-base, SD 2.1, SD 2.1-unCLIP, "
            "SDXL base, the SDXL fp16-fix VAE, the CompVis safety checker) as replica-<name>[-small]; with "
            "SYNTHSET_TEST_REPLICAS=small|full and SYNTHSET_TEST_RESOLVER=synthset.testing.replicas:resolve_replica "
            "set, a recipe naming their Hub ids runs on them offline (tests only)."
        ),
    )  # fmt: skip
    tiny.add_argument("--home", type=Path, default=None, help="where to save them (default: $SYNTHSET_HOME)")
    tiny.add_argument(
        "--replicas",
        choices=("small", "full"),
        default=None,
        help="build the replicas of the real generators instead (published configs, random weights): small = "
        "scaled down for tests; full = published sizes, ~21 GB of disk for all (SDXL alone 6.9 GB)",
    )
    tiny.add_argument("--only", default=None, help="with --replicas: comma-separated names, e.g. sd15,sdxl-base")
    tiny.set_defaults(func=_cmd_tiny_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="synthset: %(levelname)s: %(message)s",
    )
    logging.getLogger("synthset").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return args.func(args)
    except SynthsetError as error:
        print(f"synthset: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        if error.errno not in FILESYSTEM_FAULTS:
            raise  # anything else is a bug and keeps its traceback
        from synthset.fsutil import describe_os_error

        print(f"synthset: error: {describe_os_error(error, error.filename or 'writing the run')}", file=sys.stderr)
        return 2
