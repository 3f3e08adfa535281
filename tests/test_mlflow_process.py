"""The MLflow logging process: the summary crosses the pipe intact, the
process logs what the in-process logging logged, and whatever it does (fails
to start, dies, hangs, lacks mlflow) the session ends on time with one
warning and its exit code; on Ctrl-C or a killed pytest, no process is left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from pytest_promptab.analysis.summary import SessionSummary
from pytest_promptab.tracking import process as mlflow_process
from pytest_promptab.tracking.process import MlflowProcess, child_command
from tests.test_end_to_end import SIMPLE
from tests.test_mlflow_log import NODEID, make_summary

pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy is deprecated")

WARNING_END = "Nothing is lost: every result is in .promptab/results.json"


# ------------------------------------------------------------ the summary


def test_summary_round_trip() -> None:
    summary = make_summary()
    summary.abtests[0].apply_decision = "applied 'empathetic'"
    summary.abtests[0].mlflow_run_id = "abc"
    summary.mlflow_uri = "sqlite:///x.db"
    assert SessionSummary.from_dict(summary.to_dict()) == summary
    through_json = SessionSummary.from_dict(json.loads(json.dumps(summary.to_dict())))
    assert through_json == summary
    variant = through_json.abtests[0].variants[1]
    assert isinstance(variant.pass_rate_ci, tuple) and variant.comparison is not None
    assert through_json.abtests[0].variant("empathetic").comparison == summary.abtests[0].variants[1].comparison
    assert through_json.abtests[0].runs[0].checks[0].name == "category"


def test_summary_from_dict_ignores_unknown_keys() -> None:
    data = make_summary(runs=1).to_dict()
    data["from_the_future"] = 1
    data["abtests"][0]["variants"][0]["new_stat"] = {}
    assert SessionSummary.from_dict(data) == make_summary(runs=1)


# ------------------------------------------------------------ the process


def _request(summary: SessionSummary, uri: str, root: Path, applied: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "summary": summary.to_dict(),
        "tracking_uri": uri,
        "rootdir": str(root),
        "results_path": str(root / "results.json"),
        "applied": applied or {},
    }


def test_process_logs_and_registers_like_in_process(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    summary = make_summary(runs=2)
    (tmp_path / "results.json").write_text(json.dumps(summary.to_dict()))
    process = MlflowProcess(uri)
    answer = process.log(_request(summary, uri, tmp_path, applied={NODEID: "empathetic"}), timeout=120)
    assert answer["ok"], answer
    assert not process.running
    parent_id = answer["run_ids"][NODEID]
    client = MlflowClient(uri)
    parent = client.get_run(parent_id)
    assert parent.data.tags["promptab.file"] == "examples/support.yaml"
    children = answer["variant_run_ids"][NODEID]
    assert sorted(children) == ["baseline", "empathetic", "terse"]
    empathetic = client.get_run(children["empathetic"])
    assert empathetic.data.metrics["pass_rate"] == summary.abtests[0].variant("empathetic").pass_rate
    assert empathetic.data.tags["promptab.applied"] == "true"
    (uri_reply,) = [u for u in answer["registered"][NODEID] if ".reply/" in u]
    name, version = uri_reply.removeprefix("prompts:/").split("/")
    assert client.get_prompt_version(name, version).template.startswith("Acknowledge the customer")
    assert answer["problems"] == []
    # the artifacts land at the rootdir, not in the current directory
    assert (tmp_path / "mlartifacts").is_dir()


def test_process_without_mlflow_says_how_to_fix(tmp_path: Path) -> None:
    code = child_command()[-1].replace("import sys;", "import sys; sys.modules['mlflow'] = None;", 1)
    process = MlflowProcess(f"sqlite:///{tmp_path / 'm.db'}", command=[sys.executable, "-c", code])
    answer = process.log(_request(make_summary(runs=1), f"sqlite:///{tmp_path / 'm.db'}", tmp_path), timeout=60)
    assert not answer["ok"]
    assert "mlflow cannot be imported" in answer["message"] and "--promptab-no-mlflow" in answer["message"]
    assert not (tmp_path / "m.db").exists()


def test_process_that_hangs_is_stopped_at_the_timeout(tmp_path: Path) -> None:
    process = MlflowProcess("sqlite:///x.db", command=[sys.executable, "-c", "import time; time.sleep(600)"])
    started = time.monotonic()
    answer = process.log(_request(make_summary(runs=1), "sqlite:///x.db", tmp_path), timeout=1.5)
    assert time.monotonic() - started < 10
    assert not answer["ok"]
    assert answer["message"] == "the MLflow logging process did not answer within 1.5 s and was stopped"
    assert process.proc is not None and process.proc.returncode is not None  # killed and reaped


def test_process_that_dies_says_so_with_its_last_words(tmp_path: Path) -> None:
    script = "import sys; sys.stderr.write('Traceback...\\nRuntimeError: disk full\\n'); sys.exit(3)"
    process = MlflowProcess("https://user:hunter2@mlflow.example", command=[sys.executable, "-c", script])
    time.sleep(0.5)  # dead before the summary is sent: the write must not break the session
    answer = process.log(_request(make_summary(runs=1), "sqlite:///x.db", tmp_path), timeout=30)
    assert not answer["ok"]
    assert answer["message"] == (
        "the MLflow logging process ended (exit code 3) without an answer; it said: RuntimeError: disk full"
    )


def test_process_killed_by_a_signal(tmp_path: Path) -> None:
    process = MlflowProcess("sqlite:///x.db", command=[sys.executable, "-c", "import os; os.kill(os.getpid(), 9)"])
    answer = process.log(_request(make_summary(runs=1), "sqlite:///x.db", tmp_path), timeout=30)
    assert answer["message"] == "the MLflow logging process died (signal 9) without an answer"


def test_process_that_cannot_start(tmp_path: Path) -> None:
    process = MlflowProcess("sqlite:///x.db", command=[str(tmp_path / "no-such-python")])
    answer = process.log(_request(make_summary(runs=1), "sqlite:///x.db", tmp_path))
    assert not answer["ok"]
    assert answer["message"].startswith("the MLflow logging process could not be started (FileNotFoundError")


def test_process_exits_when_its_controller_goes_away() -> None:
    """Closing stdin (what the controller's death does) ends the process."""
    process = MlflowProcess("sqlite:////nonexistent/dir/mlflow.db")
    assert process.running and process.proc is not None
    assert process.proc.stdin is not None
    process.proc.stdin.close()
    assert process.proc.wait(timeout=60) == 0
    process.close()


def test_the_uri_is_not_in_argv_or_env() -> None:
    uri = "https://user:s3cret-token@mlflow.example"
    process = MlflowProcess(uri)
    try:
        assert process.proc is not None
        pid = process.proc.pid
        argv = Path(f"/proc/{pid}/cmdline").read_bytes()
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert b"s3cret-token" not in argv and b"s3cret-token" not in environ
    finally:
        process.close()
    assert not process.running


# ------------------------------------------------------------ through pytest


def test_session_with_a_hanging_process_warns_and_keeps_exit_code(
    pytester: pytest.Pytester, echo_workflow: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mlflow_process, "TIMEOUT_S", 2.0)
    monkeypatch.setattr(mlflow_process, "child_command", lambda: [sys.executable, "-c", "import time; time.sleep(600)"])
    echo_workflow("flow", SIMPLE)
    started = time.monotonic()
    result = pytester.runpytest("--promptab", "--promptab-mlflow-uri", f"sqlite:///{pytester.path / 'm.db'}")
    assert time.monotonic() - started < 30
    assert result.ret == 0
    out = result.stdout.str()
    assert out.count("MLflow logging failed") == 1
    result.stdout.fnmatch_lines(
        [f"*MLflow logging failed: the MLflow logging process did not answer within 2 s and was stopped. {WARNING_END}*"]
    )
    data = json.loads((pytester.path / ".promptab" / "results.json").read_text())
    assert "did not answer within 2 s" in data["mlflow_error"]


def test_the_process_starts_only_when_logging(
    pytester: pytest.Pytester, echo_workflow: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[str] = []

    class Recorder(MlflowProcess):
        def __init__(self, tracking_uri: str, **kwargs: Any) -> None:
            started.append(tracking_uri)
            super().__init__(tracking_uri, command=[sys.executable, "-c", "import sys; sys.exit(1)"])

    monkeypatch.setattr(mlflow_process, "MlflowProcess", Recorder)
    echo_workflow("flow", SIMPLE)
    uri = f"sqlite:///{pytester.path / 'm.db'}"
    pytester.runpytest("--promptab", "--promptab-mlflow-uri", uri, "--collect-only")
    pytester.runpytest("--promptab", "--promptab-no-mlflow")
    pytester.runpytest("-p", "no:promptab", "--co")
    assert started == []
    result = pytester.runpytest("--promptab", "--promptab-mlflow-uri", uri)
    assert started == [uri]
    result.stdout.fnmatch_lines(["*MLflow logging failed: the MLflow logging process ended (exit code 1) without an answer*"])


# ------------------------------------------------------------ no orphans


WAITING_PROVIDER = """
import os, pathlib, time
def generate(request):
    pathlib.Path("started").touch()
    while not pathlib.Path("go").exists():
        time.sleep(0.05)
    return "yes"
"""


def _marked_pids(mark: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if f"PROMPTAB_TEST_MARK={mark}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                cmdline = (entry / "cmdline").read_bytes()
                if b"pytest_promptab.tracking.child" in cmdline:
                    pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _wait_for(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
@pytest.mark.parametrize("how", ["ctrl-c", "sigkill", "sigterm"])
def test_no_logging_process_outlives_pytest(pytester: pytest.Pytester, echo_workflow: Any, how: str) -> None:
    pytester.makepyfile(waiting=textwrap.dedent(WAITING_PROVIDER))
    echo_workflow("flow", SIMPLE.replace("echo_provider.py:echo", "waiting.py:generate"))
    mark = uuid.uuid4().hex
    env = {**os.environ, "PROMPTAB_TEST_MARK": mark}
    env.pop("PYTEST_ADDOPTS", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "--promptab", "-p", "no:cacheprovider", "--promptab-concurrency", "1",
         "--promptab-mlflow-uri", f"sqlite:///{pytester.path / 'm.db'}"],
        cwd=pytester.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        assert _wait_for(lambda: (pytester.path / "started").exists(), 60), "the session never started its runs"
        assert _wait_for(lambda: _marked_pids(mark), 30), "no logging process was started"
        signum = {"ctrl-c": signal.SIGINT, "sigkill": signal.SIGKILL, "sigterm": signal.SIGTERM}[how]
        os.kill(proc.pid, signum)
        (pytester.path / "go").touch()  # let the provider's thread finish
        proc.communicate(timeout=180)
        if how == "ctrl-c":  # pytest stopped it on its way out
            assert proc.returncode == pytest.ExitCode.INTERRUPTED
            assert not _marked_pids(mark), "the logging process outlived pytest"
        # killed pytest: its logging process sees its stdin close and exits by itself
        assert _wait_for(lambda: not _marked_pids(mark), 60), f"orphans: {_marked_pids(mark)}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in _marked_pids(mark):
            os.kill(pid, signal.SIGKILL)
