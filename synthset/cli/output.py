"""How a command shows a result: its lines on stdout, its warnings on stderr."""

from __future__ import annotations

import sys

from synthset.api.results import Described


def show(result: Described) -> None:
    """Print a result's lines on stdout and its warnings on stderr as `synthset: warning: ...`."""
    for line in result.lines():
        print(line)
    for warning in result.warnings:
        print(f"synthset: {warning}", file=sys.stderr)
