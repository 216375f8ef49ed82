"""The Hub client: one `HfApi`, the repo id check, errors as one line, and retries that know the Hub.

Retries: huggingface_hub 2.4 retries the calls that upload bytes (preupload, LFS batch and PUTs, range
reads) but not `create_commit`, `create_tag`, `get_paths_info`, `merge_pull_request` or the refs calls.
The Hub answers 409 while another commit to the repo is in progress, 429 with a `Retry-After` (or
`RateLimit: ...;t=<seconds>`) when a rate limit is hit, and 5xx under load. `with_retries` retries those
with exponential backoff (honouring the server's wait on a 429); a 412 (the branch moved), 4xx and
everything else fail at once. A 5xx or a lost connection does not prove a commit failed: the Hub has
answered 500 to commits that landed (huggingface/datasets#7708). So a caller that writes gives a `landed`
check, run before every retry, which looks at the server's state and returns the result if the write
already happened; nothing is ever committed twice.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from synthset.errors import HubError, SynthsetError, first_line

REPO_TYPE = "dataset"
NO_TOKEN = "no Hugging Face token: set HF_TOKEN or run `hf auth login`"
RETRY_STATUSES = (409, 429, 500, 502, 503, 504)
NOT_CONFLICTS = (429, 500, 502, 503, 504)  # for calls where 409 means "exists already"
RETRY_ATTEMPTS = 8
RETRY_BASE_SECONDS = 1.0
RETRY_MAX_SECONDS = 60.0

logger = logging.getLogger(__name__)
T = TypeVar("T")


def token_rejected(endpoint: str) -> str:
    return f"the Hugging Face token was rejected by {endpoint}: set a valid HF_TOKEN or run `hf auth login`"


def check_repo_id(repo_id: str) -> None:
    """huggingface_hub's own repo id rules (`validate_repo_id`), as one line naming what is wrong."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise HubError(f"repo: {repo_id!r} is not a Hub repo id: {first_line(error)}") from None
    if "/" not in repo_id:
        raise HubError(f"repo: {repo_id!r} is not a Hub repo id of the form org/name")


def client(require_token: bool) -> tuple[Any, str | None]:
    """An HfApi with the user's token (None for anonymous reads); refuses early when one is required."""
    from huggingface_hub import HfApi, get_token

    token = get_token()
    if require_token and not token:
        raise HubError(NO_TOKEN)
    return HfApi(token=token or False), token


# -- errors -----------------------------------------------------------------------------------------
def http_status(error: BaseException) -> int | None:
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)


def retry_after_seconds(error: BaseException) -> float | None:
    """The wait a 429 asks for: `Retry-After: <seconds>`, or `RateLimit: "api";r=0;t=<seconds>`."""
    response = getattr(error, "response", None)
    if response is None or http_status(error) != 429:
        return None
    value = response.headers.get("Retry-After")
    if value and value.strip().isdigit():
        return float(value.strip())
    match = re.search(r"\bt=(\d+)", response.headers.get("RateLimit", ""))
    return float(match[1]) if match else None


def name_not_resolved(error: BaseException) -> bool:
    """Whether the host's name could not be resolved (offline, a typo in the endpoint): no retry will help."""
    import socket

    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, socket.gaierror):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def is_transient(error: BaseException, statuses: tuple[int, ...] = RETRY_STATUSES) -> bool:
    """409 (commit in progress), 429 (rate limit), 5xx, or the connection failing (but not a host name that
    does not resolve: that fails at once rather than after minutes of retries)."""
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(error, HfHubHTTPError):
        return http_status(error) in statuses
    if name_not_resolved(error):
        return False
    try:
        import httpx2

        return isinstance(error, httpx2.TransportError)
    except ImportError:  # pragma: no cover - older huggingface_hub
        return isinstance(error, ConnectionError | TimeoutError)


def _wait_seconds(error: BaseException, attempt: int) -> float:
    asked = retry_after_seconds(error)
    if asked is not None:
        return asked
    return min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** (attempt - 1))


def with_retries(
    what: str,
    call: Callable[[], T],
    landed: Callable[[], T | None] | None = None,
    statuses: tuple[int, ...] = RETRY_STATUSES,
) -> T:
    """`call()`, retried on transient errors (see module docstring); before each retry `landed()` may
    return the result of a write that reached the server although its answer was lost. Calls for which a
    409 means "already exists" (tags, branches) pass `statuses` without it."""
    from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

    def wait(state: RetryCallState) -> float:
        return _wait_seconds(state.outcome.exception(), state.attempt_number)

    def log(state: RetryCallState) -> None:
        error = state.outcome.exception()
        logger.warning(
            "%s: %s; retry %d of %d in %.1f s",
            what,
            f"HTTP {http_status(error)}" if http_status(error) else first_line(error),
            state.attempt_number,
            RETRY_ATTEMPTS - 1,
            state.upcoming_sleep,
        )

    retrying = Retrying(
        stop=stop_after_attempt(RETRY_ATTEMPTS),
        wait=wait,
        retry=retry_if_exception(lambda error: is_transient(error, statuses)),
        before_sleep=log,
        reraise=True,
    )
    for attempt in retrying:
        with attempt:
            if attempt.retry_state.attempt_number > 1 and landed is not None:
                done = landed()
                if done is not None:
                    return done
            return call()
    raise AssertionError("unreachable")  # pragma: no cover


@contextlib.contextmanager
def hub_errors(where: str, token: str | None, endpoint: str) -> Iterator[None]:
    """Turn whatever a Hub call raises into one SynthsetError line, with the token scrubbed out."""
    try:
        from httpx2 import HTTPError  # huggingface_hub 2.x's HTTP client: its transport errors are not OSErrors
    except ImportError:  # pragma: no cover - older huggingface_hub
        HTTPError = OSError  # noqa: N806
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    def fail(message: str) -> SynthsetError:
        text = f"{where}: {message}"
        if token:
            text = text.replace(token, "<token>")
        return SynthsetError(" ".join(text.split()))

    try:
        yield
    except SynthsetError as error:
        raise fail(str(error).removeprefix(f"{where}: ")) from None
    except RevisionNotFoundError:
        raise fail("no such revision") from None
    except RepositoryNotFoundError:
        raise fail(f"no such dataset repo on {endpoint} (or it is private and the token cannot see it)") from None
    except HfHubHTTPError as error:
        status = http_status(error)
        if status == 401:
            raise HubError(token_rejected(endpoint) if token else f"{where}: {NO_TOKEN}") from None
        if status == 412:
            raise fail("the branch moved while pushing (another push?); run the push again") from None
        detail = error.server_message or first_line(error)
        if status in RETRY_STATUSES:
            detail += f" (still failing after {RETRY_ATTEMPTS} tries)"
        raise fail(f"HTTP {status}: {first_line(Exception(detail))}") from None
    except LocalEntryNotFoundError as error:  # hf_hub_download could not reach the server: not a missing file
        raise fail(f"cannot reach {endpoint}: {first_line(error)}") from None
    except EntryNotFoundError as error:
        raise fail(f"file not found: {first_line(error)}") from None
    except RuntimeError as error:
        # a failed LFS upload: huggingface_hub wraps the HTTP error in "Error while uploading '<path>'"
        if not isinstance(error.__cause__, HTTPError):
            raise
        raise fail(f"{first_line(error)} ({first_line(error.__cause__)})") from None
    except ValueError as error:
        if "metadata" not in str(error):  # README metadata the server's validate-yaml refused
            raise
        raise fail(first_line(error) + " " + " ".join(str(error).splitlines()[1:2])) from None
    except HTTPError as error:  # connection refused, timeouts, DNS
        raise fail(f"cannot reach {endpoint}: {first_line(error)}") from None
