"""A local causal LM through transformers: batched, left-padded, chat-templated, seeded per request.

Seeding. `generate` draws one random stream for the whole batch, so with plain `do_sample=True` a
request's text would depend on its neighbours and on the batch size. Instead each request gets its own
`torch.Generator` seeded with its seed, and `_PerRequestSampler` (a logits processor) samples every row
from its own generator: it applies temperature and top-p itself, draws the token by inverse CDF with
one uniform number from that row's generator per step, and hands `generate` logits that are -inf except
at the drawn token, which greedy decoding then takes. So at a fixed model, dtype and device a request's
output is a function of (prompt, seed) alone, in any batch, at any batch size, in any position (up to
the float rounding that padding introduces in the logits, which can only matter when a uniform draw
lands within ~1e-6 of a token boundary). Uniform numbers come from CPU generators, so the random
stream is the same on CPU and CUDA. Exact replay across re-runs comes from `LLMCache`, not from here.
With `temperature == 0` decoding is greedy and the seed does not matter.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from synthset.errors import SynthsetError
from synthset.generation.llm.base import LLMRequest, one_line
from synthset.models import transformers_location

if TYPE_CHECKING:
    import torch

    from synthset.recipe import LLMSpec


def resolve_model_location(model: str) -> tuple[str, bool]:
    """`(what from_pretrained receives, whether it is a local directory)` for a recipe's model string."""
    return transformers_location(model, "prompts.llm.model")


def _torch_dtype(name: str, cuda: bool) -> torch.dtype:
    import torch

    if name == "auto":
        return torch.float16 if cuda else torch.float32
    return getattr(torch, name)


class _PerRequestSampler:
    """Logits processor that samples row i of the batch from `generators[i]` (see the module docstring).

    It is a plain callable rather than a `LogitsProcessor` subclass only so this module imports without
    transformers; `generate` accepts any callable `(input_ids, scores) -> scores` in the list.
    """

    def __init__(self, seeds: list[int], temperature: float, top_p: float) -> None:
        import torch

        # torch takes seeds in [0, 2**64): fold any int into that range (the same int, the same stream).
        self.generators = [torch.Generator().manual_seed(seed % 2**64) for seed in seeds]
        self.temperature = temperature
        self.top_p = top_p

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        import torch

        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        # Stable sort: ties keep vocabulary order, so the draw -> token mapping is deterministic.
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True, stable=True)
        cumulative = sorted_probs.cumsum(dim=-1)
        if self.top_p < 1.0:
            # Keep the smallest prefix whose mass reaches top_p (always at least the top token).
            sorted_probs = sorted_probs.masked_fill(cumulative - sorted_probs >= self.top_p, 0.0)
            cumulative = sorted_probs.cumsum(dim=-1)
        uniform = torch.stack([torch.rand((), generator=g, dtype=torch.float64) for g in self.generators])
        targets = (uniform.to(cumulative.device) * cumulative[:, -1].double()).float().unsqueeze(1)
        position = torch.searchsorted(cumulative, targets, right=True).clamp(max=cumulative.shape[1] - 1)
        # Never land on a token top-p removed (possible only through rounding at the tail).
        position = torch.minimum(position, (sorted_probs > 0).sum(dim=-1, keepdim=True) - 1)
        tokens = order.gather(1, position)
        forced = torch.full_like(scores, float("-inf"))
        return forced.scatter_(1, tokens, 0.0)


class TransformersBackend:
    """Any local causal LM that `AutoModelForCausalLM.from_pretrained` loads (safetensors, no remote code).

    The weights load on the first request (thread-safe), so building the backend is cheap and a fully
    cached re-run never loads them. Requests are sorted by prompt length before batching to keep padding
    small; per-request seeding makes that invisible in the outputs.
    """

    name = "transformers"

    def __init__(self, spec: LLMSpec) -> None:
        if not spec.model:
            raise SynthsetError("prompts.llm.model: the transformers backend needs a model")
        self.spec = spec
        self.model = spec.model
        self.location, self.is_local = resolve_model_location(spec.model)
        self._loaded: tuple[Any, Any] | None = None
        self._load_lock = threading.Lock()

    @property
    def device(self) -> str:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def load(self) -> tuple[Any, Any]:
        """`(model, tokenizer)`, loaded once."""
        with self._load_lock:
            if self._loaded is None:
                self._loaded = self._load()
            return self._loaded

    def _load(self) -> tuple[Any, Any]:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = self.device
        # A local directory has no revisions; passing the lock's "sha256:..." pin there would be an error.
        revision = None if self.is_local else self.spec.revision
        try:
            tokenizer = AutoTokenizer.from_pretrained(self.location, revision=revision, trust_remote_code=False)
            model = AutoModelForCausalLM.from_pretrained(
                self.location,
                revision=revision,
                dtype=_torch_dtype(self.spec.dtype, device == "cuda"),
                use_safetensors=True,
                trust_remote_code=False,
                device_map=device,  # load straight onto the GPU: a 7B model never passes through CPU memory
            )
        except Exception as error:  # unknown repo, offline, gated, no safetensors, not a causal LM, out of memory
            reason = one_line(str(error)) or type(error).__name__
            raise SynthsetError(f"prompts.llm.model: cannot load {self.model!r}: {reason}") from None
        model.eval()
        tokenizer.padding_side = "left"  # generation continues from the right edge of every row
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise SynthsetError(f"prompts.llm.model: {self.model!r}: the tokenizer has no pad or eos token")
            tokenizer.pad_token = tokenizer.eos_token
        return model, tokenizer

    def render(self, prompt: str) -> str:
        """The text the model is given for `prompt`: the chat template's user turn when the tokenizer has
        one (instruction-tuned models answer far better inside their own template), else the prompt."""
        _, tokenizer = self.load()
        if getattr(tokenizer, "chat_template", None):
            messages = [{"role": "user", "content": prompt}]
            return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return prompt

    def complete(self, requests: list[LLMRequest]) -> list[str]:
        texts = dict(self.stream(requests))  # every index is yielded exactly once
        return [texts[index] for index in range(len(requests))]

    def stream(self, requests: list[LLMRequest]) -> Iterator[tuple[int, str]]:
        """`(index, output)` per request, one `batch_size` batch at a time (shortest prompts first)."""
        if not requests:
            return
        texts = [self.render(request.prompt) for request in requests]
        _, tokenizer = self.load()
        lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
        order = sorted(range(len(requests)), key=lambda i: lengths[i])
        for start in range(0, len(order), self.spec.batch_size):
            batch = order[start : start + self.spec.batch_size]
            generated = self._generate([texts[i] for i in batch], [requests[i].seed for i in batch])
            yield from zip(batch, generated, strict=True)

    def _generate(self, texts: list[str], seeds: list[int]) -> list[str]:
        import torch
        from transformers import LogitsProcessorList

        model, tokenizer = self.load()
        # A chat template writes its own BOS; a raw prompt gets the tokenizer's usual special tokens.
        templated = bool(getattr(tokenizer, "chat_template", None))
        inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not templated)
        inputs = inputs.to(model.device)
        options: dict[str, Any] = {
            "max_new_tokens": self.spec.max_new_tokens,
            "do_sample": False,  # sampling happens in _PerRequestSampler; generate then takes its token
            "pad_token_id": tokenizer.pad_token_id,
            # Unset the model's own sampling defaults: with do_sample=False they would only warn.
            "temperature": None,
            "top_p": None,
            "top_k": None,
        }
        if self.spec.temperature > 0:
            sampler = _PerRequestSampler(seeds, self.spec.temperature, self.spec.top_p)
            options["logits_processor"] = LogitsProcessorList([sampler])
        with torch.inference_mode():
            sequences = model.generate(**inputs, **options)
        new_tokens = sequences[:, inputs["input_ids"].shape[1] :]
        return tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
