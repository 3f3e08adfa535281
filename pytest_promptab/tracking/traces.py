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

Speed (sqlite stores, :func:`_build_all`): each trace is built whole in
memory, as MLflow's exporter would have it, and written with the store's two
calls for a finished trace: ``start_trace`` (its info, tags, metadata and
assessments: one insert) and ``log_spans`` (every span of every trace in one
call), without MLflow's tracer, span processors and exporter, or a
``traces.json`` artifact per trace; :mod:`.onewrite` puts it all, with the
runs, in one sqlite transaction. Elsewhere (an MLflow server) the client's
trace API is used (:mod:`.traces_client`): MLflow exports each span as it
ends (for live viewing); a promptab trace is complete when it is made, so that
incremental export is turned off for the block and every trace is written
once, at its end, with its assessments in the same write.
"""

from __future__ import annotations

import base64
import contextlib
import json
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

from ..analysis.summary import ABTestSummary, SessionSummary
from ..run.records import TRACE_KEY, RunRecord

__all__ = ["log_traces", "select_runs"]

SOURCE_ID = "promptab"
_PREVIEW = 1000
"""Characters of a trace's request and response previews (MLflow's limit)."""

_SOURCE_KEYS = ("mlflow.user", "mlflow.source.type", "mlflow.source.git.commit", "mlflow.source.git.branch")

Selected = list[tuple[ABTestSummary, list[RunRecord]]]


def select_runs(summary: SessionSummary, cap: int) -> Selected:
    """At most ``cap`` runs in all: per A/B test an equal share, as whole
    (case, run) pairs across its variants, pairs with a most failed runs first."""
    if cap <= 0 or not summary.abtests:
        return []
    share = cap // len(summary.abtests)
    out: Selected = []
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


def log_traces(
    client: Any, summary: SessionSummary, outcome: Any, cap: int, tracking_uri: str, source: dict[str, str] | None = None
) -> int:
    """Log the selected runs as traces under their variant runs; returns how
    many were logged. ``outcome``: the :class:`~.log.LogOutcome` so far;
    ``source``: the session's tags, whose git, user and source type each trace
    gets as metadata (as MLflow gives a trace those of the process)."""
    selected = select_runs(summary, cap)
    if not selected:
        return 0
    from .onewrite import sql_store

    store = sql_store(client)
    built = None
    if store is not None and callable(getattr(store, "log_spans", None)):
        built = _build_all(selected, outcome, source or {})
    if built is None:
        from .traces_client import log_with_client

        return log_with_client(client, selected, outcome, tracking_uri)
    infos, spans = built
    with _experiments_read_once(store):
        for info in infos:
            store.start_trace(info)
        for exp_id, exp_spans in spans.items():
            store.log_spans(exp_id, exp_spans)
    return len(infos)


@contextlib.contextmanager
def _experiments_read_once(store: Any) -> Iterator[None]:
    """For the block, the store reads each experiment once: ``start_trace``
    reads the trace's experiment (a query with its tags) every time, a third
    of its cost; the experiments do not change while the traces are written."""
    cache: dict[str, Any] = {}
    original = store.get_experiment

    def get_experiment(experiment_id: Any) -> Any:
        key = str(experiment_id)
        if key not in cache:
            cache[key] = original(experiment_id)
        return cache[key]

    own = "get_experiment" in vars(store)
    store.get_experiment = get_experiment
    try:
        yield
    finally:
        if own:
            store.get_experiment = original
        else:
            del store.get_experiment


def _build_all(selected: Selected, outcome: Any, source: dict[str, str]) -> tuple[list[Any], dict[str, list[Any]]] | None:
    """Every selected run as a finished trace for the SQL store: the
    ``TraceInfo`` of each (for ``start_trace``) and the spans per experiment
    (for one ``log_spans``); None when this MLflow's entities do not take them
    (the client's path then)."""
    try:
        from mlflow.entities import Span

        infos: list[Any] = []
        spans: dict[str, list[Any]] = {}
        end_ns = time.time_ns()
        for ab, records in selected:
            exp_id = outcome.experiment_ids[ab.nodeid]
            runs = outcome.variant_run_ids[ab.nodeid]
            for record in records:
                info, span_dicts = _trace_parts(exp_id, runs.get(record.variant), ab, record, end_ns, source)
                infos.append(info)
                spans.setdefault(exp_id, []).extend(Span.from_dict(d) for d in span_dicts)
        return infos, spans
    except Exception:  # noqa: BLE001
        return None


def _trace_parts(
    exp_id: str, run_id: str | None, ab: ABTestSummary, record: RunRecord, end_ns: int, source: dict[str, str]
) -> tuple[Any, list[dict[str, Any]]]:
    """One run's trace as MLflow's exporter writes it: its ``TraceInfo``
    (tags, metadata, assessments) and its spans in ``Span.to_dict`` form (the
    same content as :func:`_log_trace` makes through the client)."""
    from mlflow.entities import TraceInfo, TraceLocation, TraceState

    nodes, latencies, total_ms = run_timings(record)
    start_ns = end_ns - int(total_ms * 1e6)
    trace_hex = uuid.uuid4().hex
    trace_id = f"tr-{trace_hex}"
    otel_trace = _b64(int(trace_hex, 16), 16)
    root_id = _b64(random.getrandbits(64) or 1, 8)
    failed_run = record.status == "error"
    inputs = trace_inputs(record)
    outputs = record.outputs or None

    def span(name: str, span_id: str, parent: str | None, kind: str, start: int, end: int,
             attributes: dict[str, Any], error: bool) -> dict[str, Any]:  # fmt: skip
        attrs = {"mlflow.traceRequestId": trace_id, "mlflow.spanType": kind, **attributes}
        return {
            "trace_id": otel_trace,
            "span_id": span_id,
            "parent_span_id": parent,
            "name": name,
            "start_time_unix_nano": start,
            "end_time_unix_nano": end,
            "events": [],
            "status": {"code": "STATUS_CODE_ERROR" if error else "STATUS_CODE_OK", "message": ""},
            "attributes": {k: _dumps(v) for k, v in attrs.items()},
            "links": [],
        }

    name = f"{ab.name}/{record.variant}[{record.case}-run{record.run}]"
    root_attributes = {
        "mlflow.experimentId": exp_id,
        "mlflow.spanInputs": inputs,
        "mlflow.spanOutputs": outputs,
        "promptab.file": ab.file,
        "promptab.status": record.status,
        "latency_ms": total_ms,
    }
    dicts = [span(name, root_id, None, "CHAIN", start_ns, end_ns, root_attributes, failed_run)]
    n_start = start_ns
    usage_total = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    any_usage = False
    for n, latency in zip(nodes, latencies):
        n_end = n_start + int(latency * 1e6)
        attributes: dict[str, Any] = {"mlflow.spanInputs": {"messages": n.get("messages", [])},
                                      "mlflow.spanOutputs": n.get("output"), "latency_ms": latency}  # fmt: skip
        usage = node_usage(n)
        if usage is not None:
            attributes["mlflow.chat.tokenUsage"] = usage
            any_usage = True
            for key in usage_total:
                usage_total[key] += usage[key]
        failed = failed_run and record.error_node == n["node"]
        dicts.append(span(str(n["node"]), _b64(random.getrandbits(64) or 1, 8), root_id, "CHAT_MODEL",
                          n_start, n_end, attributes, failed))  # fmt: skip
        n_start = n_end
    request = _dumps(inputs)[:_PREVIEW]
    response = _dumps(outputs)[:_PREVIEW] if outputs is not None else None
    metadata = {k: v for k, v in source.items() if k in _SOURCE_KEYS}
    metadata.update({"mlflow.trace_schema.version": "3", "mlflow.source.name": ab.file, "mlflow.traceInputs": request})
    if response is not None:
        metadata["mlflow.traceOutputs"] = response
    if run_id:
        metadata["mlflow.sourceRun"] = run_id
    if any_usage:
        metadata["mlflow.trace.tokenUsage"] = json.dumps(usage_total)
    info = TraceInfo(
        trace_id=trace_id,
        trace_location=TraceLocation.from_experiment_id(exp_id),
        request_time=start_ns // 1_000_000,
        execution_duration=(end_ns - start_ns) // 1_000_000,
        state=TraceState.ERROR if failed_run else TraceState.OK,
        request_preview=request,
        response_preview=response,
        trace_metadata=metadata,
        tags={"mlflow.traceName": name, **trace_tags(ab, record)},
        assessments=check_feedbacks(trace_id, record),
    )
    return info, dicts


def run_timings(record: RunRecord) -> tuple[list[dict[str, Any]], list[float], float]:
    """The record's traced nodes, their latencies (ms) and the run's (ms)."""
    nodes = [n for n in record.extra.get(TRACE_KEY, []) if isinstance(n, dict)]
    latencies = [float(record.metrics.get(f"node.{n.get('node')}.latency_ms", 0.0)) for n in nodes]
    return nodes, latencies, max(float(record.metrics.get("latency_ms", 0.0)), sum(latencies))


def node_usage(node: dict[str, Any]) -> dict[str, int] | None:
    """``mlflow.chat.tokenUsage`` of a node, when it reported any."""
    tin, tout = node.get("tokens_in"), node.get("tokens_out")
    if tin is None and tout is None:
        return None
    tin, tout = int(tin or 0), int(tout or 0)
    return {"input_tokens": tin, "output_tokens": tout, "total_tokens": tin + tout}


def trace_inputs(record: RunRecord) -> dict[str, Any]:
    """The root span's inputs: the case and the run, not the variant (it is in
    the tags and the name), so that MLflow's compare views find the same
    inputs in every variant's run and put their traces side by side."""
    return {"case": record.case, "run": record.run}


def trace_tags(ab: ABTestSummary, record: RunRecord) -> dict[str, str]:
    """The trace's tags: which A/B test, variant, case, run and outcome."""
    return {"promptab.ab_test": ab.name, "promptab.variant": record.variant, "promptab.case": record.case,
            "promptab.run": str(record.run), "promptab.status": record.status}  # fmt: skip


def check_feedbacks(trace_id: str, record: RunRecord) -> list[Any]:
    """One feedback per check, named after it; and ``run`` (an error) for a failed run."""
    from mlflow.entities import AssessmentError, AssessmentSource, Feedback

    source = AssessmentSource(source_type="CODE", source_id=SOURCE_ID)
    feedbacks = [
        Feedback(
            name=c.name,
            value=bool(c.passed),  # one type per check in every trace: the views count pass rates
            rationale=_rationale(c),
            source=source,
            trace_id=trace_id,
            metadata={"check_type": c.type, "passed": str(bool(c.passed)).lower(), "score": f"{c.score:g}"},
        )
        for c in record.checks
    ]
    if record.status == "error":
        error = AssessmentError(error_code="RUN_FAILED", error_message=record.error or "failed")
        feedbacks.append(Feedback(name="run", value=None, source=source, trace_id=trace_id, error=error))
    return feedbacks


def _dumps(value: Any) -> str:
    """A span attribute as MLflow stores it: JSON text."""
    return json.dumps(value, default=str, ensure_ascii=False)


def _b64(number: int, size: int) -> str:
    return base64.b64encode(number.to_bytes(size, "big")).decode()


def _rationale(check: Any) -> str:
    parts = [f"{'passed' if check.passed else 'failed'} ({check.type})"]
    if check.expected is not None:
        parts.append(f"expected {check.expected!r}")
    if check.actual is not None:
        parts.append(f"actual {str(check.actual)[:500]!r}")
    if check.detail:
        parts.append(str(check.detail)[:500])
    return "; ".join(parts)
