"""MLflow logging: the layout a session leaves in MLflow (read back through
``MlflowClient``, from a real ``mlflow server`` and from a sqlite store), the
faults that must not lose anything, the prompt registry, and git info."""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_promptab import __version__
from pytest_promptab.analysis.summary import (
    ABTestSummary,
    Comparison,
    GateJudgement,
    SessionSummary,
    VariantSummary,
)
from pytest_promptab.checks.result import CheckResult
from pytest_promptab.gitinfo import git_info
from pytest_promptab.run.records import RunRecord
from pytest_promptab.tracking.log import (
    HTTP_LIMITS,
    LogOutcome,
    MlflowLogError,
    log_session,
    register_prompts,
    resolve_tracking_uri,
)
from tests.mlflow_server import free_port, start_mlflow_server

# mlflow 3.17 with SQLAlchemy 2.1, in the tests' own MlflowClient reads
# (log_session itself silences it).
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")

NODEID = "examples/support.yaml::reply-tone"
VARIANTS = ("baseline", "empathetic", "terse")
PROMPTS = {
    "baseline": "Write a short, polite reply to this {{ category }} email:\n{{ email }}",
    "empathetic": "Acknowledge the customer's frustration first. " + "Be kind. " * 800 + "{{ email }}",
    "terse": "Reply in two sentences: {{ email }}",
}
KEY_RE = re.compile(r"^[A-Za-z0-9_.\- /]+$")


# ------------------------------------------------------------------ helpers


def make_summary(
    *, runs: int = 3, variants: tuple[str, ...] = VARIANTS, cases: tuple[str, ...] = ("double-charge", "crash"),
    experiment: str = "support-reply",
) -> SessionSummary:  # fmt: skip
    records = []
    for vi, variant in enumerate(variants):
        for case in cases:
            for run in range(1, runs + 1):
                ok = (run + vi) % 4 != 0
                records.append(
                    RunRecord(
                        file="examples/support.yaml", ab_test="reply-tone", variant=variant, case=case, run=run,
                        status="passed" if ok else "check_failed",
                        metrics={"latency_ms": 100.0 + 10 * vi + run, "tokens_total": 40.0 + vi, "passed": float(ok),
                                 "check.category": float(ok), "cost_usd": 0.0001},
                        checks=[CheckResult("category", "equals", ok, float(ok), "billing", "billing" if ok else "bug")],
                        outputs={"category": "billing" if ok else "bug", "reply": f"Thanks for writing ({variant} {run})"},
                    )  # fmt: skip
                )
    summaries = []
    for vi, variant in enumerate(variants):
        mine = [r for r in records if r.variant == variant]
        rate = sum(r.metrics["passed"] for r in mine) / len(mine)
        summaries.append(
            VariantSummary(
                name=variant, role="baseline" if vi == 0 else "challenger", runs=len(mine), failed_runs=0,
                aggregates={
                    "latency_ms": {"n": len(mine), "mean": 100.0 + 10 * vi, "p50": 101.0 + 10 * vi, "p95": 120.0 + vi},
                    "tokens_total": {"n": len(mine), "mean": 40.0 + vi},
                    "check.category": {"mean": rate},
                },
                pass_rate=rate, pass_rate_ci=(rate - 0.2, min(1.0, rate + 0.1)),
                comparison=None if vi == 0 else Comparison(
                    variant, "pass_rate", 0.75, rate, rate - 0.75, -0.3, 0.4, 0.5 + vi / 10, 0.9, "fisher", False, False),
                model="gpt-4o-mini",
                prompts={"classify": "Classify this email: {{ email }}", "reply": PROMPTS.get(variant, variant)},
                system={"classify": "You are a support triage assistant."},
                settings={"classify": {"temperature": 0.0},
                          "reply": {"temperature": 0.2 + vi / 10, "max_tokens": 300, "api_key": "sk-abcdefSECRET",
                                    "extra_headers": {"Authorization": "Bearer SECRET"}, "token": "SECRET2",
                                    "stop": ["\n\n"]}},
                provider={"type": "openai", "base_url": "https://internal.example/v1", "api_key_env": "OPENAI_API_KEY"},
                winner=vi == 0,
                violated=["cost_usd.mean<=0.00005"] if variant == "terse" else [],
            )  # fmt: skip
        )
    gates = []
    for variant in variants:
        gates.append(GateJudgement("pass_rate>=0.5", "pass_rate", "BLOCK_DEPLOY", 0.5, None, variant, 0.7, True,
                                   "passed", f"{NODEID}::gate[{variant}:pass_rate>=0.5]", "met"))  # fmt: skip
        bad = variant == "terse"
        gates.append(GateJudgement("cost_usd.mean<=0.00005", "cost_usd.mean", "FAIL", None, 0.00005, variant, 0.0001,
                                   not bad, "xfailed" if bad else "passed", f"{NODEID}::gate[{variant}:cost]", "m"))  # fmt: skip
        warn = variant == "empathetic"
        gates.append(GateJudgement("latency_ms.p95<=119", "latency_ms.p95", "WARN", None, 119.0, variant, 120.0,
                                   not warn, "passed", f"{NODEID}::gate[{variant}:latency]", "w"))  # fmt: skip
    ab = ABTestSummary(
        file="examples/support.yaml", workflow="support-reply", name="reply-tone", nodeid=NODEID, baseline="baseline",
        objective="pass_rate", goal="max", alpha=0.05, variants=summaries, gates=gates, winner="baseline",
        winner_reason="no significant winner", complete=True, failed_runs=0, file_sha256="ab" * 32,
        experiment=experiment, runs=records, description="Classify a customer email, then draft a reply.",
    )  # fmt: skip
    return SessionSummary(abtests=[ab])


def git(cwd: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main", *args]
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(autouse=True)
def clean_cwd(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Run each test in an empty directory, and check MLflow left nothing in
    it: every store, artifact and registry call goes to the URI we gave."""
    cwd = tmp_path_factory.mktemp("cwd")
    monkeypatch.chdir(cwd)
    yield cwd
    assert sorted(p.name for p in cwd.iterdir()) == []


@pytest.fixture(scope="module")
def mlflow_mod() -> Any:
    import mlflow.tracking

    return mlflow.tracking


@pytest.fixture(scope="module")
def empty_db(tmp_path_factory: pytest.TempPathFactory, mlflow_mod: Any) -> Path:
    """An initialised, empty MLflow sqlite store (creating one runs MLflow's
    ~100 migrations: seconds; tests copy this one instead)."""
    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    mlflow_mod.MlflowClient(f"sqlite:///{path.as_posix()}").search_experiments()
    return path


@pytest.fixture
def sqlite_uri(empty_db: Path, tmp_path: Path) -> str:
    path = tmp_path / "store" / "mlflow.db"
    path.parent.mkdir()
    shutil.copyfile(empty_db, path)
    return f"sqlite:///{path.as_posix()}"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project root that is a git repository with one commit."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "examples").mkdir()
    (root / "examples" / "support.yaml").write_text("name: support-reply\n")
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "init")
    return root


def results_file(root: Path, summary: SessionSummary) -> Path:
    path = root / ".promptab" / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary.to_dict(), default=str))
    return path


def read_artifact(client: Any, run_id: str, path: str, dst: Path) -> str:
    dst.mkdir(parents=True, exist_ok=True)
    return Path(client.download_artifacts(run_id, path, str(dst))).read_text(encoding="utf-8")


def load_table(client: Any, experiment_id: str, run_id: str, name: str = "runs.json") -> Any:
    """``MlflowClient.load_table`` (what the UI's table view reads) searches
    runs through the fluent API, i.e. the global tracking URI."""
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = client._tracking_client.tracking_uri
    try:
        return client.load_table(experiment_id, name, run_ids=[run_id])
    finally:
        if old is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old


def assert_layout(client: Any, outcome: LogOutcome, summary: SessionSummary, tmp: Path, commit: str | None) -> None:
    assert outcome.ok, outcome.message
    ab = summary.abtests[0]
    experiment = client.get_experiment_by_name("support-reply")
    assert experiment is not None and experiment.lifecycle_stage == "active"
    parent = client.get_run(outcome.run_ids[NODEID])
    assert parent.info.experiment_id == experiment.experiment_id
    assert parent.info.status == "FINISHED"
    # the experiment: the workflow's description, and the kind that opens the runs view
    assert experiment.tags["mlflow.note.content"] == "Classify a customer email, then draft a reply."
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    # the parent's name tells sessions apart: A/B test, branch@commit, UTC time
    name = parent.info.run_name
    assert re.fullmatch(r"\d\d-\d\d \d\d:\d\d:\d\dZ reply-tone( \S+)?", name), name
    if commit:
        assert name.endswith(f" reply-tone main@{commit[:7]}")
    tags = parent.data.tags
    assert tags["promptab.version"] == __version__
    assert tags["promptab.file"] == "examples/support.yaml"
    assert tags["promptab.file_sha256"] == "ab" * 32
    assert tags["promptab.winner"] == "baseline"
    assert tags["promptab.winner_reason"] == "no significant winner"
    assert tags["promptab.complete"] == "true"
    assert tags["promptab.ci"] in ("true", "false")
    if commit:
        assert tags["mlflow.source.git.commit"] == commit
        assert tags["mlflow.source.git.branch"] == "main"
    assert parent.data.params["objective"] == "pass_rate"
    note = tags["mlflow.note.content"]
    assert "| empathetic |" in note and "latency_ms.p95<=119 (WARN)" in note
    assert "cost_usd.mean<=0.00005 (FAIL)" in note
    results = json.loads(read_artifact(client, parent.info.run_id, "results.json", tmp / "p"))
    assert results["abtests"][0]["nodeid"] == NODEID

    children = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    # newest first (MLflow's default order, the UI's too) lists them in the file's order
    assert [r.info.run_name for r in children] == list(VARIANTS)
    assert {r.info.run_id for r in children} == set(outcome.variant_run_ids[NODEID].values())
    by_name = {r.info.run_name: r for r in children}
    for vs in ab.variants:
        run = by_name[vs.name]
        assert run.info.status == "FINISHED"
        p, m, t = run.data.params, run.data.metrics, run.data.tags
        assert t["role"] == vs.role
        assert t["winner"] == ("true" if vs.name == "baseline" else "false")
        assert t["gate.pass_rate_ge_0.5"] == "BLOCK_DEPLOY met: passed"
        bad = vs.name == "terse"
        assert t["gate.cost_usd.mean_le_0.00005"] == ("FAIL violated: xfailed" if bad else "FAIL met: passed")
        assert t["gate.latency_ms.p95_le_119"] == ("WARN violated: passed" if vs.name == "empathetic" else "WARN met: passed")
        if commit:
            assert t["mlflow.source.git.commit"] == commit
        assert t["promptab.session"] == tags["promptab.session"]
        assert p["model"] == "gpt-4o-mini"
        assert p["settings.reply.temperature"] == str(vs.settings["reply"]["temperature"])
        assert p["settings.reply.max_tokens"] == "300"
        assert p["settings.reply.stop"] == '["\\n\\n"]'
        assert len(p["prompt_hash.reply"]) == 12 and p["prompt_hash.reply"] != p["prompt_hash.classify"]
        # the prompt text itself, cut at MLflow's 6000-character limit with a marker
        assert p["system.classify"] == "You are a support triage assistant."
        assert p["prompt.classify"] == "Classify this email: {{ email }}"
        if len(vs.prompts["reply"]) <= 6000:
            assert p["prompt.reply"] == vs.prompts["reply"]
        else:
            assert len(p["prompt.reply"]) == 6000
            assert p["prompt.reply"].startswith(vs.prompts["reply"][:5000])
            assert p["prompt.reply"].endswith("the full text is the artifact prompts/reply.txt]")
        # metrics: mean, p50, p95; n and the rest in the aggregates table
        assert "latency_ms.n" not in m and "tokens_total.n" not in m
        assert m["error_rate"] == 0.0
        assert m["latency_ms.p95"] == vs.aggregates["latency_ms"]["p95"]
        assert m["latency_ms.mean"] == vs.aggregates["latency_ms"]["mean"]
        assert m["tokens_total.mean"] == vs.aggregates["tokens_total"]["mean"]
        assert m["check.category.mean"] == pytest.approx(vs.pass_rate)
        assert m["pass_rate"] == pytest.approx(vs.pass_rate)
        assert m["pass_rate_ci_low"] == pytest.approx(vs.pass_rate_ci[0])
        if vs.comparison:
            assert m["p_adjusted"] == 0.9 and m["p_value"] == pytest.approx(vs.comparison.p_value)
            assert m["diff"] == pytest.approx(vs.comparison.diff)
        else:
            assert "p_value" not in m
        # No secret, no host: neither in params nor in tags.
        everything = json.dumps([p, t])
        for secret in ("SECRET", "internal.example", "OPENAI_API_KEY"):
            assert secret not in everything
        assert all(KEY_RE.match(k) for k in [*p, *m, *t])
        # Artifacts: the full prompts, and a runs table the UI (and load_table) reads.
        prompt = read_artifact(client, run.info.run_id, "prompts/reply.txt", tmp / vs.name)
        assert prompt == vs.prompts["reply"]
        system = read_artifact(client, run.info.run_id, "prompts/classify.system.txt", tmp / vs.name)
        assert system == "You are a support triage assistant."
        assert json.loads(t["mlflow.loggedArtifacts"]) == [
            {"path": "runs.json", "type": "table"}, {"path": "aggregates.json", "type": "table"}
        ]
        stats = load_table(client, experiment.experiment_id, run.info.run_id, "aggregates.json")
        assert list(stats.columns) == ["metric", "n", "mean", "std", "min", "max", "p50", "p95", "p99"]
        row = stats[stats["metric"] == "latency_ms"].iloc[0]
        assert row["n"] == 6 and row["p95"] == vs.aggregates["latency_ms"]["p95"]
    table = load_table(client, experiment.experiment_id, by_name["terse"].info.run_id)
    assert len(table) == 6 and set(table["variant"]) == {"terse"}
    assert set(table["status"]) == {"passed", "check_failed"}
    assert not [c for c in table.columns if "." in c]  # MLflow's table view shows dotted columns blank
    assert table["output_reply"].iloc[0].startswith("Thanks for writing (terse")
    assert set(table["check_category"]) == {"pass", "FAIL"}


# ---------------------------------------------------------- tracking URI


def test_tracking_uri_precedence(tmp_path: Path) -> None:
    env = {"MLFLOW_TRACKING_URI": "http://env:5000"}
    assert resolve_tracking_uri("http://opt:1", "http://ini:2", env, tmp_path) == "http://opt:1"
    assert resolve_tracking_uri(None, "http://ini:2", env, tmp_path) == "http://ini:2"
    assert resolve_tracking_uri(None, None, env, tmp_path) == "http://env:5000"
    assert resolve_tracking_uri(None, "", {}, tmp_path) == f"sqlite:///{tmp_path.resolve().as_posix()}/mlflow.db"


def test_default_tracking_uri_is_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    uri = resolve_tracking_uri(None, None, {}, Path("."))
    assert uri == f"sqlite:///{tmp_path.resolve().as_posix()}/mlflow.db"
    assert uri.startswith("sqlite:////")


# ----------------------------------------------------------------- git


def test_git_info_outside_git(tmp_path: Path) -> None:
    assert git_info(tmp_path) == {}
    assert git_info(tmp_path / "does-not-exist") == {}


def test_git_info_commit_branch_dirty(project: Path) -> None:
    commit = git(project, "rev-parse", "HEAD")
    assert git_info(project / "examples") == {"commit": commit, "branch": "main", "dirty": "false"}
    (project / "examples" / "support.yaml").write_text("changed\n")
    assert git_info(project)["dirty"] == "true"
    git(project, "checkout", "-q", "--detach")
    assert git_info(project) == {"commit": commit, "dirty": "true"}


def test_git_info_without_git_binary(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commit = git(project, "rev-parse", "HEAD")
    git(project, "pack-refs", "--all")  # the branch now lives in packed-refs only
    monkeypatch.setenv("PATH", "")
    assert git_info(project / "examples") == {"commit": commit, "branch": "main"}


# --------------------------------------------------------------- layout


def test_log_to_sqlite(
    project: Path, tmp_path: Path, empty_db: Path, monkeypatch: pytest.MonkeyPatch, mlflow_mod: Any
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the artifact location must not depend on it
    monkeypatch.setenv("CI", "true")
    summary = make_summary()
    uri = resolve_tracking_uri(None, None, {}, project)
    # (a brand-new store is created by the ui_project fixture; save the seconds here)
    shutil.copyfile(empty_db, project / "mlflow.db")
    outcome = log_session(summary, tracking_uri=uri, rootdir=project, results_path=results_file(project, summary))
    client = mlflow_mod.MlflowClient(uri)
    assert_layout(client, outcome, summary, tmp_path / "dl", git(project, "rev-parse", "HEAD"))
    experiment = client.get_experiment_by_name("support-reply")
    assert experiment.artifact_location == (project / "mlartifacts" / experiment.experiment_id).as_uri()
    parent = client.get_run(outcome.run_ids[NODEID])
    assert parent.data.tags["promptab.ci"] == "true"
    assert (project / "mlartifacts" / experiment.experiment_id / parent.info.run_id / "artifacts" / "runs.json").is_file()
    assert list(elsewhere.iterdir()) == []
    assert "sqlite:" in outcome.message

    # A second session adds a second parent run to the same experiment.
    again = log_session(summary, tracking_uri=uri, rootdir=project, results_path=project / "missing.json")
    assert again.ok, again.message
    parents = client.search_runs([experiment.experiment_id], filter_string="tags.`promptab.ab_test` = 'reply-tone'")
    assert len({r.data.tags.get("mlflow.parentRunId") for r in parents if "mlflow.parentRunId" in r.data.tags}) == 2


def test_import_is_cheap() -> None:
    code = "import sys, pytest_promptab.tracking.log; print(sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.mlflow
def test_log_to_server(mlflow_server: Any, project: Path, tmp_path: Path, mlflow_mod: Any) -> None:
    summary = make_summary()
    outcome = log_session(
        summary, tracking_uri=mlflow_server.uri, rootdir=project, results_path=results_file(project, summary)
    )
    client = mlflow_mod.MlflowClient(mlflow_server.uri)
    assert_layout(client, outcome, summary, tmp_path / "dl", git(project, "rev-parse", "HEAD"))
    experiment = client.get_experiment_by_name("support-reply")
    assert experiment.artifact_location.startswith("mlflow-artifacts:")  # the server decided
    assert (mlflow_server.root / "artifacts").is_dir()
    assert not (project / "mlartifacts").exists() and not (project / "mlflow.db").exists()


def test_many_params_and_metrics_odd_names(tmp_path: Path, sqlite_uri: str, mlflow_mod: Any) -> None:
    summary = make_summary(runs=1, variants=("baseline", "b"))
    v = summary.abtests[0].variants[1]
    v.aggregates.update({f"check.tone (polite?) #{i}": {"mean": i / 300, "p95": 1.0} for i in range(600)})
    v.aggregates["check.weird//../x"] = {"mean": 0.5}
    v.settings["reply"].update({f"opt{i}": "v" * 100 for i in range(150)})
    v.settings["reply"]["huge"] = "z" * 10_000
    uri = sqlite_uri
    outcome = log_session(summary, tracking_uri=uri, rootdir=tmp_path, results_path=tmp_path / "r.json")
    assert outcome.ok, outcome.message
    run = mlflow_mod.MlflowClient(uri).get_run(outcome.variant_run_ids[NODEID]["b"])
    metrics, params = run.data.metrics, run.data.params
    assert sum(k.startswith("check.tone _polite__ _") for k in metrics) == 1200
    assert metrics["check.tone _polite__ _299.mean"] == pytest.approx(299 / 300)
    assert metrics["check.weird/x.mean"] == 0.5
    assert sum(k.startswith("settings.reply.opt") for k in params) == 150
    assert len(params["settings.reply.huge"]) == 6000 and params["settings.reply.huge"].endswith("...")
    assert all(KEY_RE.match(k) for k in [*params, *metrics])


# --------------------------------------------------------------- faults


def test_server_not_listening(tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    outcome = log_session(make_summary(), tracking_uri=uri, rootdir=tmp_path, results_path=tmp_path / "r.json")
    assert not outcome.ok and outcome.run_ids == {}
    assert time.monotonic() - start < 15
    assert outcome.message == f"MLflow at {uri} is not reachable (connection refused: is the server running?)"
    assert all(name not in os.environ for name in HTTP_LIMITS)  # restored


def test_nothing_to_log_touches_nothing(tmp_path: Path) -> None:
    uri = f"sqlite:///{(tmp_path / 'never.db').as_posix()}"
    outcome = log_session(SessionSummary(), tracking_uri=uri, rootdir=tmp_path, results_path=tmp_path / "r.json")
    assert outcome.ok and "nothing to log" in outcome.message
    assert list(tmp_path.iterdir()) == []


def test_user_http_settings_are_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    outcome = log_session(
        make_summary(), tracking_uri=f"http://u:pw@127.0.0.1:{free_port()}", rootdir=tmp_path,
        results_path=tmp_path / "r.json",
    )  # fmt: skip
    assert not outcome.ok and "pw" not in outcome.message and "***@127.0.0.1" in outcome.message
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"


class _Always(http.server.BaseHTTPRequestHandler):
    """Answers every request with ``status`` (a broken server or proxy)."""

    status = 500

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b"<h1>broken</h1>"
        self.send_response(self.status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def broken_proxy(request: pytest.FixtureRequest) -> Iterator[str]:
    handler = type("Handler", (_Always,), {"status": request.param})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("broken_proxy", "expected"),
    [
        (500, "answered HTTP 500 (server error; check the server's log)"),
        (403, "answered HTTP 403 (not authorized): set MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and "
              "MLFLOW_TRACKING_PASSWORD"),
    ],
    indirect=["broken_proxy"],
)  # fmt: skip
def test_http_errors(broken_proxy: str, expected: str, tmp_path: Path) -> None:
    start = time.monotonic()
    outcome = log_session(make_summary(), tracking_uri=broken_proxy, rootdir=tmp_path, results_path=tmp_path / "r.json")
    assert not outcome.ok
    assert time.monotonic() - start < 15
    assert outcome.message == f"MLflow at {broken_proxy} {expected}"


def test_slow_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that accepts connections and never answers."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        uri = f"http://127.0.0.1:{sock.getsockname()[1]}"
        start = time.monotonic()
        outcome = log_session(make_summary(), tracking_uri=uri, rootdir=tmp_path, results_path=tmp_path / "r.json")
        elapsed = time.monotonic() - start
    assert not outcome.ok
    assert outcome.message == f"MLflow at {uri} did not answer within 1 s (server down or overloaded)"
    assert elapsed < 10


def test_deleted_experiment(tmp_path: Path, sqlite_uri: str, mlflow_mod: Any) -> None:
    uri = sqlite_uri
    client = mlflow_mod.MlflowClient(uri)
    eid = client.create_experiment("support-reply")
    client.delete_experiment(eid)
    outcome = log_session(make_summary(), tracking_uri=uri, rootdir=tmp_path, results_path=tmp_path / "r.json")
    assert not outcome.ok
    assert "\n" not in outcome.message
    assert f"'support-reply' (id {eid}) is deleted" in outcome.message
    assert f"mlflow experiments restore --experiment-id {eid}" in outcome.message
    assert "mlflow gc" in outcome.message
    assert client.search_runs([eid], run_view_type=3) == []  # nothing half-logged
    # Pointing the workflow at another experiment works.
    ok = log_session(make_summary(experiment="support-reply-2"), tracking_uri=uri, rootdir=tmp_path,
                     results_path=tmp_path / "r.json")  # fmt: skip
    assert ok.ok, ok.message


@pytest.fixture(scope="module")
def ui_project(tmp_path_factory: pytest.TempPathFactory, mlflow_mod: Any) -> Iterator[tuple[Path, LogOutcome, Any]]:
    """A project logged to the default URI, then plain ``mlflow ui`` started at
    its root, as the README tells users to do."""
    project = tmp_path_factory.mktemp("ui-project")
    summary = make_summary()
    uri = resolve_tracking_uri(None, None, {}, project)
    outcome = log_session(summary, tracking_uri=uri, rootdir=project, results_path=results_file(project, summary))
    assert outcome.ok, outcome.message
    server = start_mlflow_server(project, ui=True)
    try:
        yield project, outcome, server
    finally:
        server.stop()


@pytest.mark.mlflow
def test_mlflow_ui_at_project_root_shows_the_session(ui_project: tuple[Path, LogOutcome, Any], mlflow_mod: Any) -> None:
    project, outcome, server = ui_project
    server.ensure_running()
    client = mlflow_mod.MlflowClient(server.uri)
    experiment = client.get_experiment_by_name("support-reply")
    parent_id = outcome.run_ids[NODEID]
    children = client.search_runs([experiment.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    assert sorted(r.info.run_name for r in children) == sorted(VARIANTS)
    terse = next(r for r in children if r.info.run_name == "terse")
    assert terse.data.metrics["latency_ms.p95"] == 122.0
    # The UI fetches artifacts through the server, which reads them from
    # <project>/mlartifacts whatever directory the session ran in.
    for path, expected in (("prompts/reply.txt", PROMPTS["terse"]), ("runs.json", '"terse"')):
        query = urllib.parse.urlencode({"run_id": terse.info.run_id, "path": path})
        with urllib.request.urlopen(f"{server.uri}/get-artifact?{query}", timeout=10) as answer:
            body = answer.read().decode("utf-8")
        assert expected in body if path == "runs.json" else body == expected
    listing = json.load(urllib.request.urlopen(
        f"{server.uri}/ajax-api/2.0/mlflow/artifacts/list?run_id={terse.info.run_id}", timeout=10))  # fmt: skip
    assert {f["path"] for f in listing["files"]} == {"prompts", "runs.json", "aggregates.json"}


@pytest.mark.mlflow
def test_server_killed_mid_session(
    ui_project: tuple[Path, LogOutcome, Any], mlflow_mod: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, _, server = ui_project
    server.ensure_running()
    real_log_batch = mlflow_mod.MlflowClient.log_batch
    calls = []

    def log_batch_then_kill(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = real_log_batch(self, *args, **kwargs)
        calls.append(args[0] if args else kwargs.get("run_id"))
        if len(calls) == 1:
            server.kill()  # the parent run is half-logged; what follows meets a dead server
        return result

    monkeypatch.setattr(mlflow_mod.MlflowClient, "log_batch", log_batch_then_kill)
    start = time.monotonic()
    outcome = log_session(
        make_summary(experiment="killed"), tracking_uri=server.uri, rootdir=project, results_path=project / "r.json"
    )
    elapsed = time.monotonic() - start
    assert len(calls) == 1 and not server.alive
    assert not outcome.ok and outcome.run_ids == {}
    assert outcome.message == f"MLflow at {server.uri} is not reachable (connection refused: is the server running?)"
    assert elapsed < 15


# ------------------------------------------------------- prompt registry


@pytest.mark.mlflow
@pytest.mark.parametrize("store", ["sqlite", "server"])
def test_register_prompts(store: str, request: pytest.FixtureRequest, tmp_path: Path, mlflow_mod: Any) -> None:
    if store == "server":
        uri = request.getfixturevalue("mlflow_server").uri
    else:
        uri = request.getfixturevalue("sqlite_uri")
    summary = make_summary(runs=1, experiment=f"registry-{store}")
    outcome = log_session(summary, tracking_uri=uri, rootdir=tmp_path, results_path=tmp_path / "r.json")
    assert outcome.ok, outcome.message
    winner_run = outcome.variant_run_ids[NODEID]["empathetic"]
    prompts = {"classify": "Classify: {{ email }}", "reply": PROMPTS["empathetic"]}
    uris = register_prompts(uri, prompts, name_prefix=f"support reply/{store}", run_id=winner_run,
                            tags={"promptab.variant": "empathetic", "promptab.file": "examples/support.yaml"})  # fmt: skip
    assert uris == [f"prompts:/support_reply_{store}.classify/1", f"prompts:/support_reply_{store}.reply/1"]
    client = mlflow_mod.MlflowClient(uri)
    loaded = client.load_prompt(uris[1])
    assert loaded.template == PROMPTS["empathetic"]
    assert loaded.tags["promptab.variant"] == "empathetic"
    run = client.get_run(winner_run)
    assert run.data.tags["promptab.applied"] == "true"
    assert run.data.tags["promptab.applied_prompts"] == " ".join(uris)
    assert json.loads(run.data.tags["mlflow.linkedPrompts"]) == [
        {"name": f"support_reply_{store}.classify", "version": "1"},
        {"name": f"support_reply_{store}.reply", "version": "1"},
    ]
    again = register_prompts(uri, {"reply": "v2 {{ email }}"}, name_prefix=f"support reply/{store}", run_id=None, tags={})
    assert again == [f"prompts:/support_reply_{store}.reply/2"]


def test_register_prompts_failure_is_a_promptab_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(MlflowLogError, match="not reachable"):
        register_prompts(f"http://127.0.0.1:{free_port()}", {"reply": "x"}, name_prefix="p", run_id=None, tags={})


# ------------------------------------------------------------ performance


def test_performance_4_variants_x_1000_runs(tmp_path: Path, sqlite_uri: str, mlflow_mod: Any) -> None:
    summary = make_summary(runs=500, variants=("baseline", "a", "b", "c"))  # 2 cases x 500 = 1,000 per variant
    assert len(summary.abtests[0].runs) == 4000
    uri = sqlite_uri
    start = time.perf_counter()
    outcome = log_session(summary, tracking_uri=uri, rootdir=tmp_path, results_path=results_file(tmp_path, summary))
    elapsed = time.perf_counter() - start
    assert outcome.ok, outcome.message
    print(f"\nlog_session, 4 variants x 1,000 runs, existing sqlite store: {elapsed:.2f} s (mlflow imported)")
    assert elapsed < 10
    table = load_table(mlflow_mod.MlflowClient(uri), outcome.experiment_ids[NODEID], outcome.run_ids[NODEID])
    assert len(table) == 4000


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("https://user:token@mlflow.example.com/", "https://***@mlflow.example.com/"),
        ("postgresql://user:pa/ss@db/mlflow", "postgresql://***@db/mlflow"),
        ("https://u:p@ss@host:5000", "https://***@host:5000"),
        ("MLflow at https://u:secret@h/ answered HTTP 500", "MLflow at https://***@h/ answered HTTP 500"),
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ],
)
def test_redact_uri_hides_every_kind_of_user_info(uri: str, shown: str) -> None:
    from pytest_promptab.tracking.connect import redact_uri

    assert redact_uri(uri) == shown
