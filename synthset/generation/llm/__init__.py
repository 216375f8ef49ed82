"""LLM backends for prompt diversification (LAR meanings, CD and SD descriptions) and their on-disk cache.

    backend = make_backend(recipe.prompts.llm)          # transformers (local causal LM) or openai (servers)
    with LLMCache(run.cache_dir / "llm.sqlite", backend, recipe.prompts.llm) as llm:
        texts = llm.complete([LLMRequest(prompt, seed), ...])

Importing this package imports neither torch nor transformers; a backend loads what it needs when used.
"""

from synthset.generation.llm.backends import make_backend
from synthset.generation.llm.base import LLMBackend, LLMRequest, StreamingBackend
from synthset.generation.llm.cache import LLMCache

__all__ = ["LLMBackend", "LLMCache", "LLMRequest", "StreamingBackend", "make_backend"]
