"""Several servers of one model as one pool: request slots per server, and which servers are up.

A plan at paper A's scale (7.7M descriptions) wants several vLLM servers. Each server gets at most its
`concurrency` requests at once (a vLLM server queues what exceeds its `--max-num-seqs`, so sending more only
adds latency), and a request takes a free slot on the least busy server that is up. The pool only hands
out slots and keeps score; `OpenAIBackend` makes the HTTP attempts and reports each outcome here.

Health is a circuit breaker per server:
- A retryable failure (connection refused or lost, timeout, HTTP 5xx/429/408) takes the server out of
  rotation for a backoff (`backoff_base * 2**(failures - 1)`, capped at `backoff_max`, times a random
  factor in [0.5, 1), at least the server's Retry-After). The requests it had in flight fail over to the
  other servers at once. When a server dies, every request it had in flight fails within moments; they
  are one outage, so only a failure of an attempt started since the server's last change of state
  counts (`epoch`), and the backoff does not explode with the concurrency.
- When its backoff is over, one request probes it. The probe's success puts it back in rotation (an
  answer to a request sent before the outage does not: the failure is the newer news); a failure doubles
  the backoff. A dead server is probed again for as long as the run lasts, so a restarted server rejoins.
- A server that has failed `max_failures` times in a row (`max_retries + 1`) is given up for the count,
  though still probed; when every server is given up at once, the pool stops with one line naming each
  server and its last problem. With one server that is the single-server behaviour: `max_retries`
  retries with backoff, then one line.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass

from synthset.errors import SynthsetError
from synthset.generation.llm.http_client import Attempt, EndpointClient


@dataclass(eq=False)
class Endpoint:
    """One server and its score; changed only under the pool's lock."""

    client: EndpointClient
    concurrency: int
    in_flight: int = 0
    failures: int = 0  # failed attempts in a row (the requests of one outage count once)
    epoch: int = 0  # bumped whenever the server goes out of rotation or comes back
    down_until: float = 0.0  # time.monotonic() before which no request goes here
    probing: bool = False  # a probe is in flight
    last_problem: str | None = None
    answered: int = 0
    failed_attempts: int = 0
    outages: int = 0  # times taken out of rotation

    @property
    def up(self) -> bool:
        return self.failures == 0


@dataclass(frozen=True)
class Slot:
    """A request's permission to make one attempt on `endpoint`; hand it back with succeeded or failed."""

    endpoint: Endpoint
    epoch: int
    probe: bool  # the attempt that tests a server out of rotation


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" + ("" if count == 1 else "s")


class EndpointPool:
    """Thread-safe: many request threads acquire and release slots at once."""

    def __init__(
        self, endpoints: list[Endpoint], max_failures: int, backoff_base: float = 0.5, backoff_max: float = 30.0
    ) -> None:
        self.endpoints = endpoints
        self.max_failures = max_failures
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._cond = threading.Condition()
        self._random = random.Random()
        self._error: str | None = None  # once set, every acquire raises it

    @property
    def slots(self) -> int:
        """Requests the pool runs at once when every server is up."""
        return sum(endpoint.concurrency for endpoint in self.endpoints)

    def acquire(self) -> Slot:
        """A slot on the least busy server that is up, or a probe of one whose backoff is over; waits if
        there is neither. Raises `SynthsetError` once the pool is stopped (every server given up, a
        request failed for good, or the backend closed)."""
        with self._cond:
            while True:
                if self._error is not None:
                    raise SynthsetError(self._error)
                # A due probe goes first, so a server that came back rejoins however light the load.
                now = time.monotonic()
                waiting = [e for e in self.endpoints if not e.up and not e.probing and e.in_flight < e.concurrency]
                due = [e for e in waiting if e.down_until <= now]
                if due:
                    endpoint = min(due, key=lambda e: e.down_until)
                    endpoint.probing = True
                    endpoint.in_flight += 1
                    return Slot(endpoint, endpoint.epoch, probe=True)
                free = [e for e in self.endpoints if e.up and e.in_flight < e.concurrency]
                if free:
                    endpoint = min(free, key=lambda e: e.in_flight / e.concurrency)
                    endpoint.in_flight += 1
                    return Slot(endpoint, endpoint.epoch, probe=False)
                # Nothing free: wait for a slot to come back, or for the next backoff to end.
                self._cond.wait(min((e.down_until for e in waiting), default=now + 60.0) - now)

    def succeeded(self, slot: Slot) -> None:
        with self._cond:
            endpoint = slot.endpoint
            endpoint.in_flight -= 1
            endpoint.answered += 1
            if slot.probe:  # it answered the probe: back in rotation
                endpoint.probing = False
                endpoint.failures, endpoint.down_until = 0, 0.0
                endpoint.epoch += 1
            # A request that started before the server went out of rotation and answers after is no news
            # of its health: the failure that took it out is more recent. Only a probe brings it back.
            self._cond.notify_all()

    def failed(self, slot: Slot, attempt: Attempt) -> None:
        """A retryable failure of `slot`'s attempt: maybe take its server out of rotation, with backoff."""
        with self._cond:
            endpoint = slot.endpoint
            endpoint.in_flight -= 1
            endpoint.failed_attempts += 1
            endpoint.last_problem = attempt.problem
            if slot.probe:
                endpoint.probing = False
            if slot.epoch == endpoint.epoch:  # the first news of this outage (or a failed probe)
                endpoint.failures += 1
                endpoint.epoch += 1
                endpoint.outages += endpoint.failures == 1
                # (The exponent is capped: a server dead for days has failed thousands of times.)
                delay = min(self.backoff_max, self.backoff_base * 2 ** min(endpoint.failures - 1, 32))
                delay *= 0.5 + 0.5 * self._random.random()
                if attempt.retry_after is not None:
                    delay = max(delay, min(attempt.retry_after, self.backoff_max))
                endpoint.down_until = time.monotonic() + delay
                if self._error is None and all(e.failures >= self.max_failures for e in self.endpoints):
                    self._error = self._given_up()
            self._cond.notify_all()

    def release(self, slot: Slot) -> None:
        """Hand back a slot whose attempt says nothing about the server's health (a bad request)."""
        with self._cond:
            slot.endpoint.in_flight -= 1
            if slot.probe:
                slot.endpoint.probing = False
            self._cond.notify_all()

    def stop(self, reason: str) -> None:
        """Every later acquire raises `reason` (the first reason given wins)."""
        with self._cond:
            if self._error is None:
                self._error = reason
            self._cond.notify_all()

    def _given_up(self) -> str:
        def line(e: Endpoint) -> str:
            return f"{e.client.display}/chat/completions failed after {_plural(e.failures, 'attempt')}"

        if len(self.endpoints) == 1:
            endpoint = self.endpoints[0]
            return f"openai backend: {line(endpoint)}; last: {endpoint.last_problem}"
        servers = "; ".join(f"{line(e)} (last: {e.last_problem})" for e in self.endpoints)
        return f"openai backend: all {len(self.endpoints)} endpoints are failing: {servers}"

    def any_up(self) -> bool:
        with self._cond:
            return any(e.up for e in self.endpoints)

    def status(self) -> str:
        """Short, for a progress bar: how many servers are up."""
        with self._cond:
            up = sum(e.up for e in self.endpoints)
        return f"{up}/{len(self.endpoints)} up"

    def report(self) -> str:
        """One line for the plan summary: what each server answered and how often it was out of rotation."""
        with self._cond:
            parts = []
            for e in self.endpoints:
                text = f"{e.client.display} answered {e.answered:,}"
                if e.outages:
                    text += f", out of rotation {_plural(e.outages, 'time')} (last: {e.last_problem})"
                if not e.up:
                    text += ", down at the end"
                parts.append(text)
        return "; ".join(parts)
