"""Runs sent to the :class:`~pytest_promptab.run.runner.Runner` ahead of
the items that report them, a window at a time.

A session of 20,000 runs does not queue 20,000 of them before its first
item: the runs of the selected items (in report order) are sent a window
ahead of the item being reported, topped up by half windows as items take
their results, so that the runner gets batches.
"""

from __future__ import annotations

import functools
from typing import Callable, Generic, Hashable, Protocol, Sequence, TypeVar

from .records import RunRecord
from .runner import Runner

PREFETCH_WINDOW = 256
PREFETCH_PER_CALL = 32
"""Runs queued ahead of the item being reported: the larger of
``PREFETCH_WINDOW`` and ``PREFETCH_PER_CALL`` per call in flight."""


class Keyed(Protocol):
    @property
    def key(self) -> Hashable: ...


J = TypeVar("J", bound=Keyed)


class Prefetcher(Generic[J]):
    """The window of runs ahead of the items (one per session)."""

    def __init__(self, runner: Callable[[], Runner], execute: Callable[[J], RunRecord], concurrency: int) -> None:
        self._runner = runner
        self._execute = execute
        self._window = max(PREFETCH_WINDOW, PREFETCH_PER_CALL * concurrency)
        self._ahead: list[J] = []
        """The runs to prefetch, in report order."""
        self._ahead_at: dict[int, int] = {}
        """``id(job)`` -> its position in ``_ahead``, until its item takes it."""
        self._sent = 0
        """How many of ``_ahead`` went to the runner."""

    def start(self, jobs: Sequence[J]) -> None:
        """Prefetch the runs of ``jobs``: the first window now."""
        self._ahead = list(jobs)
        self._ahead_at = {id(job): position for position, job in enumerate(self._ahead)}
        self._sent = 0
        self._queue_ahead(0)

    def result(self, job: J) -> RunRecord:
        """The job's record: prefetched by the runner, or run now."""
        position = self._ahead_at.pop(id(job), None)
        if position is not None and self._ahead[position] is job:
            self._queue_ahead(position + 1)
        return self._runner().result(job.key, lambda: self._execute(job))

    def _queue_ahead(self, taken: int) -> None:
        """Keep the runs after the first ``taken`` queued, a window ahead."""
        if self._sent >= len(self._ahead) or self._sent - taken > self._window // 2:
            return
        end = min(len(self._ahead), taken + self._window)
        batch = self._ahead[self._sent : end]
        self._sent = end
        runner = self._runner()
        if runner.concurrency > 1:  # else every run is run inline, by its item
            runner.submit_all([(job.key, functools.partial(self._execute, job)) for job in batch])
