"""Unit tests of the run pool (runner.py) and of max_concurrency (providers/registry.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from pytest_promptab.providers.base import ProviderRequest, ProviderResponse
from pytest_promptab.providers.registry import (
    ConcurrencyLimitedProvider,
    ProviderRegistry,
)
from pytest_promptab.run.records import RunRecord
from pytest_promptab.run.runner import Runner
from pytest_promptab.workflow.schema import ProviderConfig


class Gauge:
    """Counts calls in flight and remembers the most seen at once."""

    def __init__(self) -> None:
        self.now = 0
        self.max = 0
        self.started: list[Any] = []
        self._lock = threading.Lock()

    def enter(self, name: Any) -> None:
        with self._lock:
            self.now += 1
            self.max = max(self.max, self.now)
            self.started.append(name)

    def leave(self) -> None:
        with self._lock:
            self.now -= 1


def record(name: Any) -> RunRecord:
    return RunRecord(file="f.yaml", ab_test="t", variant=str(name), case="c", run=1, status="passed")


def slow_job(gauge: Gauge, name: Any, seconds: float) -> Callable[[], RunRecord]:
    def job() -> RunRecord:
        gauge.enter(name)
        try:
            time.sleep(seconds)
        finally:
            gauge.leave()
        return record(name)

    return job


# -- the runner ----------------------------------------------------------------------


def test_results_come_back_in_order_while_running_concurrently() -> None:
    gauge = Gauge()
    runner = Runner(4)
    jobs = [(i, slow_job(gauge, f"r{i}", 0.05)) for i in range(12)]
    runner.submit_all(jobs)
    names = [runner.result(i, jobs[i][1]).variant for i in range(12)]
    runner.shutdown()
    assert names == [f"r{i}" for i in range(12)]
    assert gauge.max == 4  # never more than the concurrency, and it was reached
    assert sorted(gauge.started) == sorted(names)  # each job ran once: no result was re-run inline


def test_jobs_start_in_submission_order() -> None:
    gauge = Gauge()
    runner = Runner(2)
    jobs = [(i, slow_job(gauge, i, 0.01)) for i in range(10)]
    runner.submit_all(jobs)
    for key, job in jobs:
        runner.result(key, job)
    runner.shutdown()
    # two threads take the queue front to back: a job never starts before one two places earlier
    assert all(gauge.started.index(i) <= gauge.started.index(i + 2) for i in range(8))


def test_concurrency_one_and_single_jobs_run_inline_in_the_caller() -> None:
    seen: list[str] = []

    def job() -> RunRecord:
        seen.append(threading.current_thread().name)
        return record("x")

    for runner, count in ((Runner(1), 3), (Runner(8), 1)):
        runner.submit_all([(i, job) for i in range(count)])
        assert runner.submitted == 0
        for i in range(count):
            runner.result(i, job)
    assert seen == [threading.current_thread().name] * 4


def test_a_key_never_submitted_runs_inline() -> None:
    runner = Runner(4)
    runner.submit_all([(1, lambda: record("a")), (2, lambda: record("b"))])
    assert runner.result(3, lambda: record("inline")).variant == "inline"
    assert runner.result(1, lambda: record("wrong")).variant == "a"
    runner.shutdown()


def test_shutdown_cancels_queued_runs_and_does_not_wait_for_running_ones() -> None:
    gauge = Gauge()
    runner = Runner(2)
    release = threading.Event()

    def blocked() -> RunRecord:
        gauge.enter("blocked")
        release.wait(5)
        gauge.leave()
        return record("blocked")

    jobs = [(0, blocked), (1, blocked)] + [(i, slow_job(gauge, i, 0.01)) for i in range(2, 30)]
    runner.submit_all(jobs)
    deadline = time.monotonic() + 2
    while gauge.now < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    start = time.monotonic()
    runner.shutdown()
    assert time.monotonic() - start < 0.5  # the two blocked runs are not awaited
    release.set()
    time.sleep(0.1)
    assert gauge.started.count("blocked") == 2
    assert len(gauge.started) == 2  # none of the 28 queued runs started
    # after shutdown a result is computed inline
    assert runner.result(5, lambda: record("late")).variant == "late"


def test_a_job_exception_reaches_the_item_that_waits_for_it() -> None:
    def broken() -> RunRecord:
        raise ValueError("boom")

    runner = Runner(3)
    runner.submit_all([(1, broken), (2, lambda: record("ok"))])
    with pytest.raises(ValueError, match="boom"):
        runner.result(1, broken)
    assert runner.result(2, broken).variant == "ok"
    runner.shutdown()


def test_threads_are_daemons_so_ctrl_c_never_waits_for_calls_in_flight() -> None:
    runner = Runner(3)
    release = threading.Event()
    try:
        runner.submit_all([(i, lambda: (release.wait(5), record("x"))[1]) for i in range(3)])
        threads = [t for t in threading.enumerate() if t.name.startswith("promptab-run-")]
        assert len(threads) >= 3 and all(t.daemon for t in threads)
    finally:
        runner.shutdown()
        release.set()


# -- max_concurrency -----------------------------------------------------------------


class SlowProvider:
    instances: list[SlowProvider] = []

    def __init__(self, config: ProviderConfig, base_dir: Path, gauge: Gauge) -> None:
        self.config = config
        self.gauge = gauge
        self.closed = False
        SlowProvider.instances.append(self)

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        self.gauge.enter(request.run)
        try:
            time.sleep(0.03)
        finally:
            self.gauge.leave()
        return ProviderResponse(text=f"{self.config.model}:{request.run}", tokens_in=1)

    def close(self) -> None:
        self.closed = True


def make_request(run: int) -> ProviderRequest:
    return ProviderRequest(
        messages=[{"role": "user", "content": "hi"}], model=None, settings={}, node_id="n", case_id="c", run=run, seed=0
    )


def registry_with(gauge: Gauge) -> ProviderRegistry:
    registry = ProviderRegistry()
    registry.register("slow", lambda config, base_dir: SlowProvider(config, base_dir, gauge))
    return registry


def call_from_threads(calls: list[Callable[[], ProviderResponse]]) -> list[ProviderResponse]:
    results: list[ProviderResponse | None] = [None] * len(calls)

    def run(i: int) -> None:
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]


def test_max_concurrency_bounds_calls_in_flight_whatever_the_thread_count() -> None:
    gauge = Gauge()
    registry = registry_with(gauge)
    provider = registry.get(ProviderConfig(type="slow", model="m", max_concurrency=3), Path("."))
    assert isinstance(provider, ConcurrencyLimitedProvider)
    responses = call_from_threads([lambda i=i: provider.complete(make_request(i)) for i in range(16)])
    assert gauge.max == 3
    assert [r.text for r in responses] == [f"m:{i}" for i in range(16)]
    # the waits for a slot are reported apart from the call, so latency can leave them out
    assert max(r.queued_s for r in responses) >= 0.03
    assert min(r.queued_s for r in responses) < 0.03
    registry.close_all()
    assert SlowProvider.instances[-1].closed


def test_no_max_concurrency_means_no_wrapper_and_no_limit() -> None:
    gauge = Gauge()
    registry = registry_with(gauge)
    provider = registry.get(ProviderConfig(type="slow", model="m"), Path("."))
    assert isinstance(provider, SlowProvider)
    call_from_threads([lambda i=i: provider.complete(make_request(i)) for i in range(8)])
    assert gauge.max == 8
    assert provider.complete(make_request(1)).queued_s == 0.0


def test_configs_of_one_endpoint_share_the_limit_other_endpoints_do_not() -> None:
    gauge = Gauge()
    registry = registry_with(gauge)
    url = "http://localhost:11434/v1"
    small = registry.get(ProviderConfig(type="slow", model="small", base_url=url, max_concurrency=2), Path("."))
    large = registry.get(
        ProviderConfig(type="slow", model="large", settings={"temperature": 0}, base_url=url, max_concurrency=2),
        Path("."),
    )
    assert small is not large
    call_from_threads([lambda i=i, p=p: p.complete(make_request(i)) for i in range(6) for p in (small, large)])
    assert gauge.max == 2  # two models on one server: two calls in flight in all

    gauge2 = Gauge()
    registry2 = registry_with(gauge2)
    here = registry2.get(ProviderConfig(type="slow", model="m", base_url="http://a/v1", max_concurrency=2), Path("."))
    there = registry2.get(ProviderConfig(type="slow", model="m", base_url="http://b/v1", max_concurrency=2), Path("."))
    call_from_threads([lambda i=i, p=p: p.complete(make_request(i)) for i in range(6) for p in (here, there)])
    assert gauge2.max == 4


def test_the_limited_provider_keeps_cost_and_passes_errors_through() -> None:
    from pytest_promptab.errors import ProviderError

    class Failing:
        def complete(self, request: ProviderRequest) -> ProviderResponse:
            raise ProviderError("HTTP 401 Unauthorized", status=401)

        def close(self) -> None:
            pass

    semaphore = threading.Semaphore(1)
    limited = ConcurrencyLimitedProvider(Failing(), semaphore, 1)
    with pytest.raises(ProviderError) as info:
        limited.complete(make_request(1))
    assert info.value.status == 401
    assert semaphore.acquire(blocking=False)  # the slot was given back after the error
