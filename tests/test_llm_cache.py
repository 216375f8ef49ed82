"""LLMCache: hits from disk, misses to the backend, the key, and resuming after a crash or a kill."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from synthset.errors import SynthsetError
from synthset.generation.llm import LLMCache, LLMRequest
from synthset.recipe import LLMSpec

REPO = Path(__file__).resolve().parents[1]
SPEC = LLMSpec(backend="transformers", model="fake-model", temperature=0.8, top_p=0.9, max_new_tokens=50, batch_size=2)
REQUESTS = [LLMRequest(f"describe a goldfish, variant {i}", seed=i) for i in range(7)]


def answer(request: LLMRequest) -> str:
    return f"a goldfish ({request.prompt[-1]}, seed {request.seed})"


class StreamingFake:
    """A streaming backend that records what it was sent and can fail after `fail_after` answers."""

    name = "fake"

    def __init__(self, model: str = "fake-model", fail_after: int | None = None) -> None:
        self.model = model
        self.fail_after = fail_after
        self.sent: list[LLMRequest] = []

    def stream(self, requests: list[LLMRequest]) -> Iterator[tuple[int, str]]:
        self.sent.extend(requests)
        # Answer in reverse to prove the cache maps answers back by index, not by arrival order.
        for count, index in enumerate(reversed(range(len(requests)))):
            if self.fail_after is not None and count == self.fail_after:
                raise RuntimeError("backend died")
            yield index, answer(requests[index])

    def complete(self, requests: list[LLMRequest]) -> list[str]:
        return [answer(r) for r in requests]


class BatchFake:
    """A backend with only `complete`: the cache sends it `batch_size` requests at a time."""

    name = "fake"
    model = "fake-model"

    def __init__(self, fail_on_call: int | None = None) -> None:
        self.calls: list[list[LLMRequest]] = []
        self.fail_on_call = fail_on_call

    def complete(self, requests: list[LLMRequest]) -> list[str]:
        self.calls.append(list(requests))
        if len(self.calls) == self.fail_on_call:
            raise RuntimeError("backend died")
        return [answer(r) for r in requests]


def test_second_run_answers_everything_from_disk(tmp_path: Path):
    path = tmp_path / "cache" / "llm.sqlite"
    with LLMCache(path, StreamingFake(), SPEC) as cache:
        first = cache.complete(REQUESTS)
        assert first == [answer(r) for r in REQUESTS]
        assert (cache.backend_calls, cache.hits) == (7, 0)
    backend = StreamingFake()
    with LLMCache(path, backend, SPEC) as cache:  # a new process would open the file just like this
        assert cache.complete(REQUESTS) == first
        assert (cache.backend_calls, cache.hits, backend.sent) == (0, 7, [])
        assert cache.complete(REQUESTS[::-1]) == first[::-1]  # order follows the request list
        assert cache.complete([]) == []


def test_only_new_requests_go_to_the_backend(tmp_path: Path):
    backend = StreamingFake()
    cache = LLMCache(tmp_path / "llm.sqlite", backend, SPEC)
    cache.complete(REQUESTS[:3])
    more = [*REQUESTS, LLMRequest(REQUESTS[0].prompt, seed=99), REQUESTS[5]]  # one new seed, one duplicate
    assert cache.complete(more) == [answer(r) for r in more]
    assert backend.sent == [*REQUESTS, LLMRequest(REQUESTS[0].prompt, seed=99)]  # the duplicate is sent once
    assert (cache.backend_calls, cache.hits) == (3 + 5, 3)


@pytest.mark.parametrize(
    ("changes", "model"),
    [
        ({"temperature": 0.7}, "fake-model"),
        ({"top_p": 0.95}, "fake-model"),
        ({"max_new_tokens": 51}, "fake-model"),
        ({"revision": "abc123"}, "fake-model"),
        ({}, "other-model"),
    ],
)
def test_sampling_parameters_model_and_revision_are_in_the_key(tmp_path: Path, changes: dict, model: str):
    LLMCache(tmp_path / "llm.sqlite", StreamingFake(), SPEC).complete(REQUESTS)
    cache = LLMCache(tmp_path / "llm.sqlite", StreamingFake(model), SPEC.model_copy(update=changes))
    cache.complete(REQUESTS)
    assert (cache.backend_calls, cache.hits) == (7, 0)


def test_seeds_beyond_64_bits_are_stored_and_found(tmp_path: Path):
    """Callers derive retry seeds by adding to 63-bit seeds; sqlite integers stop at 2**63 - 1."""
    requests = [LLMRequest("p", seed=2**63 + 5), LLMRequest("p", seed=2**63 + 6), LLMRequest("p", seed=-1)]
    LLMCache(tmp_path / "llm.sqlite", StreamingFake(), SPEC).complete(requests)
    cache = LLMCache(tmp_path / "llm.sqlite", StreamingFake(), SPEC)
    assert cache.complete(requests) == [answer(r) for r in requests]
    assert (cache.hits, cache.backend_calls) == (3, 0)


def test_how_requests_are_executed_is_not_in_the_key(tmp_path: Path):
    LLMCache(tmp_path / "llm.sqlite", StreamingFake(), SPEC).complete(REQUESTS)
    other = {"batch_size": 9, "concurrency": 1, "timeout": 5.0, "max_retries": 0, "dtype": "float16"}
    cache = LLMCache(tmp_path / "llm.sqlite", StreamingFake(), SPEC.model_copy(update=other))
    cache.complete(REQUESTS)
    assert (cache.backend_calls, cache.hits) == (0, 7)


def test_a_crash_mid_stream_keeps_what_arrived(tmp_path: Path):
    path = tmp_path / "llm.sqlite"
    with pytest.raises(RuntimeError, match="backend died"):
        LLMCache(path, StreamingFake(fail_after=3), SPEC).complete(REQUESTS)
    backend = StreamingFake()
    cache = LLMCache(path, backend, SPEC)
    assert cache.complete(REQUESTS) == [answer(r) for r in REQUESTS]
    assert (cache.hits, cache.backend_calls) == (3, 4)
    assert backend.sent == REQUESTS[:4]  # the fake answered from the end: the last three were stored


def test_a_batch_backend_is_stored_batch_by_batch(tmp_path: Path):
    path = tmp_path / "llm.sqlite"
    failing = BatchFake(fail_on_call=3)
    with pytest.raises(RuntimeError):
        LLMCache(path, failing, SPEC).complete(REQUESTS)
    assert [len(c) for c in failing.calls] == [2, 2, 2]  # batch_size 2
    backend = BatchFake()
    cache = LLMCache(path, backend, SPEC)
    assert cache.complete(REQUESTS) == [answer(r) for r in REQUESTS]
    assert backend.calls == [REQUESTS[4:6], REQUESTS[6:]]
    assert (cache.hits, cache.backend_calls) == (4, 3)


KILLED_CHILD = """
import sys, time
from pathlib import Path
from synthset.generation.llm import LLMCache, LLMRequest
from synthset.recipe import LLMSpec

class Slow:
    name, model = "fake", "fake-model"
    def stream(self, requests):
        for index, request in enumerate(requests):
            print(f"yielding {{index}}", flush=True)  # printed once every earlier answer is committed
            time.sleep(0.02)
            yield index, f"answer {{request.seed}}"
    def complete(self, requests):
        raise AssertionError("stream is used")

spec = LLMSpec(backend="transformers", model="fake-model")
LLMCache(Path(sys.argv[1]), Slow(), spec).complete([LLMRequest("p", seed) for seed in range({total})])
print("finished", flush=True)
"""


def test_a_killed_process_loses_no_answer_it_received(tmp_path: Path):
    """SIGKILL in the middle of a run: every answer handed over before the kill is on disk, intact."""
    path, total = tmp_path / "llm.sqlite", 200
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(KILLED_CHILD.format(total=total)))
    child = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        for line in child.stdout:  # bounded: the child prints at most total + 1 lines
            if line.strip() == "yielding 20":
                child.send_signal(signal.SIGKILL)
                break
    finally:
        child.kill()
        child.wait(timeout=30)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL

    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)
    backend = StreamingFake()
    cache = LLMCache(path, backend, SPEC.model_copy(update={"temperature": 0.8, "top_p": 0.9, "max_new_tokens": 100}))
    outputs = cache.complete([LLMRequest("p", seed) for seed in range(total)])
    stored = cache.hits
    assert 20 <= stored < total  # at least the 20 answers committed before the kill, and it was mid-run
    assert outputs[:stored] == [f"answer {seed}" for seed in range(stored)]  # the child answered in order
    assert cache.backend_calls == total - stored
    assert [r.seed for r in backend.sent] == list(range(stored, total))


def test_rows_are_readable_for_audit(tmp_path: Path):
    path = tmp_path / "llm.sqlite"
    LLMCache(path, StreamingFake(), SPEC.model_copy(update={"revision": "r1"})).complete(REQUESTS[:1])
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    row = dict(db.execute("SELECT * FROM completions").fetchone())
    assert row["backend"] == "fake" and row["model"] == "fake-model" and row["revision"] == "r1"
    assert json.loads(row["params"]) == {"max_new_tokens": 50, "temperature": 0.8, "top_p": 0.9}
    assert (row["prompt"], row["seed"], row["output"]) == (REQUESTS[0].prompt, 0, answer(REQUESTS[0]))
    assert len(row["key"]) == 64
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_file_that_is_not_a_cache_is_one_line(tmp_path: Path):
    path = tmp_path / "llm.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(SynthsetError, match=r"llm.sqlite: not a usable LLM cache .*delete it") as raised:
        LLMCache(path, StreamingFake(), SPEC)
    assert "\n" not in str(raised.value)
