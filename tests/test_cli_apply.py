"""``promptab apply`` (console script, run as a subprocess): a session run
without apply-best, then its winner written later: the same bytes that
``--promptab-apply-best`` writes, "already applied" the second time, a file
edited since refused, ``--dry-run`` changing nothing, bad arguments exit 2."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NODEID = "examples/support.yaml::reply-tone"


def _apply(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "pytest_promptab.cli", "apply", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def session(pytester: pytest.Pytester, examples_dir: Path) -> Path:
    """examples/ run once without apply-best; returns the workflow file."""
    result = pytester.runpytest("--promptab", "--promptab-no-mlflow", "examples/")
    assert result.ret == 0, result.stdout.str()
    assert list((pytester.path / ".promptab" / "history").glob("*.json"))
    return examples_dir / "support.yaml"


def test_apply_writes_what_apply_best_writes(pytester: pytest.Pytester, session: Path) -> None:
    before = session.read_bytes()
    # what --promptab-apply-best writes, on a copy of the project
    copy = pytester.path.parent / (pytester.path.name + "-copy")
    shutil.copytree(pytester.path / "examples", copy / "examples")
    best = pytester.runpytest("--promptab", "--promptab-no-mlflow", "--promptab-apply-best",
                              f"--rootdir={copy}", str(copy / "examples"))
    assert best.ret == 0, best.stdout.str()
    expected = (copy / "examples" / "support.yaml").read_bytes()
    assert expected != before

    done = _apply(pytester.path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{NODEID}: applied 'empathetic' (pass_rate +0.22, p=0.016)" in done.stdout
    assert session.read_bytes() == expected
    assert session.with_name("support.yaml.bak").read_bytes() == before

    again = _apply(pytester.path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{NODEID}: already applied 'empathetic'" in again.stdout
    assert session.read_bytes() == expected


def test_the_history_file_knows_the_bytes_applying_writes(pytester: pytest.Pytester, session: Path) -> None:
    (history,) = (pytester.path / ".promptab" / "history").glob("*.json")
    index = json.loads(history.read_text(encoding="utf-8"))["index"]
    entry = next(e for e in index if e["nodeid"] == NODEID)  # examples/ also holds a configurable-agents A/B test
    assert _apply(pytester.path).returncode == 0
    assert entry["applied_sha256"] == hashlib.sha256(session.read_bytes()).hexdigest()
    # edited elsewhere after applying: it still has the winner's prompts, but not those bytes
    session.write_bytes(session.read_bytes() + b"# edited by hand\n")
    result = _apply(pytester.path, str(history))
    assert result.returncode == 1
    assert f"{NODEID}: not applied: the file changed since that session ran" in result.stdout


def test_a_session_run_with_apply_best_is_already_applied(pytester: pytest.Pytester, examples_dir: Path) -> None:
    best = pytester.runpytest("--promptab", "--promptab-no-mlflow", "--promptab-apply-best", "examples/")
    assert best.ret == 0, best.stdout.str()
    after = (examples_dir / "support.yaml").read_bytes()
    result = _apply(pytester.path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{NODEID}: already applied 'empathetic'" in result.stdout
    assert (examples_dir / "support.yaml").read_bytes() == after


def test_apply_refuses_a_file_changed_since(pytester: pytest.Pytester, session: Path) -> None:
    edited = session.read_bytes() + b"# edited by hand\n"
    session.write_bytes(edited)
    result = _apply(pytester.path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{NODEID}: not applied: the file changed since that session ran" in result.stdout
    assert session.read_bytes() == edited and not session.with_name("support.yaml.bak").exists()


def test_apply_refuses_when_the_ab_test_is_gone(pytester: pytest.Pytester, session: Path) -> None:
    text = session.read_text(encoding="utf-8")
    assert "name: reply-tone" in text
    session.write_text(text.replace("name: reply-tone", "name: renamed"), encoding="utf-8")
    result = _apply(pytester.path)
    assert result.returncode == 1
    assert f"{NODEID}: not applied: the A/B test 'reply-tone' is not in the file any more" in result.stdout


def test_dry_run_prints_the_diff_and_changes_nothing(pytester: pytest.Pytester, session: Path) -> None:
    before = session.read_bytes()
    result = _apply(pytester.path, "--dry-run", "--ab-test", NODEID)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{NODEID}: would apply 'empathetic'" in result.stdout
    assert "--- a/examples/support.yaml\n+++ b/examples/support.yaml\n" in result.stdout
    assert "\n-    settings: {temperature: 0.7}\n" in result.stdout
    assert "\n+    settings: {temperature: 0.3}\n" in result.stdout
    assert session.read_bytes() == before and not session.with_name("support.yaml.bak").exists()


def test_apply_reads_a_results_file(pytester: pytest.Pytester, session: Path) -> None:
    result = _apply(pytester.path, ".promptab/results.json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{NODEID}: applied 'empathetic'" in result.stdout


def test_no_significant_winner_is_reported_and_refused_only_when_asked(
    pytester: pytest.Pytester, echo_workflow
) -> None:
    path = echo_workflow(
        "flow",
        """
        name: same
        provider: {type: python, callable: "echo_provider.py:echo"}
        nodes: [{id: a, prompt: "{{ line }}"}]
        cases: [{id: one, inputs: {line: "yes"}}, {id: two, inputs: {line: "no"}}]
        checks: [{type: equals, value: "yes"}]
        ab_test:
          name: ab
          runs: 2
          variants: [{name: same, prompts: {a: "{{ line }}"}}]
        """,
    )
    assert pytester.runpytest("--promptab", "--promptab-no-mlflow").ret in (0, 1)
    before = path.read_bytes()
    result = _apply(pytester.path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "flow.yaml::ab: not applied: no significant winner" in result.stdout, result.stdout
    asked = _apply(pytester.path, "--ab-test", "flow.yaml::ab")
    assert asked.returncode == 1
    assert "flow.yaml::ab: not applied: no significant winner" in asked.stdout
    assert path.read_bytes() == before and not (pytester.path / "flow.yaml.bak").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ab-test", "examples/nope.yaml::x"], "has no A/B test 'examples/nope.yaml::x'"),
        (["mlflow:0123abcd"], "SESSION mlflow:0123abcd: no MLflow store at"),
        (["missing.json"], "'missing.json' does not exist"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_arguments_exit_2(pytester: pytest.Pytester, session: Path, args: list[str], message: str) -> None:
    before = session.read_bytes()
    result = _apply(pytester.path, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert session.read_bytes() == before


def test_no_saved_session_exits_2(pytester: pytest.Pytester) -> None:
    result = _apply(pytester.path)
    assert result.returncode == 2
    assert "no saved session under" in result.stderr
