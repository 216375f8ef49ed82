"""The few-shot protocol registry: `few_shot.protocol` -> the function that runs every (k, trial) job.

The protocols import the shared probe code of `synthset.training.fewshot`; this registry imports them, so it
lives apart from that shared code (no import cycle). Each entry imports its protocol (torch) when called.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from synthset.training.config import TrainConfig

ProtocolRunner = Callable[[TrainConfig, Any], "dict[str, Any] | None"]


def _dafusion() -> ProtocolRunner:
    from synthset.training.fewshot_dafusion import run_dafusion

    return run_dafusion


def _fast() -> ProtocolRunner:
    from synthset.training.fewshot_fast import run_fast

    return run_fast


# protocol name (TrainConfig's few_shot.protocol) -> a function returning the protocol's runner
# paper_b_code is the dafusion runner with the authors' quirks switched on by the config (fewshot_dafusion)
PROTOCOLS: dict[str, Callable[[], ProtocolRunner]] = {"dafusion": _dafusion, "paper_b_code": _dafusion, "fast": _fast}


def run_few_shot(config: TrainConfig, accelerator: Any) -> dict[str, Any] | None:
    """Every (k, trial) job of this rank, then (main process) the summary; None on other ranks.

    Args:
        config: the training config; its `few_shot.protocol` picks the protocol.
        accelerator: the `accelerate.Accelerator` the jobs are split over.

    Returns:
        The summary over trials on the main process, None on the others.
    """
    return PROTOCOLS[config.few_shot.protocol]()(config, accelerator)
