"""A loopback OpenAI-compatible server for the openai backend's tests and bench: stdlib only, programmable faults.

    with OpenAIServer(fail_first=2) as server:      # the first two chat requests get HTTP 500
        spec = LLMSpec(backend="openai", model=server.model, base_url=server.base_url, ...)

    python -m tests.openai_server --delay 0.2 --max-num-seqs 8 --answer describe   # prints its base URL

It serves `POST /v1/chat/completions` and `GET /v1/models` on 127.0.0.1 at a free port, one thread per
connection. Answers are a pure function of (prompt, seed) (`expected_answer`), so tests can check
which answer went to which request. Faults go by a chat request's number in arrival order (from 0):
the first `fail_first`, and every one from `fail_from` on, answer HTTP `fail_status` (the body echoes
the Authorization header, so a test can prove the client never repeats the key in its errors); the
next `sleep_first` wait `sleep_seconds` (longer than the client's timeout) before answering. Every answer
that is not a failure may also be delayed by `delay` seconds, so that concurrent requests overlap (and
failures come back first); the server records how many were in flight at most. Sleeps wait on an event
that `stop()` sets, so stopping never hangs on a sleeping handler.

Like vLLM, it works on at most `max_num_seqs` requests at once and queues the rest (vLLM's
`--max-num-seqs`, 256 in its engine-args docs: requests beyond it wait in the scheduler's queue rather
than being refused; https://docs.vllm.ai/en/stable/models/engine_args.html), so a server's throughput
is bounded and adding servers is what adds throughput. `kill()` is a server dying: the port refuses connections and
every request in progress or queued is dropped without an answer (the client sees the connection
closed); `start()` again brings it back on the same port, as a restarted vLLM would come back.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def expected_answer(prompt: str, seed: int) -> str:
    """The server's answer to (prompt, seed): tests compare against this."""
    digest = hashlib.sha256(f"{seed}\0{prompt}".encode()).hexdigest()[:12]
    return f"answer {digest} to: {prompt}"


def describe_query(prompt: str, seed: int) -> str:
    """A well-behaved describing LLM for any prompt format: the prompt's last paragraph (the query line,
    which names the class and its aspects or style) as a description, made unique by the seed."""
    query = prompt.rsplit("\n\n", 1)[-1].removesuffix("=>").strip()
    return f"{query}, take {seed}"


ANSWERS: dict[str, Callable[[str, int], str]] = {"echo": expected_answer, "describe": describe_query}


@dataclass
class OpenAIServer:
    model: str = "test-model"
    port: int = 0  # 0: a free port, chosen at the first start and kept across kill() and start()
    max_num_seqs: int | None = None  # requests worked on at once; the rest wait (vLLM's --max-num-seqs)
    fail_first: int = 0
    fail_from: int | None = None  # every chat request from this number on fails too
    fail_status: int = 500
    retry_after: str | None = None  # Retry-After header sent with the failures
    sleep_first: int = 0
    sleep_seconds: float = 5.0
    delay: float = 0.0
    answer: Callable[[str, int], str] = expected_answer  # (prompt, seed) -> the assistant's text
    # Recorded, for assertions (guarded by _lock while the server runs).
    chat_requests: int = 0
    answered: int = 0  # chat requests answered 200
    dropped: int = 0  # chat requests cut off by kill()
    bodies: list[dict[str, Any]] = field(default_factory=list)
    authorization: list[str | None] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._dead = threading.Event()
        self._seqs = threading.Semaphore(self.max_num_seqs) if self.max_num_seqs else None
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self.port, "server not started"
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> OpenAIServer:
        """Serve (again, after `kill()` or `stop()`, on the same port)."""
        server = self
        self._stopping = threading.Event()
        self._dead = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

            def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.send_header("Connection", "close")
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timed out) first
                self.close_connection = True

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/v1/models":
                    self._send_json(200, {"object": "list", "data": [{"id": server.model, "object": "model"}]})
                else:
                    self._send_json(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send_json(404, {"error": {"message": f"no route {self.path}"}})
                    return
                server._handle_chat(self, json.loads(raw))

        class Server(ThreadingHTTPServer):
            request_queue_size = 1024  # socketserver's 5 would drop connections a real server accepts
            daemon_threads = True

        self._httpd = Server(("127.0.0.1", self.port), Handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def _handle_chat(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        with self._lock:
            number = self.chat_requests
            self.chat_requests += 1
            self.bodies.append(body)
            self.authorization.append(handler.headers.get("Authorization"))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        reply = None
        try:
            reply = self._reply(handler, body, number)
        finally:
            with self._lock:
                # Before the answer goes out: the client may send its next request the moment it has it.
                self.in_flight -= 1
                if reply is None:
                    self.dropped += 1
                elif reply[0] == 200:
                    self.answered += 1
        if reply is None:  # died: close the connection without an answer, as a dead process would
            handler.close_connection = True
        else:
            handler._send_json(*reply)  # type: ignore[attr-defined]

    def _reply(
        self, handler: BaseHTTPRequestHandler, body: dict[str, Any], number: int
    ) -> tuple[int, dict[str, Any], dict[str, str]] | None:
        """(status, JSON, headers) for chat request `number`, after its delays; None if the server died."""
        stopping, dead = self._stopping, self._dead  # this life's: a restart makes new ones
        if number < self.fail_first or (self.fail_from is not None and number >= self.fail_from):
            headers = {"Retry-After": self.retry_after} if self.retry_after is not None else {}
            echoed = handler.headers.get("Authorization")
            message = f"internal error (request had Authorization: {echoed})"
            return self.fail_status, {"error": {"message": message}}, headers
        if not self._take_seq(dead):
            return None
        try:
            if number < self.fail_first + self.sleep_first:
                stopping.wait(self.sleep_seconds)
            if self.delay:
                stopping.wait(self.delay)
        finally:
            if self._seqs is not None:
                self._seqs.release()
        if dead.is_set():
            return None
        if body.get("model") != self.model:
            return 404, {"error": {"message": f"model {body.get('model')!r} not found"}}, {}
        answer = self.answer(body["messages"][-1]["content"], body.get("seed", 0))
        choice = {"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}
        return (
            200,
            {"id": f"chatcmpl-{number}", "object": "chat.completion", "model": self.model, "choices": [choice]},
            {},
        )

    def _take_seq(self, dead: threading.Event) -> bool:
        """Wait for one of the `max_num_seqs` places (at once without a limit); False if killed meanwhile."""
        while self._seqs is not None and not self._seqs.acquire(timeout=0.05):
            if dead.is_set():
                return False
        if dead.is_set():
            if self._seqs is not None:
                self._seqs.release()  # taken just as the server died: give it back, answer nothing
            return False
        return True

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def kill(self) -> None:
        """Die: refuse new connections, and drop every request in progress or waiting, unanswered."""
        self._dead.set()
        self.stop()

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """Serve on loopback until stdin closes; the first line printed is the base URL (for the bench)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--model", default="test-model")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds each answer takes")
    parser.add_argument("--max-num-seqs", type=int, default=None, help="requests worked on at once (vLLM's flag)")
    parser.add_argument("--answer", choices=sorted(ANSWERS), default="echo")
    args = parser.parse_args(argv)
    server = OpenAIServer(
        model=args.model, port=args.port, delay=args.delay, max_num_seqs=args.max_num_seqs, answer=ANSWERS[args.answer]
    )
    with server:
        print(server.base_url, flush=True)
        sys.stdin.read()  # until the parent closes our stdin (or kills us)


if __name__ == "__main__":
    main()
