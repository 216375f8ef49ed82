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
import time
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


def client(require_token: bool) -> tuple[RetryingApi, str | None]:
    """An HfApi with the user's token (None for anonymous reads), every call retried (`RetryingApi`);
    refuses early when a token is required and there is none."""
    from huggingface_hub import HfApi, get_token

    token = get_token()
    if require_token and not token:
        raise HubError(NO_TOKEN)
    return RetryingApi(HfApi(token=token or False)), token


# -- errors -----------------------------------------------------------------------------------------
def http_status(error: BaseException) -> int | None:
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)


def retry_after_seconds(error: BaseException) -> float | None:
    """The wait the server asks for, read as huggingface_hub's `http_backoff` reads it: on a 429 the
    `RateLimit: "api";r=0;t=<seconds>` header (the Hub's rate-limit docs), else `Retry-After: <seconds>`
    on any answer that is retried."""
    from huggingface_hub.utils import parse_ratelimit_headers

    response = getattr(error, "response", None)
    if response is None:
        return None
    limit = parse_ratelimit_headers(response.headers) if http_status(error) == 429 else None
    if limit is not None and limit.remaining == 0:
        return float(limit.reset_in_seconds)
    value = (response.headers.get("Retry-After") or "").strip()
    return float(value) if value.isdigit() else None


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


def gave_up(what: str, error: BaseException, tries: int) -> HubError:
    """The one line for a transient error that outlived every retry, counting the tries really made."""
    status = http_status(error)
    detail = getattr(error, "server_message", None) or first_line(error)
    cause = f"HTTP {status}: {first_line(Exception(detail))}" if status else f"cannot reach the Hub: {detail}"
    return HubError(f"{what}: {cause} (still failing after {tries} {'try' if tries == 1 else 'tries'})")


def with_retries(
    what: str,
    call: Callable[[], T],
    landed: Callable[[], T | None] | None = None,
    statuses: tuple[int, ...] = RETRY_STATUSES,
) -> T:
    """`call()`, retried on transient errors (see module docstring); before each retry `landed()` may
    return the result of a write that reached the server although its answer was lost. Calls for which a
    409 means "already exists" (tags, branches) pass `statuses` without it: their 409 is success when
    `landed()` finds the thing made as wanted (made by an earlier try, or by this one before its answer
    was lost), and a failure otherwise.

    Raises:
        HubError: a transient error still there after RETRY_ATTEMPTS tries (the message counts them).
    """
    for attempt in range(1, RETRY_ATTEMPTS + 1):
        if attempt > 1 and landed is not None and (done := landed()) is not None:
            return done
        try:
            return call()
        except Exception as error:
            if http_status(error) == 409 and 409 not in statuses and landed is not None:
                if (done := landed()) is not None:
                    return done
                raise
            if not is_transient(error, statuses):
                raise
            if attempt == RETRY_ATTEMPTS:
                raise gave_up(what, error, attempt) from error
            wait = _wait_seconds(error, attempt)
            logger.warning("%s: %s; retry %d of %d in %.1f s", what, _short(error), attempt, RETRY_ATTEMPTS - 1, wait)
            time.sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


def _short(error: BaseException) -> str:
    return f"HTTP {http_status(error)}" if http_status(error) else first_line(error)


# Calls that change the repo and are not idempotent: a blind retry could apply them twice, so they go
# through `with_retries` with a `landed` check of their own, on `RetryingApi.raw`.
WRITES = frozenset(
    {
        "create_commit",
        "merge_pull_request",
        "create_tag",
        "change_discussion_status",
        "create_pull_request",
        "create_discussion",
        "comment_discussion",
        "upload_file",
        "upload_folder",
        "delete_file",
        "delete_folder",
        "delete_tag",
        "delete_branch",
        "delete_repo",
        "move_repo",
        "update_repo_settings",
    }
)
LAZY_LISTINGS = (Iterator,)  # huggingface_hub pages listings lazily: a retry must cover every page


class RetryingApi:
    """An `HfApi` whose every call goes through `with_retries`, so that no Hub call is made unretried.

    Reads and idempotent writes (`create_repo(exist_ok=True)`, `create_branch(exist_ok=True)`: their 409
    is "exists", which huggingface_hub turns into success) are retried as they are. A paged listing
    (`list_repo_tree`, `get_repo_discussions`) is read whole inside the retried call: a fault on its
    third page retries the listing, not just the iterator's first request. The non-idempotent writes
    (`WRITES`) are refused here: they need a `landed` check, so callers use `with_retries` on `raw`.
    """

    def __init__(self, api: Any) -> None:
        self.raw = api
        self.endpoint = api.endpoint

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.raw, name)
        if not callable(method):
            return method
        if name in WRITES:
            raise AttributeError(f"{name} is not idempotent: call it through with_retries(..., landed) on .raw")

        def retried(*args: Any, **kwargs: Any) -> Any:
            def call() -> Any:
                result = method(*args, **kwargs)
                return list(result) if isinstance(result, LAZY_LISTINGS) else result

            return with_retries(name, call)

        return retried


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
