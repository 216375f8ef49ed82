"""`ordered_map`: a function over items, several at a time on threads, results handed back in item order.

Why: the plan writes one class's prompts at a time, and a class waits for all its LLM answers (and then
for a retry round of the few rejected ones) before the next class starts. Against several servers with
many slots each, one class cannot keep them busy: at 6x ImageNet a class has ~1,300 requests, about one
wave on four vLLM servers of 256 slots, and every retry round would leave them idle for a whole request's
latency. Working on several classes at once keeps the servers busy, while the rows are still written in
plan order, so plan.parquet is the same file whatever the depth. At most `depth` items are in flight, so
memory is bounded by the depth, never by the size of the plan.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(fn: Callable[[T], R], items: Iterable[T], depth: int) -> Iterator[tuple[T, R]]:
    """Yield `(item, fn(item))` in the order of `items`, with up to `depth` calls running at once.

    `depth <= 1` calls `fn` inline, one item at a time. An exception from `fn` is raised when its item's
    turn comes; calls not started by then are cancelled (running ones finish in the background).
    """
    if depth <= 1:
        for item in items:
            yield item, fn(item)
        return
    executor = ThreadPoolExecutor(max_workers=depth, thread_name_prefix="synthset-plan")
    window: deque[tuple[T, Future[R]]] = deque()
    try:
        for item in items:
            window.append((item, executor.submit(fn, item)))
            if len(window) >= depth:
                oldest, future = window.popleft()
                yield oldest, future.result()
        while window:
            oldest, future = window.popleft()
            yield oldest, future.result()
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
