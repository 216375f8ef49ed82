"""What every LLM backend shares: the request type and the backend protocol (`make_backend` is in `backends`).

Prompt strategies (LAR meanings, CD and SD descriptions) talk to a language model only through
`LLMBackend.complete`, so the plan stage never knows whether text came from a local causal LM or an
OpenAI-compatible server, and `LLMCache` can sit in front of either. The backends import these types, so
the registry that imports the backends lives in its own module (`backends.py`): no import cycle.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class LLMRequest:
    """One completion to make: a single user turn and the seed its sampling uses.

    The same (prompt, seed) is the same request: backends make the output depend on nothing else that
    varies inside a run (not on the batch a request lands in, nor on the order requests finish), and the
    cache keys on exactly these two plus the backend, model and sampling parameters.
    """

    prompt: str
    seed: int


@runtime_checkable
class LLMBackend(Protocol):
    """A language model that answers requests with raw text (cleaning is the caller's job)."""

    name: str  # "transformers" | "openai"
    model: str  # as the recipe names it: the cache keys on this, so it must not be a per-machine path

    def complete(self, requests: list[LLMRequest]) -> list[str]:
        """Raw outputs, one per request, in request order."""
        ...


@runtime_checkable
class StreamingBackend(LLMBackend, Protocol):
    """A backend that also hands results over as they finish, so `LLMCache` can store each one at once.

    Both real backends implement it; a backend with only `complete` still works with the cache, which then
    sends it one `batch_size` chunk at a time and stores each chunk when it returns.
    """

    def stream(self, requests: list[LLMRequest]) -> Iterator[tuple[int, str] | tuple[int, str, str]]:
        """Yield `(index into requests, output)` for every request, in the order they finish; a backend
        with several servers yields `(index, output, the server that answered)`, which the cache records."""
        ...


def one_line(text: str, limit: int = 200) -> str:
    """`text` squeezed onto one bounded line, for error messages built from foreign text (server bodies,
    library exceptions) that may hold newlines or pages of HTML."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
