"""The openai backend against a loopback OpenAI-compatible server: bodies, order, retries, timeouts, concurrency."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from synthset.errors import SynthsetError
from synthset.generation.llm import LLMCache, LLMRequest, make_backend
from synthset.generation.llm.openai_backend import OpenAIBackend
from synthset.recipe import LLMSpec, recipe_from_dict
from tests.openai_server import OpenAIServer, expected_answer

KEY_ENV = "SYNTHSET_TEST_LLM_KEY"
SECRET = "sk-test-0123456789abcdef-SECRET"


def _spec(server: OpenAIServer, **changes) -> LLMSpec:
    fields = {
        "backend": "openai",
        "model": server.model,
        "base_url": server.base_url,
        "api_key_env": KEY_ENV,
        "temperature": 0.7,
        "top_p": 0.95,
        "max_new_tokens": 33,
        "concurrency": 4,
        "timeout": 2.0,
        "max_retries": 3,
    }
    return LLMSpec(**{**fields, **changes})


def _backend(server: OpenAIServer, **changes) -> OpenAIBackend:
    return OpenAIBackend(_spec(server, **changes), backoff_base=0.01, backoff_max=0.05)


@pytest.fixture
def server():
    with OpenAIServer() as running:
        yield running


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, SECRET)
    return SECRET


def test_answers_in_request_order_with_the_spec_in_every_body(server: OpenAIServer, api_key: str):
    server.delay = 0.01
    requests = [LLMRequest(f"describe a tench, variant {i}", seed=100 + i) for i in range(10)]
    # A seed wider than 31 bits is sent reduced, so servers with 32-bit seeds (llama.cpp) accept it.
    requests.append(LLMRequest("big seed", seed=2**40 + 5))
    backend = make_backend(_spec(server))
    outputs = backend.complete(requests)
    assert outputs == [expected_answer(r.prompt, r.seed % 2**31) for r in requests]
    assert server.chat_requests == len(requests)
    by_prompt = {body["messages"][0]["content"]: body for body in server.bodies}
    body = by_prompt["describe a tench, variant 3"]
    assert body["model"] == "test-model"
    assert body["messages"] == [{"role": "user", "content": "describe a tench, variant 3"}]
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["seed"]) == (0.7, 0.95, 33, 103)
    assert by_prompt["big seed"]["seed"] == 5
    assert server.authorization == [f"Bearer {SECRET}"] * len(requests)


def test_no_key_in_the_environment_sends_no_authorization(server: OpenAIServer, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    assert _backend(server).complete([LLMRequest("a", 1)]) == [expected_answer("a", 1)]
    assert server.authorization == [None]


@pytest.mark.parametrize(("status", "retry_after"), [(500, None), (503, None), (429, "0")])
def test_retries_transient_http_errors_then_succeeds(server: OpenAIServer, status: int, retry_after: str | None):
    server.fail_first, server.fail_status, server.retry_after = 2, status, retry_after
    backend = _backend(server, concurrency=1)
    assert backend.complete([LLMRequest("goldfish", 3)]) == [expected_answer("goldfish", 3)]
    assert server.chat_requests == 3  # N failures + 1 success
    assert (backend.attempts, backend.retries) == (3, 2)


def test_retries_a_timeout_then_succeeds(server: OpenAIServer):
    server.sleep_first, server.sleep_seconds = 2, 10.0
    backend = _backend(server, timeout=0.3, concurrency=1)
    start = time.perf_counter()
    assert backend.complete([LLMRequest("goldfish", 3)]) == [expected_answer("goldfish", 3)]
    assert server.chat_requests == 3
    assert backend.retries == 2
    assert 0.6 <= time.perf_counter() - start < 3.0  # two client timeouts, not two server sleeps


def test_gives_up_after_max_retries_with_one_line_and_no_key(server: OpenAIServer, api_key: str):
    server.fail_first = 100  # the failure body echoes the Authorization header back
    backend = _backend(server, max_retries=2)
    with pytest.raises(SynthsetError) as raised:
        backend.complete([LLMRequest("goldfish", 3)])
    message = str(raised.value)
    assert server.chat_requests == 3  # 1 try + 2 retries
    assert "\n" not in message
    assert server.base_url + "/chat/completions" in message
    assert "after 3 attempts" in message and "HTTP 500" in message
    assert api_key not in message and api_key[:12] not in message
    assert "***" in message  # the echoed key was redacted, not silently dropped


def test_client_errors_are_not_retried(server: OpenAIServer):
    backend = _backend(server, model="no-such-model")
    with pytest.raises(SynthsetError, match=r"HTTP 404: .*no-such-model.* not found") as raised:
        backend.complete([LLMRequest("goldfish", 3)])
    assert server.chat_requests == 1 and backend.retries == 0
    assert "\n" not in str(raised.value)


def test_unreachable_server_is_retried_then_one_line():
    server = OpenAIServer().start()
    spec = _spec(server, max_retries=1)
    server.stop()  # nothing listens on the port any more
    backend = OpenAIBackend(spec, backoff_base=0.01)
    with pytest.raises(SynthsetError, match=r"failed after 2 attempts; last: connection refused$"):
        backend.complete([LLMRequest("goldfish", 3)])


def test_concurrency_overlaps_requests(server: OpenAIServer):
    server.delay = 0.15
    requests = [LLMRequest(f"p{i}", i) for i in range(8)]
    start = time.perf_counter()
    assert _backend(server, concurrency=4).complete(requests) == [expected_answer(r.prompt, r.seed) for r in requests]
    elapsed = time.perf_counter() - start
    assert server.max_in_flight == 4  # never more than `concurrency`, and really that many
    assert elapsed < 8 * 0.15 * 0.75  # well under the serial time


def test_concurrency_one_is_serial(server: OpenAIServer):
    server.delay = 0.02
    _backend(server, concurrency=1).complete([LLMRequest(f"p{i}", i) for i in range(4)])
    assert server.max_in_flight == 1


def test_a_failure_stops_the_batch_and_keeps_finished_answers_cached(server: OpenAIServer, tmp_path: Path):
    """Answers that arrived before a request failed for good are in the cache: a re-run asks for the rest."""
    server.delay, server.fail_from = 0.02, 3  # requests 0-2 succeed, every later one fails
    spec = _spec(server, concurrency=2, max_retries=0)
    requests = [LLMRequest(f"p{i}", i) for i in range(8)]
    with LLMCache(tmp_path / "llm.sqlite", OpenAIBackend(spec, backoff_base=0.01), spec) as cache:
        with pytest.raises(SynthsetError, match="HTTP 500"):
            cache.complete(requests)
        # Failures come back at once, so request 2 is still running when request 3 fails: nothing more is
        # sent, but request 2's answer is still awaited and stored.
        assert server.chat_requests == 4
        assert len(cache) == 3
    server.fail_from = None
    sent = server.chat_requests
    with LLMCache(tmp_path / "llm.sqlite", OpenAIBackend(spec, backoff_base=0.01), spec) as cache:
        assert cache.complete(requests) == [expected_answer(r.prompt, r.seed) for r in requests]
        assert (cache.hits, cache.backend_calls, server.chat_requests - sent) == (3, 5, 5)


def test_rerun_through_the_cache_sends_nothing(server: OpenAIServer, tmp_path: Path):
    spec = _spec(server)
    requests = [LLMRequest(f"p{i}", i) for i in range(5)]
    first = LLMCache(tmp_path / "llm.sqlite", make_backend(spec), spec).complete(requests)
    sent = server.chat_requests
    # Another port (a restarted server) is the same model: the URL is not part of the key.
    with OpenAIServer() as other:
        other_spec = _spec(other)
        cache = LLMCache(tmp_path / "llm.sqlite", make_backend(other_spec), other_spec)
        assert cache.complete(requests) == first
        assert (cache.backend_calls, cache.hits, other.chat_requests) == (0, 5, 0)
    assert server.chat_requests == sent


def test_models_lists_the_servers_models(server: OpenAIServer):
    assert _backend(server).models() == ["test-model"]


@pytest.mark.parametrize("base_url", ["ftp://example.org/v1", "localhost:8000/v1", "http://host:port/v1"])
def test_bad_base_url_is_one_line(base_url: str):
    """Checked when the recipe is read, before any work: one line naming the file and the field."""
    recipe = {"name": "r", "configs": [{"name": "a", "images_per_class": 1}], "generator": {"model": "m"}}
    recipe["prompts"] = {"llm": {"backend": "openai", "model": "m", "base_url": base_url}}
    with pytest.raises(SynthsetError) as raised:
        recipe_from_dict(recipe, "r.yaml")
    assert str(raised.value) == f"r.yaml: prompts.llm.base_url: not an http(s) URL: {base_url!r}"
