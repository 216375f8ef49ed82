"""What a person reads: synthset's own lines once, without the libraries' loading bars and chatter.

Without `--verbose`, the libraries' progress bars (model loading, dataset split generation, Hub transfers)
are switched off and their warnings below errors are dropped, through the environment variables each
library reads when it is imported (so the settings reach `accelerate launch`'s workers too, which run this
same entry point), and only the main process (rank 0) logs synthset's INFO lines: every rank would print
the same ones. Variables the user set are left as they are. `--verbose` brings it all back.
"""

from __future__ import annotations

import logging
import os

# Read by huggingface_hub (and transformers through it), datasets, transformers and diffusers at import.
QUIET_ENVIRONMENT = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "DIFFUSERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}


def is_main_rank() -> bool:
    """Rank 0 of a launch (accelerate, torchrun and SLURM set RANK), or a process launched alone."""
    return os.environ.get("RANK", "0") == "0"


def configure_output(verbose: bool) -> None:
    """Logging for synthset's own lines, and the libraries kept quiet unless `verbose`."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, format="synthset: %(levelname)s: %(message)s"
    )
    if verbose:
        level = logging.DEBUG
    else:
        for name, value in QUIET_ENVIRONMENT.items():
            os.environ.setdefault(name, value)
        level = logging.INFO if is_main_rank() else logging.WARNING
    logging.getLogger("synthset").setLevel(level)
