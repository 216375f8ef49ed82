"""The LLM backend registry: a recipe's `prompts.llm.backend` name -> the class that talks to that model.

Each entry imports its backend when called, so importing this package costs nothing when the recipe uses
the template backend (which has no LLM, hence no entry here).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from synthset.errors import SynthsetError

if TYPE_CHECKING:
    from synthset.generation.llm.base import LLMBackend
    from synthset.recipe import LLMSpec


def _transformers() -> Callable[[LLMSpec], LLMBackend]:
    from synthset.generation.llm.transformers_backend import TransformersBackend

    return TransformersBackend


def _openai() -> Callable[[LLMSpec], LLMBackend]:
    from synthset.generation.llm.openai_backend import OpenAIBackend

    return OpenAIBackend


# backend name -> a function returning the backend's class (imported on demand: torch, threads, sockets)
BACKENDS: dict[str, Callable[[], Callable[[LLMSpec], LLMBackend]]] = {
    "transformers": _transformers,
    "openai": _openai,
}


def make_backend(spec: LLMSpec) -> LLMBackend:
    """The backend a recipe's `prompts.llm` names, checked without loading any weights.

    Cheap problems (a missing model directory, an unknown tiny model, no base_url) fail here as one
    `SynthsetError` line; the weights of a local LM load on the first request, so a re-run whose answers
    are all cached never loads the model at all.

    Raises:
        SynthsetError: the recipe's backend uses no language model (`template`), or a cheap check failed.
    """
    if spec.backend not in BACKENDS:
        raise SynthsetError(f"prompts.llm.backend: {spec.backend!r} uses no language model, so it has no LLM backend")
    return BACKENDS[spec.backend]()(spec)
