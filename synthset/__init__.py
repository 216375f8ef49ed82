"""synthset: synthetic image-classification datasets from off-the-shelf diffusion models.

Stages (each reads the last one's files in a run directory and writes its own):
plan -> generate -> build -> card -> push. From Python, each is one call:

    import synthset
    synthset.plan("recipes/demo.yaml")
    synthset.generate("runs/demo")
    print(synthset.build("runs/demo"))

The functions live in `synthset.api` and are loaded on first use, so `import synthset` stays fast.
See `synthset --help` for the command line.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = frozenset(
    {"check", "plan", "generate", "build", "card", "review", "push", "verify", "versions", "status", "validate"}
    | {"clean", "demo", "submit", "train"}
)


def __getattr__(name: str) -> Any:
    """`synthset.plan` and the other stages, imported from synthset.api on first use (PEP 562)."""
    if name in _API:
        from synthset import api

        return getattr(api, name)
    raise AttributeError(f"module 'synthset' has no attribute {name!r}")
