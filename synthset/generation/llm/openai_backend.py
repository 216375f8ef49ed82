"""Any OpenAI-compatible chat server (vLLM, TGI, Ollama, llama.cpp server, OpenAI), or several of them.

`prompts.llm` names one server (`base_url`) or several (`base_url` as a list, or `endpoints` with their own
`concurrency` and `api_key_env`): servers of the same model that share the work (see `endpoints.py` for
how slots, failover, backoff and probes work, and `http_client.py` for one HTTP attempt).

Behaviour:
- At most `concurrency` requests in flight per server, on one thread pool that lives as long as the
  backend, so several calls at once (the plan writes several classes' prompts at a time) share the
  servers' slots instead of multiplying them. A call queues at most `2 * slots` of its requests (more as
  they finish), never an unbounded number; the pool runs queued requests first come, first served, so
  the calls of earlier classes finish first. Results stream back as they finish, so `LLMCache` stores each
  one at once, with the server that answered.
- A retryable failure (HTTP 5xx, 429, 408, timeouts, refused or lost connections) takes its server out of
  rotation for a backoff and sends the request again at once to another server that is up (a failover,
  counted), or, with one server, to the same one when its backoff is over. A request fails for good
  after `max_retries` retries that were not probes of a server out of rotation, if some server is up
  meanwhile (then the request is at fault); while none is, the pool decides: it stops when every server
  has failed `max_retries + 1` times in a row. Other 4xx answers (bad model name, bad key) fail at once.
  Any failure for good stops the backend: calls in progress hand back the answers already on the wire,
  then raise the one `SynthsetError` line (naming the URL, never the key).
- `timeout` is the socket timeout of each attempt (connect, and each wait for response bytes). A
  non-streaming chat completion sends nothing until it is done, so it bounds the whole attempt.
- Which server answers never changes what is asked: the body (prompt, seed, sampling parameters) is the
  same on every server, and the cache key does not contain the URL.
- The request seed is sent reduced to 31 bits: servers differ in the seed width they accept (llama.cpp
  takes 32 bits), and a seed must never be refused. Whether a server honours it is up to the server;
  exact re-runs come from the cache.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from synthset.errors import SynthsetError
from synthset.generation.llm.base import LLMRequest, one_line
from synthset.generation.llm.endpoints import Endpoint, EndpointPool
from synthset.generation.llm.http_client import EndpointClient

if TYPE_CHECKING:
    from synthset.recipe import LLMSpec

SEED_BITS = 31


class OpenAIBackend:
    """Chat completions from one or more OpenAI-compatible servers of one model.

    `attempts` counts HTTP attempts, `retries` attempts after a failed one of the same request, and
    `failovers` those retries that went to another server than the failed attempt.
    """

    name = "openai"

    def __init__(self, spec: LLMSpec, *, backoff_base: float = 0.5, backoff_max: float = 30.0) -> None:
        if not spec.model:
            raise SynthsetError("prompts.llm.model: the openai backend needs the model name the server knows")
        listed = spec.endpoint_list()
        if not listed:
            raise SynthsetError("prompts.llm.base_url: the openai backend needs a base URL")
        self.spec = spec
        self.model = spec.model
        endpoints = [
            Endpoint(EndpointClient(e.base_url, e.api_key_env or spec.api_key_env, spec.timeout), e.concurrency or 1)
            for e in listed
        ]
        self.pool = EndpointPool(endpoints, spec.max_retries + 1, backoff_base, backoff_max)
        self.attempts = 0
        self.retries = 0
        self.failovers = 0
        self._count_lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()

    @property
    def endpoints(self) -> list[Endpoint]:
        return self.pool.endpoints

    @property
    def slots(self) -> int:
        """Requests this backend runs at once (over every server)."""
        return self.pool.slots

    @property
    def window(self) -> int:
        """Requests one call keeps submitted at most (see `stream`)."""
        return 2 * self.pool.slots

    def body(self, request: LLMRequest) -> dict[str, Any]:
        """The JSON sent for `request`, the same whichever server gets it."""
        return {
            "model": self.model,
            "messages": [{"role": "user", "content": request.prompt}],
            "temperature": self.spec.temperature,
            "top_p": self.spec.top_p,
            "max_tokens": self.spec.max_new_tokens,
            "seed": request.seed % (1 << SEED_BITS),
            "n": 1,
            "stream": False,
        }

    def _count(self, retry: bool, failover: bool) -> None:
        with self._count_lock:
            self.attempts += 1
            self.retries += retry
            self.failovers += failover

    def _request(self, path: str, body: dict[str, Any] | None) -> tuple[Any, Endpoint]:
        """The JSON payload of a successful attempt and the server that gave it, failing over as needed."""
        failed_on: Endpoint | None = None
        counted_failures = 0
        tries = 0
        while True:
            slot = self.pool.acquire()
            endpoint = slot.endpoint
            self._count(retry=failed_on is not None, failover=failed_on is not None and endpoint is not failed_on)
            tries += 1
            attempt = endpoint.client.post(path, body) if body is not None else endpoint.client.get(path)
            url = endpoint.client.display + path
            if attempt.problem is None:
                self.pool.succeeded(slot)
                return attempt.payload, endpoint
            if not attempt.retryable:
                self.pool.release(slot)
                raise SynthsetError(f"openai backend: {url}: {attempt.problem}")
            self.pool.failed(slot, attempt)
            counted_failures += not slot.probe  # a probe tests the server, not the request
            # Past its retries a request fails for good, unless no server is up: then the servers are at
            # fault, not the request, and the pool decides (a server comes back, or all are given up).
            if counted_failures > self.spec.max_retries and self.pool.any_up():
                raise SynthsetError(
                    f"openai backend: {url} failed after {tries} attempt{'s' if tries > 1 else ''}; "
                    f"last: {attempt.problem}"
                )
            failed_on = endpoint

    def _complete_one(self, request: LLMRequest) -> tuple[str, str]:
        """(text, server) for one request; a failure for good stops the pool here, on the failing thread,
        so that this worker's next queued request (another call's, or a later one of this call) is not sent."""
        try:
            payload, endpoint = self._request("/chat/completions", self.body(request))
            try:
                content = payload["choices"][0]["message"]["content"]
            except (KeyError, IndexError, TypeError):
                raise SynthsetError(
                    f"openai backend: {endpoint.client.display}/chat/completions: answer has no "
                    f"choices[0].message.content: {one_line(endpoint.client.redact(json.dumps(payload)), 120)}"
                ) from None
        except SynthsetError as error:
            self.pool.stop(str(error))
            raise
        return (content if isinstance(content, str) else ""), endpoint.client.display

    def _pool_executor(self) -> ThreadPoolExecutor:
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=self.slots, thread_name_prefix="synthset-llm")
            return self._executor

    def stream(self, requests: list[LLMRequest]) -> Iterator[tuple[int, str, str]]:
        """`(index, output, server URL)` as answers arrive.

        At most `window` (2 x slots) of this call's requests are submitted at a time (more as they finish),
        so memory stays flat for any number of requests. The window is wider than the slots so that a
        class's requests (1,300 at 6x ImageNet, against 4 x 256 slots) are queued at once, in order: a
        call's last requests then run before a later call's, instead of queueing behind them, and the
        class that the plan waits for finishes first (measured: 91% of the ideal throughput at 4 servers
        with a window of `slots`, against 99% with this one: bench row P1).

        The first request that fails for good stops the backend; the requests already in flight still
        finish and are yielded, then its `SynthsetError` is raised.
        """
        if not requests:
            return
        executor = self._pool_executor()
        pending = iter(enumerate(requests))
        in_flight: dict[Future[tuple[str, str]], int] = {}
        # Finished futures arrive here (a done-callback), so each one costs O(1), not a scan of all in flight.
        finished: queue.SimpleQueue[Future[tuple[str, str]]] = queue.SimpleQueue()

        def submit_next() -> None:
            item = next(pending, None)
            if item is not None:
                future = executor.submit(self._complete_one, item[1])
                in_flight[future] = item[0]
                future.add_done_callback(finished.put)

        failure: BaseException | None = None
        try:
            for _ in range(self.window):
                submit_next()
            while in_flight:
                future = finished.get()
                index = in_flight.pop(future)
                error = future.exception()
                if error is not None:
                    # Stop every call (the run cannot finish), but let requests already on the wire
                    # finish: the servers did that work, and the cache keeps it.
                    failure = failure or error
                    self.pool.stop(str(error))
                    continue
                if failure is None:
                    submit_next()
                text, server = future.result()
                yield index, text, server
            if failure is not None:
                raise failure
        finally:
            for future in in_flight:  # only when the caller stopped early: drop what has not started
                future.cancel()

    def complete(self, requests: list[LLMRequest]) -> list[str]:
        texts = {index: text for index, text, _ in self.stream(requests)}  # every index is yielded exactly once
        return [texts[index] for index in range(len(requests))]

    def models(self) -> list[str]:
        """The model ids a server lists at `GET {base_url}/models` (to check a recipe's model name)."""
        payload, endpoint = self._request("/models", None)
        try:
            return [entry["id"] for entry in payload["data"]]
        except (KeyError, TypeError):
            raise SynthsetError(f"openai backend: {endpoint.client.display}/models: unexpected answer") from None

    def status(self) -> str:
        """Short, for a progress bar."""
        return f"servers {self.pool.status()}" + (f", {self.failovers:,} failed over" if self.failovers else "")

    def report(self) -> str:
        """One line for the plan summary: each server's share and outages, and the failovers."""
        return f"{self.pool.report()}; {self.failovers:,} requests failed over to another server"

    def close(self) -> None:
        """Stop the threads (requests on the wire finish in the background; nothing new is sent)."""
        self.pool.stop("openai backend: closed")
        with self._executor_lock:
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = None
