"""The retry policy of network providers, as pure logic.

Which outcomes are worth another attempt, how long to wait before it
(exponential backoff with full jitter, or the server's ``Retry-After``), and
when to give up (``provider.retry.max_attempts`` and ``max_total_s``). The
clock, the sleep and the random source are parameters, so the policy is
tested without waiting and without a network.

A provider wraps one attempt in a function of the seconds left of
``max_total_s`` (the attempt must not take longer) that returns the response, raises
:class:`TransientFailure` for what may succeed later (429, 5xx, timeouts,
dropped connections, a garbled 200), or raises
:class:`~pytest_promptab.errors.ProviderError` for what never will (400, 401,
403, 404, exhausted quota); :func:`run_with_retries` does the rest.
"""

from __future__ import annotations

import email.utils
import random
import time
from typing import Callable, Mapping, TypeVar

from ..errors import ProviderError
from ..workflow.schema import RetryConfig

T = TypeVar("T")

RETRYABLE_STATUSES = frozenset({408, 429})
"""Retried on top of every 5xx: request timeout and rate limiting."""

QUOTA_EXHAUSTED_CODES = frozenset({"insufficient_quota"})
"""Error codes of a 429 that no wait will cure (OpenAI: out of credit)."""


class TransientFailure(Exception):
    """One attempt failed in a way another attempt may not.

    ``cause`` is the user-facing description (already free of secrets);
    ``retry_after`` is the wait in seconds the server asked for, if any.
    """

    def __init__(self, cause: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(cause)
        self.cause = cause
        self.status = status
        self.retry_after = retry_after


def is_retryable_status(status: int, error_code: str | None = None) -> bool:
    """True for 408, 429 and every 5xx, except a 429 saying the quota is
    exhausted (``insufficient_quota``): waiting does not bring credit back."""
    if status == 429 and error_code in QUOTA_EXHAUSTED_CODES:
        return False
    return status in RETRYABLE_STATUSES or 500 <= status <= 599


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """The wait in seconds a response asks for, or None.

    Reads ``retry-after-ms`` (sent by OpenAI) and then ``Retry-After``, as
    seconds or as an HTTP date (a date in the past means 0). Unparseable or
    negative values are ignored. ``headers`` lookups must be case-insensitive
    (as httpx's are) or use lower-case names.
    """
    millis = _get(headers, "retry-after-ms")
    if millis is not None:
        try:
            value = float(millis)
        except ValueError:
            value = -1.0
        if value >= 0 and value == value:  # not NaN
            return value / 1000.0
    raw = _get(headers, "retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        current = time.time() if now is None else now
        return max(0.0, when.timestamp() - current)
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        return None
    return seconds


def _get(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = headers.get(name.title())
    return value


def backoff_delay(attempt: int, config: RetryConfig, rand: Callable[[], float] = random.random) -> float:
    """The wait after failed attempt number ``attempt`` (from 1): full jitter,
    uniform in [0, min(backoff_max_s, backoff_initial_s * 2**(attempt-1))]."""
    ceiling = min(config.backoff_max_s, config.backoff_initial_s * (2.0 ** min(attempt - 1, 60)))
    return rand() * ceiling


def run_with_retries(
    attempt_fn: Callable[[float], T],
    config: RetryConfig,
    *,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rand: Callable[[], float] = random.random,
) -> T:
    """Call ``attempt_fn(time_left)`` until it returns, raises a permanent
    error, or the budget is spent; then raise a :class:`ProviderError` that
    says how many attempts over how long and what the last failure was.

    ``max_total_s`` bounds the whole, attempts included: each attempt is
    given the seconds left of it (``time_left``, which the provider uses to
    cut its own per-attempt timeout), and when the next wait, a backoff or the
    server's ``Retry-After``, would use up what is left, promptab gives up at
    once rather than wait for an attempt that has no time to succeed.
    ``what`` names the provider in the error (e.g. ``openai provider (model
    'gpt-4o-mini')``).
    """
    start = clock()
    attempts = 0
    last: TransientFailure | None = None
    reason = ""
    time_left = config.max_total_s
    while True:
        attempts += 1
        try:
            return attempt_fn(time_left)
        except TransientFailure as failure:
            last = failure
        elapsed = clock() - start
        if attempts >= config.max_attempts:
            reason = f"provider.retry.max_attempts is {config.max_attempts}"
            break
        remaining = config.max_total_s - elapsed
        if remaining <= 0:
            reason = f"provider.retry.max_total_s ({_secs(config.max_total_s)}) is spent"
            break
        if last.retry_after is not None:
            if last.retry_after >= remaining:
                reason = (
                    f"the server asked to retry after {_secs(last.retry_after)} (Retry-After), "
                    f"more than the {_secs(remaining)} left of provider.retry.max_total_s"
                )
                break
            delay = last.retry_after
        else:
            delay = backoff_delay(attempts, config, rand)
            if delay >= remaining:
                reason = (
                    f"the next wait ({_secs(delay)}) would use up the {_secs(remaining)} left of "
                    f"provider.retry.max_total_s ({_secs(config.max_total_s)})"
                )
                break
        if delay > 0:
            sleep(delay)
        time_left = config.max_total_s - (clock() - start)
        if time_left <= 0:
            reason = f"provider.retry.max_total_s ({_secs(config.max_total_s)}) is spent"
            break
    elapsed = clock() - start
    plural = "attempt" if attempts == 1 else "attempts"
    raise ProviderError(
        f"{what}: gave up after {attempts} {plural} over {_secs(elapsed)}; last error: {last.cause}",
        status=last.status,
        hint=f"{reason}; raise provider.retry.max_attempts / max_total_s if the server needs more patience",
    )


def _secs(value: float) -> str:
    return f"{value:.1f} s" if value >= 0.1 or value == 0 else f"{value * 1000:.0f} ms"
