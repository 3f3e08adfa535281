"""Talking to MLflow at all: where the tracking store is, the client class
(imported on first use), the environment and logging while MLflow is called,
and a failure said in one line without secrets. Shared by the session's
logging (:mod:`.log`), the helper process (:mod:`.child`) and the reading of
``mlflow:`` references (:mod:`.reference`)."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import PromptabError
from ..textsafe import hide_userinfo

__all__ = [
    "HTTP_LIMITS",
    "MlflowLogError",
    "mlflow_client_class",
    "describe_error",
    "http_defaults",
    "is_transport_error",
    "quiet",
    "redact_uri",
    "resolve_tracking_uri",
    "scoped_env",
]

HTTP_LIMITS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.2",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
}
"""Set while talking to MLflow, unless the user set them: a dead server fails
in seconds (MLflow's defaults, 7 retries with backoff and 120 s, take minutes)."""

QUIET_LOGGERS = ("mlflow", "alembic", "urllib3", "sqlalchemy")


class MlflowLogError(PromptabError):
    """MLflow refused or failed; the message says why and what to do."""


def resolve_tracking_uri(option: str | None, ini: str | None, env: Mapping[str, str], rootdir: Path) -> str:
    """The option, else the ini value, else ``MLFLOW_TRACKING_URI``, else
    ``sqlite:///<rootdir>/mlflow.db`` (absolute: what ``mlflow ui`` at the root shows)."""
    for candidate in (option, ini, env.get("MLFLOW_TRACKING_URI")):
        if candidate and candidate.strip():
            return candidate.strip()
    return "sqlite:///" + (Path(rootdir).resolve() / "mlflow.db").as_posix()


def redact_uri(uri: str) -> str:
    """``uri`` without user info: ``https://user:token@host`` -> ``https://***@host``."""
    return hide_userinfo(uri)


def describe_error(exc: BaseException, tracking_uri: str) -> str:
    """One line naming the cause of an MLflow failure, without secrets."""
    if isinstance(exc, PromptabError):
        return exc.message
    where = f"MLflow at {redact_uri(tracking_uri)}"
    text = _chain_text(exc)
    low = text.lower()
    status = re.search(r"too many (\d{3}) error responses|(?:status|error) code (\d{3})|HTTP (\d{3})", text)
    if status:
        code = next(g for g in status.groups() if g)
        if code in ("401", "403"):
            return (
                f"{where} answered HTTP {code} (not authorized): set MLFLOW_TRACKING_TOKEN, or "
                "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
            )
        kind = "server error; check the server's log" if code.startswith("5") else "request refused"
        return f"{where} answered HTTP {code} ({kind})"
    if any(s in low for s in ("connection refused", "failed to establish a new connection", "name or service")):
        return f"{where} is not reachable (connection refused: is the server running?)"
    if "timed out" in low or "timeout" in low:
        timeout = os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", HTTP_LIMITS["MLFLOW_HTTP_REQUEST_TIMEOUT"])
        return f"{where} did not answer within {timeout} s (server down or overloaded)"
    if any(s in low for s in ("remotedisconnected", "connection aborted", "connection reset")):
        return f"{where} dropped the connection (did the server stop?)"
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return redact_uri(f"{where}: {type(exc).__name__}: {first}")[:400]


def mlflow_client_class() -> Any:
    """``MlflowClient``, imported on first use (mlflow takes seconds to import)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise MlflowLogError(
            f"mlflow cannot be imported ({exc}); pip install mlflow, or run with --promptab-no-mlflow"
        ) from exc
    return MlflowClient


def http_defaults() -> dict[str, str | None]:
    """The :data:`HTTP_LIMITS` the user did not set (for :func:`scoped_env`)."""
    return {name: value for name, value in HTTP_LIMITS.items() if name not in os.environ}


@contextlib.contextmanager
def scoped_env(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set (None: unset) environment variables for the block; restore them after."""
    saved = {name: os.environ.get(name) for name in values}

    def apply(pairs: Mapping[str, str | None]) -> None:
        for name, value in pairs.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    apply(values)
    try:
        yield
    finally:
        apply(saved)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Keep MLflow's chatter (table creation, retries, warnings) out of the
    pytest output: the outcome's message says what matters."""
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _chain_text(exc: BaseException) -> str:
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(parts) < 10:
        parts.append(f"{type(current).__name__}: {current}")
        current = current.__cause__ or current.__context__
    return " | ".join(parts)


def is_transport_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is the network's fault, not MLflow's answer."""
    low = _chain_text(exc).lower()
    return any(s in low for s in ("connection", "timed out", "timeout", "max retries", "error responses"))
