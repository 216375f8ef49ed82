"""moto's S3 server on loopback: the S3 wire protocol (conditional puts included), for run directories on s3://.

Tests talk to it exactly as a user's workers talk to AWS or any S3-compatible store: through s3fs, with the
endpoint in the standard `AWS_ENDPOINT_URL` environment variable, so every subprocess a test starts
(`synthset generate` workers, `accelerate launch`) reaches it the same way.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def moto_s3_server() -> Iterator[str]:
    """Start `moto_server` on a free loopback port; yields its endpoint URL, and stops it after."""
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start on port {port}") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def make_bucket(name: str) -> None:
    import s3fs

    s3fs.S3FileSystem(skip_instance_cache=True).mkdir(name)


@contextmanager
def s3_environment(endpoint: str) -> Iterator[None]:
    """Point this process and its children at `endpoint` the standard way (AWS_ENDPOINT_URL).

    fsspec caches S3 filesystems by their arguments, not by the endpoint the environment names, so one made
    under another test's (stopped) server would be reused by `datasets`: the cache is cleared on entry and exit.
    """
    import s3fs

    saved = {key: os.environ.get(key) for key in [*CREDENTIALS, "AWS_ENDPOINT_URL"]}
    os.environ.update(CREDENTIALS, AWS_ENDPOINT_URL=endpoint)
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        yield
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
