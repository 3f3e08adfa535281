"""Runs as MLflow traces through the client's trace API, for stores that are
not SQL (an MLflow server): a trace per run, made under its variant's run,
spans one per node, the checks' feedback attached before the trace is
written. What a trace holds is built by :mod:`.traces`, which chooses this
path when the store cannot take whole traces."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from ..analysis.summary import ABTestSummary
from ..run.records import RunRecord
from .traces import (
    Selected,
    check_feedbacks,
    node_usage,
    run_timings,
    trace_inputs,
    trace_tags,
)

__all__ = ["log_with_client"]


def log_with_client(client: Any, selected: Selected, outcome: Any, tracking_uri: str) -> int:
    import mlflow

    from .connect import scoped_env

    logged = 0
    # synchronous export: with MLflow's async queue (its default), a trace
    # could still be queued when the logging process exits, and be lost
    with scoped_env({"MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": "false"}), _whole_traces(), _tracking_uri(mlflow, tracking_uri):
        for ab, records in selected:
            exp_id = outcome.experiment_ids[ab.nodeid]
            runs = outcome.variant_run_ids[ab.nodeid]
            for record in records:
                _log_trace(client, exp_id, runs.get(record.variant), ab, record)
                logged += 1
    return logged


@contextlib.contextmanager
def _tracking_uri(mlflow: Any, uri: str) -> Iterator[None]:
    """Where the span exporter writes, for the block only: logged in this
    process (no helper process), the user's tracking URI is left as it was."""
    try:
        from mlflow.tracking._tracking_service.utils import _use_tracking_uri
    except ImportError:  # an MLflow without it: set it, as the helper process does
        mlflow.set_tracking_uri(uri)
        yield
        return
    with _use_tracking_uri(uri):
        yield


def _log_trace(client: Any, exp_id: str, run_id: str | None, ab: ABTestSummary, record: RunRecord) -> None:
    """One trace. Records hold durations, not clock times (see
    :data:`~pytest_promptab.run.records.TRACE_KEY`): the trace ends now, its
    nodes one after the other with their measured latencies."""
    from mlflow.entities import SpanStatusCode, SpanType

    nodes, latencies, total_ms = run_timings(record)
    start_ns = time.time_ns() - int(total_ms * 1e6)
    inputs = trace_inputs(record)
    root = client.start_trace(
        f"{ab.name}/{record.variant}[{record.case}-run{record.run}]",
        span_type=SpanType.CHAIN,
        inputs=inputs,
        attributes={"promptab.file": ab.file, "promptab.status": record.status},
        tags=trace_tags(ab, record),
        experiment_id=exp_id,
        start_time_ns=start_ns,
        run_id=run_id,
    )
    trace_id = root.trace_id
    n_start = start_ns
    for n, latency in zip(nodes, latencies):
        n_end = n_start + int(latency * 1e6)
        span = client.start_span(
            str(n["node"]),
            trace_id=trace_id,
            parent_id=root.span_id,
            span_type=SpanType.CHAT_MODEL,
            inputs={"messages": n.get("messages", [])},
            start_time_ns=n_start,
        )
        usage = node_usage(n)
        if usage is not None:
            span.set_attribute("mlflow.chat.tokenUsage", usage)
        span.set_attribute("latency_ms", latency)
        failed = record.status == "error" and record.error_node == n["node"]
        client.end_span(trace_id, span.span_id, outputs=n.get("output"), end_time_ns=n_end,
                        status=SpanStatusCode.ERROR if failed else SpanStatusCode.OK)  # fmt: skip
        n_start = n_end
    feedbacks = check_feedbacks(trace_id, record)
    _attach(trace_id, feedbacks)
    end_ns = start_ns + int(total_ms * 1e6)
    client.end_trace(
        trace_id,
        outputs=record.outputs or None,
        attributes={"latency_ms": total_ms},
        status="ERROR" if record.status == "error" else "OK",
        end_time_ns=end_ns,
    )


def _attach(trace_id: str, feedbacks: list[Any]) -> None:
    """Put the assessments in the trace before it is written (one write);
    if MLflow's trace manager is not there, log them one by one after."""
    try:
        from mlflow.tracing.trace_manager import InMemoryTraceManager

        with InMemoryTraceManager.get_instance().get_trace(trace_id) as trace:
            trace.info.assessments.extend(feedbacks)
    except Exception:  # noqa: BLE001
        import mlflow

        for f in feedbacks:
            mlflow.log_assessment(trace_id=trace_id, assessment=f)


@contextlib.contextmanager
def _whole_traces() -> Iterator[None]:
    """Turn off MLflow's span-by-span export for the block (see the module doc)."""
    try:
        from mlflow.tracing.export.mlflow_v3 import MlflowV3SpanExporter
    except ImportError:
        yield
        return
    original = getattr(MlflowV3SpanExporter, "_export_spans_incrementally", None)
    if original is None:
        yield
        return
    MlflowV3SpanExporter._export_spans_incrementally = lambda self, spans: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        MlflowV3SpanExporter._export_spans_incrementally = original  # type: ignore[method-assign]
