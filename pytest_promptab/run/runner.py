"""Concurrent runs: a pool of threads that runs items' workflows ahead of
pytest's in-order reporting (``--promptab-concurrency``).

The plugin submits the selected items' runs up front (:meth:`Runner.submit_all`,
in report order); each item then waits for its own result
(:meth:`Runner.result`), so items are still reported one by one, in order,
while up to ``concurrency`` runs are in flight. A run that was never
submitted (pytest-xdist workers, concurrency 1, a single item) or whose
submission was cancelled runs inline, in the caller's thread.

:meth:`Runner.shutdown` (``-x``, ``--maxfail``, Ctrl-C, session end) cancels
every run that has not started. Runs already in flight are abandoned, not
awaited: the threads are daemon threads, so a Ctrl-C during slow LLM calls
ends the session at once instead of waiting for calls nobody will report.
(``concurrent.futures.ThreadPoolExecutor`` always joins its threads at
interpreter exit, which is why this module has its own small pool.)

Threads rather than one asyncio event loop: python-provider callables are
synchronous anyway, and for HTTP calls one event loop with
``httpx.AsyncClient`` cost about twice the client CPU per call of these
threads with the ``openai`` provider's transport, and far more at 64 in
flight (``benchmarks/bench_transport.py``).
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Generic, Hashable, Sequence, TypeVar

from .records import RunRecord

T = TypeVar("T")
Job = Callable[[], RunRecord]

_PENDING, _RUNNING, _DONE, _CANCELLED = range(4)


class RunCancelled(Exception):
    """Raised by :meth:`Slot.wait` for a slot cancelled before it started."""


class Slot(Generic[T]):
    """The future result of one submitted job."""

    __slots__ = ("job", "_state", "_value", "_error", "_lock", "_done")

    def __init__(self, job: Callable[[], T]) -> None:
        self.job = job
        self._state = _PENDING
        self._value: T | None = None
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._done = threading.Lock()
        """Held until the slot is finished or cancelled: a latch that costs
        less than a ``threading.Event`` (one of these per item)."""
        self._done.acquire()

    def start(self) -> bool:
        """Claim the slot for running; False when it was cancelled."""
        with self._lock:
            if self._state != _PENDING:
                return False
            self._state = _RUNNING
            return True

    def cancel(self) -> bool:
        """Cancel the slot if it has not started; True when cancelled."""
        with self._lock:
            if self._state != _PENDING:
                return self._state == _CANCELLED
            self._state = _CANCELLED
        self._done.release()
        return True

    @property
    def cancelled(self) -> bool:
        return self._state == _CANCELLED

    def finish(self, value: T | None = None, error: BaseException | None = None) -> None:
        self._value, self._error = value, error
        with self._lock:
            self._state = _DONE
        self._done.release()

    def wait(self) -> T:
        """The job's result (its exception is re-raised here)."""
        with self._done:  # returns once finished or cancelled; Ctrl-C interrupts it
            pass
        if self._state == _CANCELLED:
            raise RunCancelled()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


class Runner:
    def __init__(self, concurrency: int) -> None:
        self.concurrency = max(1, concurrency)
        self._slots: dict[Hashable, Slot[RunRecord]] = {}
        self._queue: queue.SimpleQueue[Slot[RunRecord] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    @property
    def submitted(self) -> int:
        """Runs submitted and not yet taken by :meth:`result`."""
        return len(self._slots)

    def submit_all(self, jobs: Sequence[tuple[Hashable, Job]]) -> None:
        """Queue ``jobs`` (key, job) in order; with concurrency 1 or a single
        job nothing is queued and :meth:`result` runs each inline."""
        if self.concurrency <= 1 or len(jobs) <= 1:
            return
        with self._lock:
            # threads first: they take the first runs while the rest are queued
            self._start_threads(min(self.concurrency, len(self._slots) + len(jobs)))
            for key, job in jobs:
                if key in self._slots:
                    continue
                slot: Slot[RunRecord] = Slot(job)
                self._slots[key] = slot
                self._queue.put(slot)

    def result(self, key: Hashable, job: Job) -> RunRecord:
        """The run of ``key``: waits for its submitted job, or runs ``job``
        here when it was not submitted or was cancelled."""
        with self._lock:
            slot = self._slots.pop(key, None)
        if slot is None or slot.cancelled:
            return job()
        try:
            return slot.wait()
        except RunCancelled:
            return job()

    def shutdown(self) -> None:
        """Cancel the runs that have not started and let the threads go."""
        with self._lock:
            slots, self._slots = list(self._slots.values()), {}
            threads, self._threads = self._threads, []
        for slot in slots:
            slot.cancel()
        for _ in threads:
            self._queue.put(None)

    def _start_threads(self, count: int) -> None:
        while len(self._threads) < count:
            thread = threading.Thread(
                target=self._work, name=f"promptab-run-{len(self._threads) + 1}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _work(self) -> None:
        while True:
            slot = self._queue.get()
            if slot is None:
                return
            if not slot.start():
                continue  # cancelled while queued
            try:
                value = slot.job()
            except BaseException as exc:  # handed to the item that waits for it
                slot.finish(error=exc)
            else:
                slot.finish(value)
