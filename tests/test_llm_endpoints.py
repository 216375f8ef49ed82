"""Several OpenAI-compatible servers as one backend: slots per server, failover, probes, exactly-once caching.

Every server here is a real HTTP server on loopback (tests/openai_server.py). `kill()` is a server dying:
its port refuses connections and the requests it was working on are dropped unanswered.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from synthset.errors import SynthsetError
from synthset.generation.llm import LLMCache, LLMRequest
from synthset.generation.llm.endpoints import Endpoint, EndpointPool
from synthset.generation.llm.http_client import Attempt, EndpointClient
from synthset.generation.llm.openai_backend import OpenAIBackend
from synthset.recipe import LLMSpec, recipe_from_dict
from tests.openai_server import OpenAIServer, expected_answer

REQUESTS = [LLMRequest(f"describe a tench, variant {i}", seed=i) for i in range(24)]
ANSWERS = [expected_answer(r.prompt, r.seed) for r in REQUESTS]


def _spec(*servers: OpenAIServer, **changes) -> LLMSpec:
    fields = {"backend": "openai", "model": "test-model", "concurrency": 2, "timeout": 5.0, "max_retries": 2}
    if "endpoints" not in changes:
        fields["base_url"] = [server.base_url for server in servers]
    return LLMSpec(**{**fields, **changes})


def _backend(*servers: OpenAIServer, backoff_base: float = 0.01, backoff_max: float = 0.05, **changes):
    return OpenAIBackend(_spec(*servers, **changes), backoff_base=backoff_base, backoff_max=backoff_max)


@pytest.fixture
def servers():
    running = [OpenAIServer().start() for _ in range(3)]
    yield running
    for server in running:
        server.stop()


def _wait_until(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.005)


# --- the recipe ---

RECIPE = {"name": "r", "configs": [{"name": "a", "images_per_class": 1}], "generator": {"model": "m"}}


def _llm_recipe(llm: dict):
    return recipe_from_dict({**RECIPE, "prompts": {"llm": {"backend": "openai", "model": "m", **llm}}}, "r.yaml")


def test_one_base_url_is_one_endpoint_with_the_specs_settings():
    llm = _llm_recipe({"base_url": "http://a:8000/v1", "concurrency": 5, "api_key_env": "K"}).prompts.llm
    assert [e.model_dump() for e in llm.endpoint_list()] == [
        {"base_url": "http://a:8000/v1", "concurrency": 5, "api_key_env": "K"}
    ]


def test_a_list_of_urls_and_endpoints_with_their_own_settings():
    listed = _llm_recipe({"base_url": ["http://a/v1", "http://b/v1"], "concurrency": 3}).prompts.llm
    assert [(e.base_url, e.concurrency, e.api_key_env) for e in listed.endpoint_list()] == [
        ("http://a/v1", 3, "OPENAI_API_KEY"),
        ("http://b/v1", 3, "OPENAI_API_KEY"),
    ]
    endpoints = [{"base_url": "http://a/v1", "concurrency": 256}, {"base_url": "https://b/v1", "api_key_env": "B"}]
    spec = _llm_recipe({"endpoints": endpoints, "concurrency": 4}).prompts.llm
    assert [(e.base_url, e.concurrency, e.api_key_env) for e in spec.endpoint_list()] == [
        ("http://a/v1", 256, "OPENAI_API_KEY"),
        ("https://b/v1", 4, "B"),
    ]


B = {"base_url": "http://b"}
BAD_ENDPOINTS = [
    ({"base_url": 5}, "base_url: must be a URL or a list of URLs (got 5)"),
    ({"base_url": []}, "base_url: is an empty list: give at least one URL"),
    ({"base_url": ["http://a/v1", "ftp://b"]}, "base_url: entry 1: not an http(s) URL: 'ftp://b'"),
    ({"base_url": ["http://a/v1", "http://a/v1/"]}, "base_url: entry 1: 'http://a/v1/' is listed twice"),
    ({}, ": backend 'openai' needs a base_url (or endpoints)"),
    ({"base_url": "http://a", "endpoints": [B]}, ": give base_url or endpoints, not both"),
    ({"endpoints": []}, "endpoints: is an empty list: give at least one endpoint"),
    ({"endpoints": [B, {"base_url": "b:80"}]}, "endpoints[1].base_url: not an http(s) URL: 'b:80'"),
    ({"endpoints": [{**B, "concurrency": 0}]}, "endpoints[0].concurrency: Input should be greater than 0 (got 0)"),
    ({"endpoints": [{**B, "concurency": 3}]}, "endpoints[0].concurency: unknown key"),
    ({"endpoints": [B, B]}, "endpoints: entry 1: 'http://b' is listed twice"),
]


@pytest.mark.parametrize(("llm", "expected"), BAD_ENDPOINTS)
def test_bad_endpoints_are_one_line_naming_the_field(llm: dict, expected: str):
    with pytest.raises(SynthsetError) as raised:
        _llm_recipe(llm)
    where = "prompts.llm" + ("." if expected[0] != ":" else "")
    assert str(raised.value) == f"r.yaml: {where}{expected}"


# --- sharing the work ---


def test_requests_spread_over_servers_within_each_servers_concurrency(servers):
    for server in servers:
        server.delay = 0.2  # long enough that every slot is taken before the first answer
    endpoints = [{"base_url": s.base_url, "concurrency": n} for s, n in zip(servers, (1, 2, 3), strict=True)]
    backend = _backend(endpoints=endpoints)
    assert backend.slots == 6
    assert backend.complete(REQUESTS) == ANSWERS
    # Exactly once: every request answered by one server, none sent twice.
    assert sum(s.chat_requests for s in servers) == sum(s.answered for s in servers) == len(REQUESTS)
    assert [s.max_in_flight for s in servers] == [1, 2, 3]  # each server's own limit, and really that many
    assert (backend.attempts, backend.retries, backend.failovers) == (len(REQUESTS), 0, 0)


def test_each_server_gets_its_own_key(servers, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("KEY_A", "sk-a")
    monkeypatch.setenv("KEY_B", "sk-b")
    endpoints = [
        {"base_url": servers[0].base_url, "api_key_env": "KEY_A"},
        {"base_url": servers[1].base_url, "api_key_env": "KEY_B"},
    ]
    _backend(endpoints=endpoints).complete(REQUESTS[:8])
    assert set(servers[0].authorization) == {"Bearer sk-a"} and set(servers[1].authorization) == {"Bearer sk-b"}


def test_calls_at_once_share_the_servers_slots(servers, tmp_path: Path):
    """Several threads through one cache (the plan writes several classes at once): never more requests in
    flight on a server than its concurrency, every answer right, each request sent once."""
    for server in servers[:2]:
        server.delay = 0.1
    spec = _spec(*servers[:2], concurrency=3)
    requests = [LLMRequest(f"class {c} variant {i}", seed=100 * c + i) for c in range(6) for i in range(10)]
    results: dict[int, list[str]] = {}
    with LLMCache(tmp_path / "llm.sqlite", OpenAIBackend(spec, backoff_base=0.01), spec) as cache:

        def one_class(c: int) -> None:
            results[c] = cache.complete(requests[10 * c : 10 * c + 10])

        threads = [threading.Thread(target=one_class, args=(c,)) for c in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert (cache.backend_calls, cache.hits, len(cache)) == (60, 0, 60)
    for c in range(6):
        assert results[c] == [expected_answer(r.prompt, r.seed) for r in requests[10 * c : 10 * c + 10]]
    assert [s.max_in_flight for s in servers[:2]] == [3, 3]
    assert servers[0].chat_requests + servers[1].chat_requests == 60


def test_requests_are_submitted_in_a_window_not_all_at_once(servers):
    """A call with many requests keeps at most `window` (2 x slots) of them submitted: memory stays flat."""
    backend = _backend(*servers[:2], concurrency=2)
    executor = backend._pool_executor()
    submitted = {"now": 0, "most": 0}
    lock = threading.Lock()
    real_submit = executor.submit

    def counting_submit(fn, *args):
        with lock:
            submitted["now"] += 1
            submitted["most"] = max(submitted["most"], submitted["now"])
        future = real_submit(fn, *args)
        future.add_done_callback(lambda _: _done())
        return future

    def _done() -> None:
        with lock:
            submitted["now"] -= 1

    executor.submit = counting_submit
    requests = [LLMRequest(f"p{i}", i) for i in range(300)]
    assert backend.complete(requests) == [expected_answer(r.prompt, r.seed) for r in requests]
    assert submitted["most"] == backend.window == 2 * backend.slots == 8


# --- failover and probes ---


def test_requests_in_flight_on_a_server_that_dies_fail_over(servers, tmp_path: Path):
    doomed, survivor = servers[0], servers[1]
    doomed.delay, survivor.delay = 5.0, 0.02
    # A long backoff: the dead server is not probed again during this test, so the counts are exact.
    spec = _spec(doomed, survivor, concurrency=2)
    backend = OpenAIBackend(spec, backoff_base=30.0, backoff_max=30.0)
    outcome: dict[str, object] = {}
    with LLMCache(tmp_path / "llm.sqlite", backend, spec) as cache:
        worker = threading.Thread(target=lambda: outcome.update(answers=cache.complete(REQUESTS)))
        worker.start()
        _wait_until(lambda: doomed.in_flight == 2)  # its two slots are busy, their answers 5 s away
        doomed.kill()
        worker.join(timeout=30)
        assert outcome["answers"] == ANSWERS
        assert doomed.dropped == 2 and doomed.answered == 0
        assert survivor.answered == len(REQUESTS)  # the two dropped ones again, and everything else
        assert (backend.retries, backend.failovers, backend.attempts) == (2, 2, len(REQUESTS) + 2)
        dead, alive = backend.endpoints
        assert (dead.up, dead.outages, dead.failures, alive.up) == (False, 1, 1, True)  # one outage, counted once
        assert dead.last_problem.startswith("connection error: Remote end closed connection without response")
        endpoints = {row[0] for row in sqlite3.connect(cache.path).execute("SELECT DISTINCT endpoint FROM completions")}
        assert endpoints == {survivor.base_url}
        report = cache.report()
    assert report == (
        f"{doomed.base_url} answered 0, out of rotation 1 time (last: {dead.last_problem}), down at the end; "
        f"{survivor.base_url} answered {len(REQUESTS)}; 2 requests failed over to another server"
    )


def test_requests_on_a_server_that_hangs_time_out_and_fail_over(servers):
    """A server that takes connections but never answers (a stuck GPU): its requests time out, go elsewhere."""
    stuck, fine = servers[0], servers[1]
    stuck.sleep_first, stuck.sleep_seconds = 1000, 30.0
    backend = _backend(stuck, fine, timeout=0.3, backoff_base=30.0, backoff_max=30.0)
    assert backend.complete(REQUESTS) == ANSWERS
    assert stuck.chat_requests == 2 and stuck.answered == 0  # its two slots, then out of rotation
    assert (backend.retries, backend.failovers) == (2, 2)
    assert backend.endpoints[0].last_problem == "timed out after 0.3s"


def test_a_dead_server_is_probed_again_and_rejoins(servers):
    comeback, steady = servers[0], servers[1]
    steady.delay = 0.01
    comeback.kill()
    backend = _backend(comeback, steady, max_retries=1, backoff_base=0.02, backoff_max=0.1)
    assert backend.complete(REQUESTS) == ANSWERS  # all from `steady`; `comeback` refused every probe
    first = backend.endpoints[0]
    assert not first.up and first.failures >= 1
    assert first.last_problem == "connection refused"
    assert steady.answered == len(REQUESTS)

    comeback.start()  # the same port: a restarted server
    more = [LLMRequest(f"later {i}", seed=i) for i in range(60)]
    assert backend.complete(more) == [expected_answer(r.prompt, r.seed) for r in more]
    assert first.up and comeback.answered > 0  # a probe found it, and it took work again
    assert comeback.answered + steady.answered == len(REQUESTS) + len(more)


def test_every_server_dead_is_one_line(servers):
    for server in servers[:2]:
        server.kill()
    # Backoff long enough that neither server is probed twice before the other's probe fails.
    backend = _backend(*servers[:2], max_retries=1, backoff_base=1.0, backoff_max=2.0)
    with pytest.raises(SynthsetError) as raised:
        backend.complete(REQUESTS[:4])
    message = str(raised.value)
    first, second = (f"{s.base_url}/chat/completions" for s in servers[:2])
    assert message == (
        f"openai backend: all 2 endpoints are failing: {first} failed after 2 attempts (last: connection refused); "
        f"{second} failed after 2 attempts (last: connection refused)"
    )
    # Spent: a later call says the same at once, without sending anything.
    with pytest.raises(SynthsetError, match=re.escape(message)):
        backend.complete(REQUESTS[4:6])


def test_which_server_answered_changes_nothing_in_the_cache_but_its_column(servers, tmp_path: Path):
    def cached(path: Path, *using: OpenAIServer) -> list[tuple]:
        spec = _spec(*using)
        with LLMCache(path, OpenAIBackend(spec), spec) as cache:
            assert cache.complete(REQUESTS) == ANSWERS
        db = sqlite3.connect(path)
        return db.execute(
            "SELECT key, backend, model, revision, params, seed, prompt, output FROM completions ORDER BY key"
        ).fetchall()

    one = cached(tmp_path / "one.sqlite", servers[0])
    three = cached(tmp_path / "three.sqlite", *servers)
    assert one == three
    used = {row[0] for row in sqlite3.connect(tmp_path / "three.sqlite").execute("SELECT endpoint FROM completions")}
    assert used == {s.base_url for s in servers}


# --- the cache file: version 1 is upgraded in place ---

V1_SCHEMA = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE completions (key TEXT PRIMARY KEY, backend TEXT NOT NULL, model TEXT NOT NULL, revision TEXT NOT NULL,
    params TEXT NOT NULL, seed NOT NULL, prompt TEXT NOT NULL, output TEXT NOT NULL, created REAL NOT NULL);
INSERT INTO meta VALUES ('schema', '1');
"""


def test_a_version_1_cache_is_upgraded_and_its_answers_still_hit(servers, tmp_path: Path):
    path = tmp_path / "llm.sqlite"
    spec = _spec(servers[0])
    with LLMCache(tmp_path / "scratch.sqlite", OpenAIBackend(spec), spec) as scratch:
        key = scratch.key(REQUESTS[0])
    db = sqlite3.connect(path)
    db.executescript(V1_SCHEMA)
    params = '{"max_new_tokens": 100, "temperature": 0.8, "top_p": 0.9}'
    db.execute("INSERT INTO completions VALUES (?, 'openai', 'test-model', '', ?, 0, ?, 'old answer', 0)",
               (key, params, REQUESTS[0].prompt))  # fmt: skip
    db.commit()
    db.close()
    with LLMCache(path, OpenAIBackend(spec), spec) as cache:
        assert cache.complete(REQUESTS[:2]) == ["old answer", ANSWERS[1]]
        assert (cache.hits, cache.backend_calls) == (1, 1)
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta").fetchone() == ("2",)
    assert db.execute("SELECT output, endpoint FROM completions ORDER BY seed").fetchall() == [
        ("old answer", ""),
        (ANSWERS[1], servers[0].base_url),
    ]


# --- the pool's bookkeeping, without HTTP ---


def _pool(*concurrency: int, max_failures: int = 3) -> EndpointPool:
    endpoints = [Endpoint(EndpointClient(f"http://s{i}/v1", "KEY", 1.0), n) for i, n in enumerate(concurrency)]
    return EndpointPool(endpoints, max_failures, backoff_base=10.0, backoff_max=60.0)


REFUSED = Attempt(problem="connection refused", retryable=True)


def test_one_outage_counts_once_and_only_a_probe_brings_a_server_back():
    pool = _pool(3, 1)
    a, b = pool.endpoints
    slots = [pool.acquire() for _ in range(3)]
    assert [s.endpoint for s in slots] == [a, b, a]  # least busy first
    pool.failed(slots[0], REFUSED)
    pool.failed(slots[2], REFUSED)  # in flight before the outage: the same news
    assert (a.up, a.failures, a.outages, a.failed_attempts) == (False, 1, 1, 2)
    pool.succeeded(slots[1])
    more = pool.acquire()  # a is out of rotation: b takes it
    assert more.endpoint is b and not more.probe

    a.down_until = 0.0  # its backoff is over
    probe = pool.acquire()
    assert (probe.endpoint, probe.probe) == (a, True)  # a due probe goes first, though b has room
    pool.succeeded(probe)
    assert (a.up, a.failures) == (True, 0)


def test_an_answer_sent_before_the_outage_does_not_bring_the_server_back():
    pool = _pool(2)
    (a,) = pool.endpoints
    early, late = pool.acquire(), pool.acquire()
    pool.failed(late, REFUSED)
    pool.succeeded(early)  # started before the failure, answered after it
    assert (a.up, a.failures, a.answered) == (False, 1, 1)


def test_a_server_dead_for_days_backs_off_at_the_cap():
    pool = _pool(1, 1, max_failures=10**9)
    a = pool.endpoints[0]
    a.failures = 50_000  # ~17 days of probes every 30 s
    a.down_until = 0.0
    probe = pool.acquire()
    before = time.monotonic()
    pool.failed(probe, REFUSED)
    assert a.failures == 50_001 and before + 30.0 <= a.down_until <= time.monotonic() + 60.0
