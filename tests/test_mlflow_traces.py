"""Runs as MLflow traces, read back through ``MlflowClient``: what a trace
holds (spans, token usage, assessments, its variant run), the same whether
it was written straight to the sqlite store or through the client's trace
API (what an MLflow server gets), and a sqlite session logged all or
nothing (one transaction)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_promptab.run.records import TRACE_KEY
from pytest_promptab.tracking import layout, onewrite, traces
from pytest_promptab.tracking.log import log_session
from tests.test_mlflow_log import (  # noqa: F401
    NODEID,
    empty_db,
    make_summary,
    mlflow_mod,
    results_file,
    sqlite_uri,
)

pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")


def traced_summary() -> Any:
    """3 variants x 2 cases x 2 runs; every run traced through one node,
    one run of each variant an error in that node."""
    summary = make_summary(runs=2)
    for record in summary.abtests[0].runs:
        record.extra[TRACE_KEY] = [
            {"node": "classify", "messages": [{"role": "user", "content": f"Classify {record.case}"}],
             "output": record.outputs["category"], "tokens_in": 11, "tokens_out": 2}
        ]  # fmt: skip
        record.metrics["node.classify.latency_ms"] = 40.0
        if record.case == "crash" and record.run == 2:
            record.status, record.error, record.error_node = "error", "provider timed out", "classify"
    return summary


def read_traces(uri: str, mlflow_mod: Any, outcome: Any) -> list[Any]:
    client = mlflow_mod.MlflowClient(uri)
    found = client.search_traces(locations=[outcome.experiment_ids[NODEID]], max_results=100)
    return [client.get_trace(t.info.trace_id) for t in found]


@pytest.mark.parametrize("path", ["store", "client API"])
def test_a_trace_holds_the_run(path: str, sqlite_uri: str, tmp_path: Path, mlflow_mod: Any,  # noqa: F811
                               monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    if path == "client API":  # as with an MLflow server
        monkeypatch.setattr(traces, "_build_all", lambda *args: None)
    summary = traced_summary()
    outcome = log_session(
        summary, tracking_uri=sqlite_uri, rootdir=tmp_path, results_path=results_file(tmp_path, summary), traces=50
    )
    assert outcome.ok, outcome.message
    assert outcome.traces == 12
    found = read_traces(sqlite_uri, mlflow_mod, outcome)
    assert len(found) == 12
    runs = outcome.variant_run_ids[NODEID]
    for trace in found:
        info, tags = trace.info, trace.info.tags
        variant, case, run = tags["promptab.variant"], tags["promptab.case"], int(tags["promptab.run"])
        assert info.trace_metadata["mlflow.sourceRun"] == runs[variant]
        assert tags["mlflow.traceName"] == f"reply-tone/{variant}[{case}-run{run}]"
        error = case == "crash" and run == 2
        assert tags["promptab.status"] in (("error",) if error else ("passed", "check_failed"))
        assert info.state.value == ("ERROR" if error else "OK")
        assert [a.name for a in info.assessments] == (["category", "run"] if error else ["category"])
        check = info.assessments[0]
        assert type(check.value) is bool
        if not error:
            assert check.value is (tags["promptab.status"] == "passed")
        assert check.metadata["score"] in ("0", "1")
        if error:
            assert info.assessments[1].error.error_message == "provider timed out"
        spans = {s.name: s for s in trace.data.spans}
        root, node = spans[f"reply-tone/{variant}[{case}-run{run}]"], spans["classify"]
        assert root.parent_id is None and node.parent_id == root.span_id
        assert root.span_type == "CHAIN" and node.span_type == "CHAT_MODEL"
        assert root.inputs == {"case": case, "run": run}
        assert node.inputs == {"messages": [{"role": "user", "content": f"Classify {case}"}]}
        assert node.get_attribute("mlflow.chat.tokenUsage") == {"input_tokens": 11, "output_tokens": 2, "total_tokens": 13}
        assert node.get_attribute("latency_ms") == 40.0
        assert node.status.status_code.value == ("ERROR" if error else "OK")
        assert (node.end_time_ns - node.start_time_ns) == 40_000_000
    # a run's Traces tab: its own traces
    client = mlflow_mod.MlflowClient(sqlite_uri)
    mine = client.search_traces(locations=[outcome.experiment_ids[NODEID]], run_id=runs["terse"])
    assert {t.info.tags["promptab.variant"] for t in mine} == {"terse"} and len(mine) == 4


def test_a_failure_while_logging_to_sqlite_leaves_nothing(
    sqlite_uri: str, tmp_path: Path, mlflow_mod: Any, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    """One transaction: the second variant's artifacts fail, and no run of
    the session is left (neither FINISHED nor half-logged)."""
    summary = traced_summary()
    real = layout.variant_files
    calls = []

    def failing(ab: Any, v: Any) -> dict[str, str]:
        calls.append(v.name)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(ab, v)

    monkeypatch.setattr(layout, "variant_files", failing)
    outcome = log_session(
        summary, tracking_uri=sqlite_uri, rootdir=tmp_path, results_path=results_file(tmp_path, summary), traces=50
    )
    assert not outcome.ok and "disk full" in outcome.message
    assert outcome.run_ids == {} and outcome.traces == 0
    client = mlflow_mod.MlflowClient(sqlite_uri)
    experiment = client.get_experiment_by_name("support-reply")
    assert client.search_runs([experiment.experiment_id]) == []
    # the store is usable at once, and the same session logs whole
    monkeypatch.setattr(layout, "variant_files", real)
    again = log_session(
        summary, tracking_uri=sqlite_uri, rootdir=tmp_path, results_path=results_file(tmp_path, summary), traces=50
    )
    assert again.ok, again.message
    assert len(client.search_runs([experiment.experiment_id])) == 4 and again.traces == 12


def test_one_transaction_only_for_sqlite() -> None:
    class Store:
        db_type = "postgresql"
        engine = object()

        def ManagedSessionMaker(self) -> None:  # noqa: N802 - MLflow's name
            raise AssertionError("not called")

    class Client:
        class _tracking_client:  # noqa: N801 - MLflow's name
            store = Store()

    assert onewrite.sql_store(Client()) is None
    assert onewrite.sql_store(object()) is None
    with onewrite.one_transaction(Client()) as single:
        assert single is False


def test_the_warm_up_rehearsal_leaves_nothing(sqlite_uri: str, tmp_path: Path, mlflow_mod: Any) -> None:  # noqa: F811
    """While the tests run, the logging process makes a session's kinds of
    writes once and rolls them back: the store is as it was, and usable."""
    from pytest_promptab.tracking.child import warm_up

    client = mlflow_mod.MlflowClient(sqlite_uri)
    before = [e.name for e in client.search_experiments()]
    warm_up(sqlite_uri, 50)
    assert [e.name for e in client.search_experiments()] == before
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []
    summary = traced_summary()
    outcome = log_session(
        summary, tracking_uri=sqlite_uri, rootdir=tmp_path, results_path=results_file(tmp_path, summary), traces=50
    )
    assert outcome.ok and outcome.traces == 12
    assert sorted(e.name for e in client.search_experiments()) == sorted([*before, "support-reply"])
