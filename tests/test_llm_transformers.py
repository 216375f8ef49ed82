"""The transformers backend on the tiny LM: batching, per-request seeds, sampling parameters, chat template."""

from __future__ import annotations

import hashlib
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from synthset.errors import SynthsetError
from synthset.generation.llm import LLMCache, LLMRequest, make_backend
from synthset.generation.llm.transformers_backend import TransformersBackend, _PerRequestSampler
from synthset.recipe import LLMSpec
from synthset.testing import TINY_LM, TINY_MODELS, tiny_lm_path, tiny_model_path

TINY = "synthset-testing:tiny-lm"
PROMPTS = [
    "Describe a goldfish.",
    "x",
    "Describe a photo of a crane (the bird) standing in a misty marsh at dawn, seen from a low angle.",
    "naïve café 🙂",
    "Describe a tench held by an angler.",
]


def _spec(**changes) -> LLMSpec:
    fields = {"backend": "transformers", "model": TINY, "max_new_tokens": 12, "batch_size": 3, "temperature": 1.0}
    return LLMSpec(**{**fields, **changes})


def _tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def test_tiny_lm_is_a_reproducible_chat_model_that_loads_like_a_hub_id(tmp_path: Path):
    assert TINY_MODELS[TINY_LM] is tiny_lm_path
    path = tiny_model_path(TINY_LM)
    assert tiny_lm_path() == path  # built once, then reused
    assert (path / "model.safetensors").is_file() and not list(path.glob("*.bin"))
    assert _tree_hashes(tiny_lm_path(tmp_path / "again")) == _tree_hashes(path)  # seeded: byte-identical builds

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.config.hidden_size == 32 and model.config.num_hidden_layers == 2
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer) == 262
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == ("<|bos|>", "<|eos|>", "<|pad|>")
    text = "naïve café 🙂\ttabs and\nnewlines"
    ids = tokenizer(text).input_ids
    assert ids[0] == tokenizer.bos_token_id and len(ids) == 1 + len(text.encode())  # one token per byte
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    chat = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    assert chat == "<|bos|><|user|>\nhi<|eos|>\n<|assistant|>\n"


def _reference_greedy(prompt: str, max_new_tokens: int) -> str:
    """Greedy continuation of one prompt alone (no padding), straight through transformers."""
    path = tiny_lm_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
    )
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
    out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


def test_batched_greedy_equals_each_prompt_generated_alone():
    """Left padding, the attention mask, mapping sorted batches back to request order, new text only."""
    backend = make_backend(_spec(temperature=0.0, max_new_tokens=8))
    outputs = backend.complete([LLMRequest(p, seed=i) for i, p in enumerate(PROMPTS)])
    assert outputs == [_reference_greedy(p, 8) for p in PROMPTS]
    assert len(set(outputs)) > 1


def test_same_prompt_and_seed_give_the_same_text_in_any_batch():
    target = LLMRequest(PROMPTS[0], seed=1234)
    others = [LLMRequest(p, seed=i) for i, p in enumerate(PROMPTS[1:])]
    alone = make_backend(_spec(batch_size=1)).complete([target])[0]
    backend = make_backend(_spec(batch_size=4))
    assert backend.complete([*others, target])[-1] == alone
    assert backend.complete([target, *others[::-1]])[0] == alone
    assert backend.complete([others[1], target, others[1]])[1] == alone
    assert len(alone) > 0


def test_different_seeds_give_different_text():
    backend = make_backend(_spec(batch_size=8))
    outputs = backend.complete([LLMRequest(PROMPTS[0], seed=seed) for seed in range(8)])
    assert len(set(outputs)) == 8


@pytest.mark.parametrize("changes", [{"temperature": 1e-4}, {"temperature": 1.0, "top_p": 1e-6}])
def test_temperature_and_top_p_reach_the_sampler(changes: dict):
    """Near-zero temperature, or a top_p that keeps only the top token, must reproduce greedy decoding."""
    requests = [LLMRequest(p, seed=i) for i, p in enumerate(PROMPTS[:3])]
    greedy = make_backend(_spec(temperature=0.0)).complete(requests)
    assert make_backend(_spec(**changes)).complete(requests) == greedy
    assert make_backend(_spec(temperature=1.0)).complete(requests) != greedy


def test_sampler_draws_from_the_top_p_distribution():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    rows = 4000
    scores = probs.log().repeat(rows, 1)
    # top_p 0.7 keeps tokens 0 and 1 (0.5 < 0.7 before token 1, 0.8 >= 0.7 before token 2): 0.625 / 0.375.
    forced = _PerRequestSampler(list(range(rows)), temperature=1.0, top_p=0.7)(None, scores)
    assert ((forced == 0).sum(dim=1) == 1).all() and (forced.isinf().sum(dim=1) == 3).all()
    counts = Counter(forced.argmax(dim=1).tolist())
    assert set(counts) == {0, 1}
    assert abs(counts[0] / rows - 0.625) < 0.03
    # temperature 2 flattens: p^(1/2), renormalised, without top-p.
    forced = _PerRequestSampler(list(range(rows)), temperature=2.0, top_p=1.0)(None, scores)
    counts = Counter(forced.argmax(dim=1).tolist())
    flat = probs.sqrt() / probs.sqrt().sum()
    for token in range(4):
        assert abs(counts[token] / rows - flat[token].item()) < 0.03
    # Each row depends only on its own seed: the same seed in another batch draws the same token.
    alone = _PerRequestSampler([7], temperature=1.0, top_p=1.0)(None, scores[:1])
    among = _PerRequestSampler([3, 7, 9], temperature=1.0, top_p=1.0)(None, scores[:3])
    assert torch.equal(alone[0], among[1])


def _seen_by_model(backend: TransformersBackend, prompts: list[str]) -> list[str]:
    """The decoded input rows `generate` receives (padding dropped, special tokens kept)."""
    model, tokenizer = backend.load()
    seen: list[str] = []
    original = model.generate

    def spy(*args, **kwargs):
        for ids, mask in zip(kwargs["input_ids"], kwargs["attention_mask"], strict=True):
            seen.append(tokenizer.decode(ids[mask.bool()]))
        return original(*args, **kwargs)

    model.generate = spy
    backend.complete([LLMRequest(p, seed=0) for p in prompts])
    return seen


def test_the_chat_template_is_what_the_model_sees():
    backend = make_backend(_spec())
    prompts = ["Describe a goldfish.", "x"]
    seen = _seen_by_model(backend, prompts)
    assert sorted(seen) == sorted(f"<|bos|><|user|>\n{p}<|eos|>\n<|assistant|>\n" for p in prompts)


def test_without_a_chat_template_the_model_sees_the_raw_prompt():
    backend = make_backend(_spec())
    _, tokenizer = backend.load()
    tokenizer.chat_template = None
    prompts = ["Describe a goldfish.", "x"]
    assert sorted(_seen_by_model(backend, prompts)) == sorted(f"<|bos|>{p}" for p in prompts)


def test_a_cached_rerun_never_loads_the_model(tmp_path: Path):
    requests = [LLMRequest(p, seed=i) for i, p in enumerate(PROMPTS)]
    first = LLMCache(tmp_path / "llm.sqlite", make_backend(_spec()), _spec()).complete(requests)
    backend = make_backend(_spec())
    cache = LLMCache(tmp_path / "llm.sqlite", backend, _spec())
    assert cache.complete(requests) == first
    assert (cache.backend_calls, cache.hits) == (0, len(requests))
    assert backend._loaded is None  # a fully cached plan costs no model load either


def test_make_backend_one_line_errors(tmp_path: Path):
    cases = {
        str(tmp_path / "no-such-model"): r"^prompts.llm.model: no such model directory: '.*no-such-model'$",
        str(tmp_path): r"^prompts.llm.model: not a transformers model directory: .* \(no config.json\)$",
        "synthset-testing:tiny-nope": (
            r"^prompts.llm.model: tiny model 'synthset-testing:tiny-nope' is not built in .* "
            r"\(run `synthset tiny-models`"
        ),
        "./relative/missing": r"^prompts.llm.model: no such model directory: 'relative/missing'$",
    }
    for model, pattern in cases.items():
        with pytest.raises(SynthsetError, match=pattern):
            make_backend(_spec(model=model))
    with pytest.raises(SynthsetError, match=r"^prompts.llm.backend: 'template' uses no language model"):
        make_backend(LLMSpec(backend="template"))


def test_pickle_only_weights_are_refused(tmp_path: Path):
    """Weights load as safetensors only: a directory with just pytorch_model.bin is a one-line error."""
    model_dir = tmp_path / "bin-only"
    shutil.copytree(tiny_lm_path(), model_dir)
    (model_dir / "model.safetensors").unlink()
    torch.save(AutoModelForCausalLM.from_pretrained(tiny_lm_path()).state_dict(), model_dir / "pytorch_model.bin")
    backend = make_backend(_spec(model=str(model_dir)))  # the directory looks fine until the weights load
    with pytest.raises(SynthsetError, match=r"^prompts.llm.model: cannot load '.*bin-only': .*model.safetensors"):
        backend.complete([LLMRequest("x", 1)])
