"""One stage of row 8e in a fresh process, its scratch disk watched: `python -m benchmarks.store_child STAGE RUN`.

Runs what `synthset STAGE RUN` runs (through `synthset.api`, with the CLI's arguments) and prints one
`BENCH {json}` line: the stage's seconds and CPU seconds (after the imports both runs need), the most bytes its scratch
held, and the requests it sent the store by S3 operation (counted where aiobotocore sends each, retries
included). The scratch only grows when the store sends a file (`RunStore.download`) or the stage writes one, so
its size is taken after every download and every removal of a fetched file (push), and once at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

REPORT_PREFIX = "BENCH "


def folder_bytes(folder: Path) -> int:
    total = 0
    for root, _, names in os.walk(folder):
        for name in names:
            with contextlib.suppress(FileNotFoundError):  # removed while counted
                total += os.stat(os.path.join(root, name)).st_size
    return total


def count_store_requests() -> Counter:
    """Count every HTTP request s3fs sends, by S3 operation (GetObject, CopyObject, ...); -> the counter."""
    from aiobotocore.endpoint import AioEndpoint

    counts: Counter = Counter()
    send = AioEndpoint._do_get_response

    async def counted(self, request, operation_model, context):
        counts[operation_model.name] += 1
        return await send(self, request, operation_model, context)

    AioEndpoint._do_get_response = counted  # type: ignore[method-assign]
    return counts


def main() -> None:
    stage, target = sys.argv[1], sys.argv[2]
    scratch = Path(os.environ["SYNTHSET_SCRATCH"])
    from synthset import api
    from synthset.hub import publish
    from synthset.run.store import RunStore

    peak = {"bytes": 0}

    def measure() -> None:
        peak["bytes"] = max(peak["bytes"], folder_bytes(scratch))

    download, download_many, release = RunStore.download, RunStore.download_many, publish.release_fetched

    def watched_download(store, rel, dest):
        download(store, rel, dest)
        measure()

    def watched_many(store, pairs):
        download_many(store, pairs)
        measure()

    def watched_release(paths):
        measure()
        release(paths)

    RunStore.download, RunStore.download_many, publish.release_fetched = watched_download, watched_many, watched_release
    requests = count_store_requests()
    started, cpu_started = time.perf_counter(), time.process_time()
    if stage == "build":
        api.build(target)
    elif stage == "card":
        api.card(target, license="apache-2.0")
    elif stage == "review":
        api.review(target)
    elif stage == "validate":
        assert api.validate(target).ok
    elif stage == "push":
        api.push(target, sys.argv[3], tag="v1.0", allow_unscreened=True)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    measure()
    print(
        REPORT_PREFIX
        + json.dumps(
            {
                "stage": stage,
                "seconds": seconds,
                "cpu_s": cpu_seconds,
                "peak_scratch": peak["bytes"],
                "requests": dict(requests),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
