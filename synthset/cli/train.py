"""`synthset train CONFIG`: train and evaluate a timm model on real + synthetic data."""

from __future__ import annotations

import argparse

from synthset.cli.output import show

HELP = "does the synthetic set help? train and evaluate a timm model (run under `accelerate launch`)"
DESCRIPTION = """\
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
quick cached-feature probe; protocol: paper_b_code adds the quirks of paper B's authors' code, to compare
with their published numbers only (docs/papers.md). train.epoch: real (default), synthetic, longest or a
number of steps says what an epoch is. To train each (k, trial) on the very real images a synthset few-shot dataset
was made from, add real_shots: {path: runs/X/dataset, config: coco_{k}shot_t{trial}}.
The papers' own settings ship in configs/train/ (README: Reproduce the papers); --set KEY=VALUE changes
one of them, e.g. --set synthetic.name=lar_cd. Every key is checked; see synthset/training/config.py.
"""


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "train", help=HELP, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("config", help="training config YAML file (see the example above)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting of the config (value read as YAML), e.g. --set synthetic.name=lar_cd "
        "--set output_dir=runs/train/lar_cd; repeatable",
    )
    parser.add_argument(
        "--to-card",
        metavar="RUN",
        default=None,
        help="also store the results beside RUN's dataset, for `synthset card RUN` to show in an Evaluation section",
    )
    parser.add_argument(
        "--stop-after-epoch",
        type=int,
        metavar="N",
        default=None,
        help="end this session once N epochs are done (e.g. a scheduler's time slice); rerun to continue",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from synthset import api

    show(api.train(args.config, args.set, stop_after_epoch=args.stop_after_epoch, to_card=args.to_card))
    return 0
