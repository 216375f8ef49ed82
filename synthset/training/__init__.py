"""The evaluation harness: does a synthetic set earn its GPU-hours?

`synthset train CONFIG.yaml` answers it the ways the two papers do, on real data plus a synthetic set
loaded through `datasets`, with a timm model by name, under `accelerate` (any number of processes):

- `aux_bn` (paper A): real and synthetic rows in every batch, each BatchNorm split into a main BN (real
  rows, evaluation) and an auxiliary BN (synthetic rows) — `dual_bn`;
- `long_tail` (paper B): Balanced Softmax with the real class frequencies — `losses` — and top-1 by
  many / medium / few shot bucket — `metrics`;
- `few_shot` (DA-Fusion protocol): frozen backbone, linear head, k-shot trials, real draws swapped for
  synthetic ones with probability p — `fewshot`.

Batches are composed by `sampler`, data read by `data`, epochs run by `loop`, checkpoints written by
`checkpoint`, and `run` ties them together; the config is `config`.
"""
