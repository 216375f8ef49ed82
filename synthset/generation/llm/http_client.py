"""One OpenAI-compatible server: one HTTP attempt at a time, classified, never raising for network trouble.

Why the standard library (urllib) and not the `openai` client or httpx: the protocol used here is one
JSON POST, and owning the retry loop is the point. The `openai` client retries by itself (hiding how many
attempts were made, which the tests must count, and to which server they went) and would be a new
dependency; httpx is not a dependency either (huggingface_hub 2.x brings `httpx2`, a different package).
urllib costs nothing to import, so the CLI stays fast.

What an attempt can end with (`Attempt`): a JSON payload, or a problem that is worth retrying (HTTP 5xx,
429 and 408, timeouts, refused or lost connections) or not (other 4xx: a bad model name, a bad key).
The API key comes from the environment variable the endpoint names; unset means no Authorization header
(local servers need none). It never appears in a problem, even when a server echoes request headers into
its error body. Loopback URLs bypass any http_proxy setting.
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from synthset.generation.llm.base import one_line

RETRYABLE_STATUS = frozenset({408, 429})  # plus every 5xx
_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class Attempt:
    """What one HTTP attempt ended with: a JSON payload, or a reason to retry or give up."""

    payload: Any = None
    problem: str | None = None  # e.g. "HTTP 500: <body>", "timed out after 60s", "connection refused"
    retryable: bool = False
    retry_after: float | None = None  # seconds, from the server's Retry-After header


def display_url(url: str) -> str:
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


class EndpointClient:
    """The HTTP side of one server: `post(path, body)` and `get(path)`, each one attempt."""

    def __init__(self, base_url: str, api_key_env: str, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.display = display_url(self.base_url)
        hostname = urllib.parse.urlsplit(self.base_url).hostname or ""
        proxies: dict[str, str] | None = {} if hostname in _LOOPBACK_HOSTS or hostname.startswith("127.") else None
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler(proxies))

    @property
    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) or None

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def redact(self, text: str) -> str:
        key = self.api_key
        return text.replace(key, "***") if key else text

    def post(self, path: str, body: dict[str, Any]) -> Attempt:
        return self._attempt(self.base_url + path, json.dumps(body).encode())

    def get(self, path: str) -> Attempt:
        return self._attempt(self.base_url + path, None)

    def _attempt(self, url: str, data: bytes | None) -> Attempt:
        http_request = urllib.request.Request(url, data=data, headers=self._headers(), method="POST" if data else "GET")
        try:
            with self._opener.open(http_request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            try:
                body = error.read(2000).decode("utf-8", "replace")
            except OSError:
                body = ""
            detail = one_line(self.redact(body), 160)  # redact before cutting, or a cut key would slip through
            hint = f" (is ${self.api_key_env} right?)" if error.code in (401, 403) else ""
            return Attempt(
                problem=f"HTTP {error.code}{hint}" + (f": {detail}" if detail else ""),
                retryable=error.code in RETRYABLE_STATUS or error.code >= 500,
                retry_after=_retry_after(error.headers),
            )
        except TimeoutError:
            return Attempt(problem=f"timed out after {self.timeout:g}s", retryable=True)
        except urllib.error.URLError as error:
            reason = error.reason
            if isinstance(reason, TimeoutError):
                return Attempt(problem=f"timed out after {self.timeout:g}s", retryable=True)
            if isinstance(reason, ConnectionRefusedError):
                return Attempt(problem="connection refused", retryable=True)
            return Attempt(problem=f"connection failed: {one_line(str(reason), 120)}", retryable=True)
        except (ConnectionError, http.client.HTTPException, OSError) as error:
            # Reset or closed mid-response, a truncated body: the server died or the network hiccuped.
            return Attempt(
                problem=f"connection error: {one_line(str(error) or type(error).__name__, 120)}", retryable=True
            )
        try:
            return Attempt(payload=json.loads(raw))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return Attempt(problem=f"answer is not JSON: {one_line(self.redact(raw.decode('utf-8', 'replace')), 120)}")
