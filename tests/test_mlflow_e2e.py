"""MLflow through pytest: what a session leaves in MLflow, read back with
MlflowClient, and what happens when MLflow is down (results kept, exit code
unchanged, one warning)."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.mlflow_server import MlflowServer


def _client(uri: str):  # type: ignore[no-untyped-def]
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def _runs(uri: str, experiment: str) -> tuple[list, list]:  # type: ignore[type-arg]
    client = _client(uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r} at {uri}"
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


def test_examples_land_in_mlflow_server(
    pytester: pytest.Pytester, examples_dir: Path, mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = pytester.runpytest("--promptab", "examples/", "--promptab-mlflow-uri", mlflow_server.uri)
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines([f"MLflow: {mlflow_server.uri} (experiment *support-reply)*"])
    parents, children = _runs(mlflow_server.uri, "support-reply")
    # the results file names the parent run of this session
    data = json.loads((pytester.path / ".promptab" / "results.json").read_text())
    support = next(a for a in data["abtests"] if a["name"] == "reply-tone")
    (parent,) = [p for p in parents if p.info.run_id == support["mlflow_run_id"]]
    assert parent.data.tags["promptab.file"] == "examples/support.yaml"
    mine = [c for c in children if c.data.tags["mlflow.parentRunId"] == parent.info.run_id]
    by_role = {c.data.tags["role"]: c for c in mine}
    assert [c.data.tags["mlflow.runName"] for c in mine] == ["baseline", "empathetic", "terse"]  # the file's order
    experiment = _client(mlflow_server.uri).get_experiment_by_name("support-reply")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert experiment.tags["mlflow.note.content"].startswith("Classify a customer email")
    assert set(by_role) == {"baseline", "challenger"}
    empathetic = next(c for c in mine if c.data.tags["mlflow.runName"] == "empathetic")
    assert empathetic.data.metrics["pass_rate"] == pytest.approx(0.98)  # 49 of 50: one case at 4 of 5
    assert empathetic.data.tags["winner"] == "true"
    assert "latency_ms.p95" in empathetic.data.metrics
    assert empathetic.data.params["prompt.reply"].startswith("Acknowledge the customer's frustration first")
    assert parent.data.tags["promptab.winner"] == "empathetic"
    client = _client(mlflow_server.uri)
    prompt = Path(client.download_artifacts(empathetic.info.run_id, "prompts/reply.txt", str(pytester.path)))
    assert prompt.read_text().startswith("Acknowledge the customer's frustration first")
    # traces through the server (the client's trace API): under their variant runs, a feedback per check
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)  # where MLflow reads mlflow-artifacts: from
    for child in mine:
        traces = client.search_traces(locations=[experiment.experiment_id], run_id=child.info.run_id, max_results=100)
        assert traces, child.data.tags["mlflow.runName"]
        for trace in traces:
            assert trace.info.trace_metadata["mlflow.sourceRun"] == child.info.run_id
            assert trace.info.tags["promptab.variant"] == child.data.tags["mlflow.runName"]
            assert trace.info.assessments and trace.data.spans


def test_default_store_is_sqlite_at_rootdir(pytester: pytest.Pytester, echo_workflow, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_end_to_end import SIMPLE

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    echo_workflow("flow", SIMPLE)
    pytester.makeini("[pytest]\n")  # the rootdir
    sub = pytester.mkdir("sub")
    monkeypatch.chdir(sub)  # the artifact location must not depend on the current directory
    result = pytester.runpytest("--promptab", str(pytester.path / "flow.yaml"), "--rootdir", str(pytester.path))
    assert result.ret == 0, result.stdout.str()
    uri = f"sqlite:///{pytester.path / 'mlflow.db'}"
    parents, children = _runs(uri, "echo-flow")
    assert len(parents) == 1 and len(children) == 2
    assert (pytester.path / "mlartifacts").is_dir()
    assert not {p.name for p in sub.iterdir()} & {"mlflow.db", "mlartifacts", "mlruns", ".promptab"}


@pytest.mark.parametrize("ui", [True, False], ids=["ui-installed", "skinny-only"])
def test_summary_says_how_to_install_the_ui_when_it_is_missing(
    pytester: pytest.Pytester, echo_workflow, monkeypatch: pytest.MonkeyPatch, ui: bool
) -> None:
    """promptab depends on mlflow-skinny; `mlflow ui` comes with the `ui` extra."""
    from pytest_promptab.tracking import ui as ui_module
    from tests.test_end_to_end import SIMPLE

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(ui_module, "ui_installed", lambda: ui)
    echo_workflow("flow", SIMPLE)
    result = pytester.runpytest("--promptab", "flow.yaml")
    assert result.ret == 0, result.stdout.str()
    if ui:
        result.stdout.fnmatch_lines(["MLflow: sqlite:///*; see it with: mlflow ui (started in this folder)"])
    else:
        result.stdout.fnmatch_lines(
            ['MLflow: sqlite:///*; see it with: mlflow ui (started in this folder), once the UI is installed'
             ' (pip install "pytest-promptab[[]ui[]]")']
        )  # fmt: skip


def test_xdist_session_logs_once(pytester: pytest.Pytester, examples_dir: Path, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'x.db'}"
    result = pytester.runpytest_subprocess("--promptab", "examples/", "-n", "2", "--promptab-mlflow-uri", uri)
    assert result.ret == 0, result.stdout.str()
    parents, children = _runs(uri, "support-reply")
    assert len(parents) == 1 and len(children) == 3


def _closed_port_uri() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_mlflow_down_keeps_results_and_block_exit_code(pytester: pytest.Pytester) -> None:
    shutil.copytree(ROOT / "examples", pytester.path / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "demos", pytester.path / "demos", ignore=shutil.ignore_patterns("__pycache__"))
    result = pytester.runpytest("--promptab", "demos/deploy-block/", "--promptab-mlflow-uri", _closed_port_uri())
    assert result.ret == 10
    out = result.stdout.str()
    assert "MLflow logging failed" in out and ".promptab/results.json" in out
    result.stdout.fnmatch_lines(["*promptab summary*", "*DEPLOY BLOCKED*"])
    data = json.loads((pytester.path / ".promptab" / "results.json").read_text())
    assert data["mlflow_error"] and len(data["abtests"][0]["runs"]) == 24


def test_mlflow_500_keeps_results_and_exit_code(pytester: pytest.Pytester, echo_workflow) -> None:
    import http.server
    import threading

    from tests.test_end_to_end import SIMPLE

    class Broken(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_error(500, "boom")

        do_POST = do_GET  # noqa: N815

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Broken)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        echo_workflow("flow", SIMPLE)
        uri = f"http://127.0.0.1:{server.server_address[1]}"
        result = pytester.runpytest("--promptab", "--promptab-mlflow-uri", uri)
    finally:
        server.shutdown()
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*MLflow logging failed*500*", "*promptab summary*"])
    assert (pytester.path / ".promptab" / "results.json").is_file()


def test_mlflow_killed_mid_session(pytester: pytest.Pytester, echo_workflow, mlflow_server: MlflowServer) -> None:
    """The provider kills the tracking server while the runs are going."""
    from tests.test_end_to_end import SIMPLE

    assert mlflow_server.process is not None
    pytester.makepyfile(
        killer=f"""
        import os, signal
        def generate(request):
            try:
                os.killpg({mlflow_server.process.pid}, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return "yes"
        """
    )
    echo_workflow("flow", SIMPLE.replace("echo_provider.py:echo", "killer.py:generate"))
    try:
        result = pytester.runpytest("--promptab", "--promptab-mlflow-uri", mlflow_server.uri)
        assert result.ret == 0
        result.stdout.fnmatch_lines(["*MLflow logging failed*", "*promptab summary*"])
        assert json.loads((pytester.path / ".promptab" / "results.json").read_text())["mlflow_error"]
    finally:
        mlflow_server.ensure_running()
    assert os.path.exists(mlflow_server.log_path)


def test_tracking_uri_credentials_never_reach_the_results_or_output(
    pytester: pytest.Pytester, echo_workflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_end_to_end import SIMPLE

    echo_workflow("flow", SIMPLE)
    port = _closed_port_uri().rsplit(":", 1)[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://user:s3cretTOKEN@127.0.0.1:{port}")
    result = pytester.runpytest("--promptab")
    assert result.ret == 0
    assert "s3cretTOKEN" not in result.stdout.str() + result.stderr.str()
    text = (pytester.path / ".promptab" / "results.json").read_text()
    assert "s3cretTOKEN" not in text and json.loads(text)["mlflow_error"]


def test_runs_are_traces_linked_to_their_variant_runs(pytester: pytest.Pytester, echo_workflow) -> None:
    """The same (case, run) pairs in every variant, failed runs first, one
    assessment per check, a span per node with its rendered messages."""
    from tests.test_end_to_end import SIMPLE

    echo_workflow("flow", SIMPLE)
    uri = f"sqlite:///{pytester.path / 'traces.db'}"
    result = pytester.runpytest("--promptab", "flow.yaml", "--promptab-mlflow-uri", uri, "--promptab-mlflow-traces", "4")
    assert result.ret == 0, result.stdout.str()
    parents, children = _runs(uri, "echo-flow")
    runs = {c.info.run_name: c.info.run_id for c in children}
    client = _client(uri)
    exp = client.get_experiment_by_name("echo-flow")
    traces = client.search_traces(locations=[exp.experiment_id], max_results=100)
    # 4 traces: 2 (case, run) pairs x 2 variants, the failing case "bad" first
    assert len(traces) == 4
    seen = {}
    for trace in traces:
        tags = trace.info.tags
        variant = tags["promptab.variant"]
        assert trace.info.trace_metadata["mlflow.sourceRun"] == runs[variant]
        seen.setdefault(variant, set()).add((tags["promptab.case"], tags["promptab.run"]))
        assert [a.name for a in trace.info.assessments] == ["is-yes"]
        (feedback,) = trace.info.assessments
        assert feedback.value is (tags["promptab.case"] == "good" and variant == "baseline")
        spans = {s.name: s for s in trace.data.spans}
        assert "answer" in spans
        messages = spans["answer"].inputs["messages"]
        assert messages[-1]["role"] == "user"
        if variant == "baseline":
            assert messages[-1]["content"].startswith("Question: q")
    assert seen["baseline"] == seen["loud"] == {("bad", "1"), ("bad", "2")}
    # a run's own traces: what its Traces tab lists
    mine = client.search_traces(locations=[exp.experiment_id], run_id=runs["loud"])
    assert {t.info.tags["promptab.variant"] for t in mine} == {"loud"}

    none = pytester.runpytest("--promptab", "flow.yaml", "--promptab-mlflow-uri", uri, "--promptab-mlflow-traces", "0")
    assert none.ret == 0
    assert len(client.search_traces(locations=[exp.experiment_id], max_results=100)) == 4
