"""Runs as MLflow 3 traces: which runs (:func:`select_runs`, pure) and the
client calls that log them (:func:`log_traces`, in the logging process).

A trace per selected run: a root span with the case inputs and the outputs,
a ``CHAT_MODEL`` span per node with its rendered messages, its output, its
latency and token usage (``mlflow.chat.tokenUsage``), and one feedback
assessment per check, named after the check. Each trace is made under its
variant's run (``run_id=``), so its ``mlflow.sourceRun`` metadata links it
to that run and the run's Traces tab lists it.

Traces are capped per session (``--promptab-mlflow-traces``). The same
(case, run) pairs are taken for every variant of an A/B test, so the
side-by-side views compare like with like; pairs where some variant's run
failed come first.

Speed: MLflow exports each span as it ends (``log_spans`` per span, for live
viewing); a promptab trace is complete when it is made, so that incremental
export is turned off for the block and every trace is written once, at its
end, with its assessments in the same write (about 3x faster on sqlite).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from ..analysis.summary import ABTestSummary, SessionSummary
from ..run.records import TRACE_KEY, RunRecord

__all__ = ["log_traces", "select_runs"]

SOURCE_ID = "promptab"


def select_runs(summary: SessionSummary, cap: int) -> list[tuple[ABTestSummary, list[RunRecord]]]:
    """At most ``cap`` runs in all: per A/B test an equal share, as whole
    (case, run) pairs across its variants, pairs with a most failed runs first."""
    if cap <= 0 or not summary.abtests:
        return []
    share = cap // len(summary.abtests)
    out: list[tuple[ABTestSummary, list[RunRecord]]] = []
    for ab in summary.abtests:
        names = [v.name for v in ab.variants]
        per_pair = max(1, len(names))
        by_pair: dict[tuple[str, int], dict[str, RunRecord]] = {}
        for record in ab.runs:
            by_pair.setdefault((record.case, record.run), {})[record.variant] = record
        order = {pair: index for index, pair in enumerate(by_pair)}
        failures = {p: sum(r.status != "passed" for r in rs.values()) for p, rs in by_pair.items()}
        pairs = sorted(by_pair, key=lambda p: (-failures[p], p[1], order[p]))
        chosen = pairs[: share // per_pair]
        records = [by_pair[p][name] for name in names for p in chosen if name in by_pair[p]]
        if records:
            out.append((ab, records))
    return out


def log_traces(client: Any, summary: SessionSummary, outcome: Any, cap: int, tracking_uri: str) -> int:
    """Log the selected runs as traces under their variant runs; returns how
    many were logged. ``outcome``: the :class:`~.log.LogOutcome` so far."""
    selected = select_runs(summary, cap)
    if not selected:
        return 0
    import mlflow

    from .log import _env

    mlflow.set_tracking_uri(tracking_uri)  # where the span exporter writes
    logged = 0
    # synchronous export: with MLflow's async queue (its default), a trace
    # could still be queued when the logging process exits, and be lost
    with _env({"MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": "false"}), _whole_traces():
        for ab, records in selected:
            exp_id = outcome.experiment_ids[ab.nodeid]
            runs = outcome.variant_run_ids[ab.nodeid]
            for record in records:
                _log_trace(client, exp_id, runs.get(record.variant), ab, record)
                logged += 1
    return logged


def _log_trace(client: Any, exp_id: str, run_id: str | None, ab: ABTestSummary, record: RunRecord) -> None:
    """One trace. Records hold durations, not clock times (see
    :data:`~pytest_promptab.run.records.TRACE_KEY`): the trace ends now, its
    nodes one after the other with their measured latencies."""
    from mlflow.entities import (
        AssessmentError,
        AssessmentSource,
        Feedback,
        SpanStatusCode,
        SpanType,
    )

    nodes = [n for n in record.extra.get(TRACE_KEY, []) if isinstance(n, dict)]
    latencies = [float(record.metrics.get(f"node.{n.get('node')}.latency_ms", 0.0)) for n in nodes]
    total_ms = max(float(record.metrics.get("latency_ms", 0.0)), sum(latencies))
    start_ns = time.time_ns() - int(total_ms * 1e6)
    inputs = {"case": record.case, "run": record.run, "variant": record.variant}
    root = client.start_trace(
        f"{ab.name}/{record.variant}[{record.case}-run{record.run}]",
        span_type=SpanType.CHAIN,
        inputs=inputs,
        attributes={"promptab.file": ab.file, "promptab.status": record.status},
        tags={"promptab.ab_test": ab.name, "promptab.variant": record.variant, "promptab.case": record.case,
              "promptab.run": str(record.run), "promptab.status": record.status},  # fmt: skip
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
        usage = {k: n.get(k) for k in ("tokens_in", "tokens_out")}
        if usage["tokens_in"] is not None or usage["tokens_out"] is not None:
            tin, tout = int(usage["tokens_in"] or 0), int(usage["tokens_out"] or 0)
            span.set_attribute("mlflow.chat.tokenUsage", {"input_tokens": tin, "output_tokens": tout,
                                                          "total_tokens": tin + tout})  # fmt: skip
        span.set_attribute("latency_ms", latency)
        failed = record.status == "error" and record.error_node == n["node"]
        client.end_span(trace_id, span.span_id, outputs=n.get("output"), end_time_ns=n_end,
                        status=SpanStatusCode.ERROR if failed else SpanStatusCode.OK)  # fmt: skip
        n_start = n_end
    source = AssessmentSource(source_type="CODE", source_id=SOURCE_ID)
    feedbacks = [
        Feedback(
            name=c.name,
            value=bool(c.passed) if c.score in (0, 1) else float(c.score),
            rationale=_rationale(c),
            source=source,
            trace_id=trace_id,
            metadata={"check_type": c.type, "passed": str(bool(c.passed)).lower()},
        )
        for c in record.checks
    ]
    if record.status == "error":
        feedbacks.append(
            Feedback(name="run", value=None, source=source, trace_id=trace_id,
                     error=AssessmentError(error_code="RUN_FAILED", error_message=record.error or "failed"))  # fmt: skip
        )
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


def _rationale(check: Any) -> str:
    parts = [f"{'passed' if check.passed else 'failed'} ({check.type})"]
    if check.expected is not None:
        parts.append(f"expected {check.expected!r}")
    if check.actual is not None:
        parts.append(f"actual {str(check.actual)[:500]!r}")
    if check.detail:
        parts.append(str(check.detail)[:500])
    return "; ".join(parts)


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
