"""Any OpenAI-compatible chat server (vLLM, TGI, Ollama, llama.cpp server, OpenAI) by base URL.

Why the standard library (urllib) and not the `openai` client or httpx: the protocol used here is one
JSON POST, and owning its retry loop is the point. The `openai` client retries by itself (hiding how
many attempts were made, which the tests must count) and would be a new dependency; httpx is not a
dependency either (huggingface_hub 2.x brings `httpx2`, a different package). urllib costs nothing to
import, so the CLI stays fast, and a thread pool gives the concurrency.

Behaviour:
- `concurrency` requests in flight (threads); results stream back as they finish, so `LLMCache` stores
  each one at once; `complete` returns them in request order.
- `timeout` is the socket timeout of each attempt (connect, and each wait for response bytes). A
  non-streaming chat completion sends nothing until it is done, so it bounds the whole attempt.
- Retried, with exponential backoff and jitter (`backoff_base * 2**attempt`, capped, times a random
  factor in [0.5, 1), at least the server's Retry-After): HTTP 5xx, 429 and 408, timeouts and connection
  errors, up to `max_retries` retries. Other 4xx answers (bad model name, bad key) fail at once.
- Failure is one `SynthsetError` line naming the URL and the last status; the API key never appears in
  it, even when a server echoes request headers into its error body.
- The key comes from the environment variable `api_key_env` names; unset means no Authorization header
  (local servers need none). Loopback URLs bypass any http_proxy setting.
- The request seed is sent reduced to 31 bits: servers differ in the seed width they accept (llama.cpp
  takes 32 bits), and a seed must never be refused. Whether a server honours it is up to the server;
  exact re-runs come from the cache.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from synthset.errors import SynthsetError
from synthset.generation.llm.base import LLMRequest, one_line

if TYPE_CHECKING:
    from synthset.recipe import LLMSpec

RETRYABLE_STATUS = frozenset({408, 429})  # plus every 5xx
SEED_BITS = 31
_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class _Attempt:
    """What one HTTP attempt ended with: a JSON payload, or a reason to retry or give up."""

    payload: Any = None
    problem: str | None = None  # e.g. "HTTP 500: <body>", "timed out after 60s", "connection refused"
    retryable: bool = False
    retry_after: float | None = None


def _display_url(url: str) -> str:
    """The URL without any user:password@ part, for messages."""
    parts = urllib.parse.urlsplit(url)
    host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname or ""
    return parts._replace(netloc=host + (f":{parts.port}" if parts.port else "")).geturl()


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # an HTTP date: rare from LLM servers, and backoff covers it
        return None


class OpenAIBackend:
    """Chat completions from an OpenAI-compatible server; `attempts` and `retries` count HTTP attempts."""

    name = "openai"

    def __init__(self, spec: LLMSpec, *, backoff_base: float = 0.5, backoff_max: float = 30.0) -> None:
        if not spec.model:
            raise SynthsetError("prompts.llm.model: the openai backend needs the model name the server knows")
        if not spec.base_url:
            raise SynthsetError("prompts.llm.base_url: the openai backend needs a base URL")
        parts = urllib.parse.urlsplit(spec.base_url)
        try:
            valid = parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port or 1) > 0
        except ValueError:  # a port that is not a number
            valid = False
        if not valid:
            raise SynthsetError(f"prompts.llm.base_url: not an http(s) URL: {spec.base_url!r}")
        self.spec = spec
        self.model = spec.model
        self.base_url = spec.base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.attempts = 0
        self.retries = 0
        self._count_lock = threading.Lock()
        self._random = random.Random()
        proxies = {} if parts.hostname in _LOOPBACK_HOSTS or parts.hostname.startswith("127.") else None
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler(proxies))

    @property
    def _api_key(self) -> str | None:
        return os.environ.get(self.spec.api_key_env) or None

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _redact(self, text: str) -> str:
        key = self._api_key
        return text.replace(key, "***") if key else text

    def body(self, request: LLMRequest) -> dict[str, Any]:
        """The JSON sent for `request`."""
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

    def _attempt(self, url: str, data: bytes | None) -> _Attempt:
        """One HTTP request, classified; never raises for network or HTTP trouble."""
        with self._count_lock:
            self.attempts += 1
        http_request = urllib.request.Request(url, data=data, headers=self._headers(), method="POST" if data else "GET")
        try:
            with self._opener.open(http_request, timeout=self.spec.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            try:
                body = error.read(2000).decode("utf-8", "replace")
            except OSError:
                body = ""
            detail = one_line(self._redact(body), 160)  # redact before cutting, or a cut key would slip through
            hint = f" (is ${self.spec.api_key_env} right?)" if error.code in (401, 403) else ""
            return _Attempt(
                problem=f"HTTP {error.code}{hint}" + (f": {detail}" if detail else ""),
                retryable=error.code in RETRYABLE_STATUS or error.code >= 500,
                retry_after=_retry_after(error.headers),
            )
        except TimeoutError:
            return _Attempt(problem=f"timed out after {self.spec.timeout:g}s", retryable=True)
        except urllib.error.URLError as error:
            reason = error.reason
            if isinstance(reason, TimeoutError):
                return _Attempt(problem=f"timed out after {self.spec.timeout:g}s", retryable=True)
            if isinstance(reason, ConnectionRefusedError):
                return _Attempt(problem="connection refused", retryable=True)
            return _Attempt(problem=f"connection failed: {one_line(str(reason), 120)}", retryable=True)
        except (ConnectionError, http.client.HTTPException, OSError) as error:
            # Reset or closed mid-response, a truncated body: the server or the network hiccuped.
            return _Attempt(
                problem=f"connection error: {one_line(str(error) or type(error).__name__, 120)}", retryable=True
            )
        try:
            return _Attempt(payload=json.loads(raw))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _Attempt(
                problem=f"answer is not JSON: {one_line(self._redact(raw.decode('utf-8', 'replace')), 120)}"
            )

    def _call(self, url: str, data: bytes | None, stop: threading.Event | None = None) -> Any:
        """The JSON payload of a successful attempt, retrying what is worth retrying."""
        stop = stop or threading.Event()
        attempt = _Attempt()
        for number in range(self.spec.max_retries + 1):
            if number:
                with self._count_lock:
                    self.retries += 1
                delay = min(self.backoff_max, self.backoff_base * 2 ** (number - 1))
                with self._count_lock:
                    delay *= 0.5 + 0.5 * self._random.random()
                if attempt.retry_after is not None:
                    delay = max(delay, min(attempt.retry_after, self.backoff_max))
                if stop.wait(delay):
                    break  # another request of the batch failed for good: stop early
            attempt = self._attempt(url, data)
            if attempt.problem is None:
                return attempt.payload
            if not attempt.retryable:
                raise SynthsetError(f"openai backend: {_display_url(url)}: {attempt.problem}")
        tries = f"{number + 1} attempt" + ("s" if number else "")
        raise SynthsetError(f"openai backend: {_display_url(url)} failed after {tries}; last: {attempt.problem}")

    def _complete_one(self, request: LLMRequest, stop: threading.Event | None = None) -> str:
        payload = self._call(self.url, json.dumps(self.body(request)).encode(), stop)
        try:
            content = payload["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise SynthsetError(
                f"openai backend: {_display_url(self.url)}: answer has no choices[0].message.content: "
                f"{one_line(self._redact(json.dumps(payload)), 120)}"
            ) from None
        return content if isinstance(content, str) else ""

    def stream(self, requests: list[LLMRequest]) -> Iterator[tuple[int, str]]:
        """`(index, output)` as answers arrive, `concurrency` requests in flight.

        Requests are submitted as slots free up (never all at once), so memory stays flat for any
        number of requests. The first request that fails for good stops new submissions; the requests
        already in flight still finish and are yielded, then its `SynthsetError` is raised.
        """
        if not requests:
            return
        stop = threading.Event()
        pending = iter(enumerate(requests))
        in_flight: dict[Future[str], int] = {}
        pool = ThreadPoolExecutor(max_workers=self.spec.concurrency, thread_name_prefix="synthset-llm")

        def submit_next() -> None:
            item = next(pending, None)
            if item is not None:
                in_flight[pool.submit(self._complete_one, item[1], stop)] = item[0]

        failure: BaseException | None = None
        try:
            for _ in range(self.spec.concurrency):
                submit_next()
            while in_flight:
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    index = in_flight.pop(future)
                    error = future.exception()
                    if error is not None:
                        # Submit nothing more and cut retries short, but let requests already on the wire
                        # finish: the server did that work, and the cache keeps it.
                        failure = failure or error
                        stop.set()
                        continue
                    if failure is None:
                        submit_next()
                    yield index, future.result()
            if failure is not None:
                raise failure
        finally:
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)

    def complete(self, requests: list[LLMRequest]) -> list[str]:
        outputs: list[str | None] = [None] * len(requests)
        for index, text in self.stream(requests):
            outputs[index] = text
        return outputs  # type: ignore[return-value]  # every index is yielded exactly once

    def models(self) -> list[str]:
        """The model ids the server lists at `GET {base_url}/models` (to check a recipe's model name)."""
        payload = self._call(self.base_url + "/models", None)
        try:
            return [entry["id"] for entry in payload["data"]]
        except (KeyError, TypeError):
            raise SynthsetError(f"openai backend: {_display_url(self.base_url)}/models: unexpected answer") from None
