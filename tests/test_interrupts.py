"""Interrupts and faults at session end, through real pytest processes: a
SIGTERM mid-run keeps the finished runs (the journal), a results file that
cannot be written costs a warning (not the table, the gates or the exit
code), a second Ctrl-C while the statistics load keeps the runs, and Ctrl-C
while waiting for MLflow keeps everything and exits 2."""

from __future__ import annotations

import calendar
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.test_end_to_end import NO_MLFLOW, SIMPLE

# the echo provider, but run 2 of case "bad" of variant "loud" (the 8th and
# last run in report order) waits until the file "go" exists
LATE_SLEEPER = '''
import pathlib, time

def generate(request):
    text = request.prompt.strip().splitlines()[-1]
    if text == "NO" and request.run == 2:
        pathlib.Path("sleeping").touch()
        deadline = time.monotonic() + 120
        while not pathlib.Path("go").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    return text
'''

RUN_KEYS = ["file", "ab_test", "variant", "case", "run", "status", "metrics", "checks", "outputs", "error",
            "error_node", "extra", "file_sha256"]  # fmt: skip


def _wait_for(condition: Any, timeout: float, proc: subprocess.Popen[Any] | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if proc is not None and proc.poll() is not None:
            return bool(condition())
        time.sleep(0.05)
    return False


def _journal_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [line for line in text.split("\n") if line]


def _start(pytester: pytest.Pytester, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "--promptab", "-p", "no:cacheprovider", "-p", "no:randomly",
         "--promptab-concurrency", "1", *args],
        cwd=pytester.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _finish(proc: subprocess.Popen[str], timeout: float = 120) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return out


@pytest.fixture
def late_sleeper(pytester: pytest.Pytester, echo_workflow: Any) -> Path:
    pytester.makepyfile(sleeper=textwrap.dedent(LATE_SLEEPER))
    return echo_workflow("flow", SIMPLE.replace("echo_provider.py:echo", "sleeper.py:generate"))


# ------------------------------------------------------------ 13. SIGTERM mid-run


def test_sigterm_mid_run_keeps_the_finished_runs_in_the_journal(pytester: pytest.Pytester, late_sleeper: Path) -> None:
    journal = pytester.path / ".promptab" / "runs.jsonl"
    journal.parent.mkdir()
    journal.write_text('{"file":"an older session"}\n')  # truncated at session start
    started = time.time()
    proc = _start(pytester, NO_MLFLOW)
    try:
        assert _wait_for(lambda: (pytester.path / "sleeping").exists(), 60, proc), "the late run never started"
        # the 7 runs before the sleeping one have reported: the journal has them
        assert _wait_for(lambda: len(_journal_lines(journal)) == 1 + 7, 30, proc), _journal_lines(journal)
        proc.send_signal(signal.SIGTERM)
        out = _finish(proc)
    finally:
        (pytester.path / "go").touch()
    assert proc.returncode == -signal.SIGTERM, out  # killed: no session end ran
    assert not (pytester.path / ".promptab" / "results.json").exists()
    header, *runs = [json.loads(line) for line in _journal_lines(journal)]
    assert header["promptab_journal"] == 1 and header["promptab_version"]
    assert header["pid"] == proc.pid
    assert int(started) - 1 <= calendar.timegm(time.strptime(header["started"], "%Y-%m-%dT%H:%M:%SZ")) <= time.time()
    assert [list(run) for run in runs] == [RUN_KEYS] * 7
    assert [(r["variant"], r["case"], r["run"], r["status"]) for r in runs] == [
        ("baseline", "good", 1, "passed"), ("baseline", "good", 2, "passed"),
        ("baseline", "bad", 1, "check_failed"), ("baseline", "bad", 2, "check_failed"),
        ("loud", "good", 1, "check_failed"), ("loud", "good", 2, "check_failed"),  # "YES"
        ("loud", "bad", 1, "check_failed"),
    ]  # fmt: skip
    assert runs[0]["file"] == "flow.yaml" and runs[0]["outputs"] == {"answer": "yes"}


def test_the_journal_has_the_runs_of_results_json(pytester: pytest.Pytester, echo_workflow: Any) -> None:
    """A session that ends normally: the journal's run lines (in the order
    the runs reported) are the results file's runs, text for text."""
    echo_workflow("flow", SIMPLE)
    result = pytester.runpytest("--promptab", NO_MLFLOW)
    assert result.ret == 0
    lines = _journal_lines(pytester.path / ".promptab" / "runs.jsonl")
    results = (pytester.path / ".promptab" / "results.json").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 + 8
    assert json.loads(lines[0])["promptab_journal"] == 1
    assert sorted(lines[1:]) == sorted(line.rstrip(",") for line in results[1:9])


def test_no_journal_without_runs(pytester: pytest.Pytester, echo_workflow: Any) -> None:
    echo_workflow("flow", SIMPLE)
    pytester.makepyfile(test_plain="def test_one():\n    pass\n")
    assert pytester.runpytest("--promptab", NO_MLFLOW, "--collect-only").ret == 0
    assert pytester.runpytest("--promptab", NO_MLFLOW, "test_plain.py").ret == 0
    assert not (pytester.path / ".promptab").exists()


# ------------------------------------------------------------ 10. results.json that cannot be written

BLOCKING_GATE = SIMPLE + "  gates:\n    - {metric: pass_rate, min: 0.9, action: BLOCK_DEPLOY}\n"


@pytest.mark.parametrize("where", ["under a file", "a folder"])
def test_results_file_that_cannot_be_written_costs_a_warning_not_the_session(
    pytester: pytest.Pytester, echo_workflow: Any, where: str
) -> None:
    echo_workflow("flow", BLOCKING_GATE)
    (pytester.path / "out").write_text("a file, not a folder\n")
    (pytester.path / "folder").mkdir()
    target = "out/results.json" if where == "under a file" else "folder"
    mlflow = ["--promptab-mlflow-uri", f"sqlite:///{pytester.path / 'm.db'}"] if where == "under a file" else [NO_MLFLOW]
    result = pytester.runpytest("--promptab", "--promptab-json", target, *mlflow)
    out = result.stdout.str()
    assert "INTERNALERROR" not in out
    assert result.ret == 10  # the session's own exit code: its BLOCK_DEPLOY gate failed
    assert out.count(f"PromptabWarning: the results file {target} cannot be written (") == 1
    result.stdout.fnmatch_lines(
        [
            "*promptab summary*",
            "flow.yaml::ab  (workflow 'echo-flow'*",
            "gates violated:",
            f"results: NOT written to {target} (*Error: *)",
            "DEPLOY BLOCKED: a BLOCK_DEPLOY gate failed (exit code 10)",
            "FAILED flow.yaml::ab::gate?baseline:pass_rate>=0.9?*",
        ]
    )
    if mlflow != [NO_MLFLOW]:  # logged all the same
        result.stdout.fnmatch_lines(["MLflow: sqlite:///*(experiment echo-flow)*"])
    assert (pytester.path / "out").read_text() == "a file, not a folder\n"
    assert list((pytester.path / "folder").iterdir()) == []
    if where == "a folder":  # the journal beside it has the runs
        assert len(_journal_lines(pytester.path / "runs.jsonl")) == 1 + 8
    else:
        assert "PromptabWarning: the journal of finished runs out/runs.jsonl cannot be written" in out


# ------------------------------------------------------------ 12. a second Ctrl-C


SECOND_CTRL_C = '''
import os, pathlib, signal, sys

SLOW = ("numpy", "scipy", "pytest_promptab.analysis.summarize", "pytest_promptab.analysis.stats")


class SecondCtrlC:
    """After the first Ctrl-C, the first slow import to start gets a second Ctrl-C."""

    def find_spec(self, name, path=None, target=None):
        if name in SLOW:
            sys.meta_path.remove(self)
            pathlib.Path("second-ctrl-c").write_text(name)
            os.kill(os.getpid(), signal.SIGINT)
        return None


def pytest_keyboard_interrupt(excinfo):
    sys.meta_path.insert(0, SecondCtrlC())
'''


def test_a_second_ctrl_c_while_the_statistics_load_keeps_the_runs(pytester: pytest.Pytester, late_sleeper: Path) -> None:
    pytester.makeconftest(SECOND_CTRL_C)
    journal = pytester.path / ".promptab" / "runs.jsonl"
    proc = _start(pytester, NO_MLFLOW)
    try:
        assert _wait_for(lambda: (pytester.path / "sleeping").exists(), 60, proc), "the late run never started"
        assert _wait_for(lambda: len(_journal_lines(journal)) == 1 + 7, 30, proc), _journal_lines(journal)
        proc.send_signal(signal.SIGINT)
        out = _finish(proc)
    finally:
        (pytester.path / "go").touch()
    assert (pytester.path / "second-ctrl-c").exists(), f"no slow import after the first Ctrl-C:\n{out}"
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
    assert "Traceback" not in out
    assert "promptab: interrupted again before the statistics: the 7 finished runs are in .promptab/results.json" in out
    data = json.loads((pytester.path / ".promptab" / "results.json").read_text(encoding="utf-8"))
    assert data["interrupted"] is True
    (ab,) = data["abtests"]
    assert (ab["file"], ab["name"], ab["baseline"], ab["variants"], ab["winner"]) == ("flow.yaml", "ab", "baseline", [], None)
    assert len(ab["runs"]) == 7 and ab["complete"] is False
    assert sorted(json.dumps(run) for run in ab["runs"]) == sorted(
        json.dumps(json.loads(line)) for line in _journal_lines(journal)[1:]
    )


# ------------------------------------------------------------ 11. Ctrl-C while waiting for MLflow

HUNG_LOGGER = '''
import sys
from pytest_promptab.tracking import process

# the MLflow logging process hangs: it never answers
process.child_command = lambda: [sys.executable, "-c", "import time; time.sleep(600)", "{mark}"]
'''


def _pids_with(mark: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and mark.encode() in (entry / "cmdline").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
def test_ctrl_c_while_waiting_for_mlflow_keeps_the_results_prints_the_table_and_exits_2(
    pytester: pytest.Pytester, echo_workflow: Any
) -> None:
    mark = f"promptab-hung-logger-{os.getpid()}-{time.monotonic_ns()}"
    pytester.makeconftest(HUNG_LOGGER.replace("{mark}", mark))
    echo_workflow("flow", BLOCKING_GATE)
    proc = _start(pytester, "--promptab-mlflow-uri", f"sqlite:///{pytester.path / 'm.db'}")
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        assert _wait_for(lambda: any("logging to MLflow..." in line for line in lines), 120, proc), "".join(lines)
        assert _pids_with(mark), "the hung logging process is not running"
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        reader.join(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in _pids_with(mark):
            os.kill(pid, signal.SIGKILL)
    out = "".join(lines)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
    assert "Traceback" not in out and "KeyboardInterrupt" not in out
    assert "promptab: logging to MLflow... (Ctrl-C stops waiting)" in out
    for expected in [
        "promptab: Ctrl-C: not logged to MLflow. Nothing is lost: every result is in .promptab/results.json",
        "flow.yaml::ab  (workflow 'echo-flow', objective: pass_rate max)",  # the table
        "results: .promptab/results.json",
        "MLflow: not logged (Ctrl-C stopped the wait for MLflow); the results file has everything",
        "DEPLOY BLOCKED: a BLOCK_DEPLOY gate failed (exit code 2, not 10: interrupted while logging to MLflow)",
    ]:
        assert expected + "\n" in out, f"{expected!r} not in:\n{out}"
    data = json.loads((pytester.path / ".promptab" / "results.json").read_text(encoding="utf-8"))
    (ab,) = data["abtests"]
    assert len(ab["runs"]) == 8 and ab["complete"] is True and data["interrupted"] is False
    assert data["mlflow_error"] == "Ctrl-C stopped the wait for MLflow"
    assert not _pids_with(mark), "the hung logging process outlived the wait"
