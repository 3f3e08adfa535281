"""Concurrent runs: a thread pool that runs items' workflows ahead of pytest's
in-order reporting (``--promptab-concurrency``).

The plugin submits the selected items' runs up front; each item then waits for
its own result, so items are still reported one by one, in order. A run that
was never submitted (under pytest-xdist workers, or concurrency 1) runs inline.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Hashable

from .records import RunRecord

Job = Callable[[], RunRecord]


class Runner:
    def __init__(self, concurrency: int) -> None:
        self.concurrency = max(1, concurrency)
        self._pool: ThreadPoolExecutor | None = None
        self._futures: dict[Hashable, Future[RunRecord]] = {}

    def submit_all(self, jobs: list[tuple[Hashable, Job]]) -> None:
        if self.concurrency <= 1 or len(jobs) <= 1:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="promptab")
        for key, job in jobs:
            self._futures[key] = self._pool.submit(job)

    def result(self, key: Hashable, job: Job) -> RunRecord:
        future = self._futures.pop(key, None)
        if future is None or future.cancelled():
            return job()
        return future.result()

    def shutdown(self) -> None:
        """Cancel queued runs (``-x``, Ctrl-C) and release the threads."""
        for future in self._futures.values():
            future.cancel()
        self._futures.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
