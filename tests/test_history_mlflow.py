"""``mlflow:`` references (issue 13), end to end against the real sqlite
store: a session logs to MLflow, a later one is held against its parent run
(``mlflow:<run id>``, read back through MlflowClient) or against the latest
accepted run from a branch (``mlflow:branch=<name>``); bad references exit 4
with one line. The console script reads the same references."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_history import BROKEN, GOOD, REGRESSION, flow


def _uri(pytester: pytest.Pytester) -> str:
    return f"sqlite:///{pytester.path / 'mlflow.db'}"


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("--promptab", "--promptab-mlflow-uri", _uri(pytester), "-p", "no:cacheprovider",
                              "--promptab-mlflow-traces", "0", "--promptab-no-history", "-rfEs", *args)


def _parents(pytester: pytest.Pytester) -> list:  # type: ignore[type-arg]
    """The promptab parent runs in the store, newest first, read with MlflowClient."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(_uri(pytester))
    exp = client.get_experiment_by_name("flow")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"])
    return [r for r in runs if "mlflow.parentRunId" not in r.data.tags]


def _children(pytester: pytest.Pytester, parent: str) -> list:  # type: ignore[type-arg]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(_uri(pytester))
    exp = client.get_experiment_by_name("flow")
    return [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("mlflow.parentRunId") == parent]


def _branch(pytester: pytest.Pytester, name: str) -> None:
    """Put the pytester folder on git branch ``name`` (an unborn branch is enough)."""
    if not (pytester.path / ".git").exists():
        subprocess.run(["git", "init", "-q", "-b", name, str(pytester.path)], check=True)
    subprocess.run(["git", "-C", str(pytester.path), "symbolic-ref", "HEAD", f"refs/heads/{name}"], check=True)


def test_compare_to_an_mlflow_run_blocks_a_broken_prompt(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow("flow", flow(GOOD, REGRESSION))
    first = run(pytester)
    assert first.ret == 0, first.stdout.str()
    [parent] = _parents(pytester)
    tags = parent.data.tags
    assert tags["promptab.nodeid"] == "flow.yaml::ab"
    assert tags["promptab.accepted"] == "true" and tags["promptab.deploy_candidate"] == "baseline"
    run_id = parent.info.run_id

    echo_workflow("flow", flow(BROKEN, REGRESSION))
    second = run(pytester, f"--promptab-compare-to=mlflow:{run_id}")
    assert second.ret == 10, second.stdout.str()
    out = second.stdout.str()
    assert f"vs reference mlflow:{run_id}" in out.replace("\n    ", " ")
    second.stdout.fnmatch_lines([
        "*prompts changed*",
        "*cases worse: c: 100% -> 0%, d: 100% -> 0%",
        "FAILED flow.yaml::ab::regression?baseline:pass_rate:0.05? - regression: *",
    ])
    # the blocked session is logged, but not accepted
    newest = _parents(pytester)[0]
    assert newest.info.run_id != run_id and newest.data.tags["promptab.accepted"] == "false"

    # a variant's child run stands for its A/B test's parent run; the ini names it too
    [child] = _children(pytester, run_id)
    pytester.makeini(f"[pytest]\npromptab_compare_to = mlflow:{child.info.run_id}\n")
    third = run(pytester)
    assert third.ret == 10
    assert f"vs reference mlflow:{run_id}" in third.stdout.str().replace("\n    ", " ")


def test_compare_to_a_branch_takes_its_latest_accepted_run(pytester: pytest.Pytester, echo_workflow) -> None:
    _branch(pytester, "main")
    echo_workflow("flow", flow(GOOD, REGRESSION))
    assert run(pytester).ret == 0
    [accepted_main] = _parents(pytester)
    echo_workflow("flow", flow(BROKEN, REGRESSION))
    assert run(pytester, "--promptab-no-mlflow").ret == 0  # no reference yet: nothing compared, not logged
    assert run(pytester, f"--promptab-compare-to=mlflow:{accepted_main.info.run_id}").ret == 10  # blocked on main
    _branch(pytester, "feature")
    assert run(pytester).ret == 0  # the broken prompt, accepted on feature (no reference: nothing compared)
    assert [p.data.tags.get("mlflow.source.git.branch") for p in _parents(pytester)] == ["feature", "main", "main"]

    # on a pull request: held against main's latest *accepted* run, not the blocked one nor feature's
    result = run(pytester, "--promptab-compare-to", "mlflow:branch=main")
    assert result.ret == 10, result.stdout.str()
    assert f"vs reference mlflow:{accepted_main.info.run_id} (main@" in result.stdout.str().replace("\n    ", " ")
    result.stdout.fnmatch_lines(["*cases worse: c: 100% -> 0%, d: 100% -> 0%"])
    # against feature's own: the same prompts, no regression
    same = run(pytester, "--promptab-compare-to", "mlflow:branch=feature")
    assert same.ret == 0, same.stdout.str()
    same.stdout.fnmatch_lines(["*same prompts, settings and model*"])


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("mlflow:0123456789abcdef0123456789abcdef", "*no MLflow run '0123456789abcdef0123456789abcdef' in MLflow at*"),
        ("mlflow:branch=nowhere", "*no accepted MLflow run from branch 'nowhere'*no promptab A/B test run*"),
        ("mlflow:", "*not an MLflow reference: expected mlflow:<run id> or mlflow:branch=<name>*"),
        ("mlflow:branch=", "*no branch name after 'branch='*"),
    ],
)
def test_bad_mlflow_references_exit_4_with_one_line(pytester: pytest.Pytester, echo_workflow, ref: str,
                                                    message: str) -> None:
    echo_workflow("flow", flow(GOOD))
    assert run(pytester).ret == 0  # the store exists
    result = run(pytester, f"--promptab-compare-to={ref}")
    assert result.ret == 4
    result.stderr.fnmatch_lines([f"ERROR: promptab: --promptab-compare-to {ref}: {message.lstrip('*')}"])
    assert "Traceback" not in result.stderr.str() and len(result.stderr.str().strip().splitlines()) == 1


def test_a_deleted_run_is_refused_with_one_line(pytester: pytest.Pytester, echo_workflow) -> None:
    from mlflow.tracking import MlflowClient

    echo_workflow("flow", flow(GOOD))
    assert run(pytester).ret == 0
    parent = _parents(pytester)[0].info.run_id
    MlflowClient(_uri(pytester)).delete_run(parent)
    result = run(pytester, f"--promptab-compare-to=mlflow:{parent}")
    assert result.ret == 4
    result.stderr.fnmatch_lines([f"ERROR: promptab: --promptab-compare-to mlflow:{parent}: MLflow run {parent!r} "
                                 "is deleted: restore it (mlflow runs restore*"])
    assert "Traceback" not in result.stderr.str()


def test_missing_or_unreachable_store_exits_4(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow("flow", flow(GOOD))
    result = run(pytester, "--promptab-compare-to=mlflow:branch=main")  # nothing was ever logged here
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*no MLflow store at *mlflow.db (nothing was logged there)*"])
    assert not (pytester.path / "mlflow.db").exists()  # reading never creates a store
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = pytester.runpytest("--promptab", "--promptab-no-mlflow", f"--promptab-mlflow-uri=http://127.0.0.1:{port}",
                              "--promptab-compare-to=mlflow:abc123")
    assert down.ret == 4
    down.stderr.fnmatch_lines([f"*MLflow at http://127.0.0.1:{port} is not reachable*"])
    assert "Traceback" not in down.stderr.str()


def test_console_script_compares_and_applies_mlflow_sessions(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow("flow", flow(GOOD))
    assert run(pytester).ret == 0
    [old] = _parents(pytester)
    echo_workflow("flow", flow(BROKEN))
    assert run(pytester, "--promptab-json=new.json").ret == 0
    cli = [sys.executable, "-m", "pytest_promptab.cli"]
    kw = {"cwd": pytester.path, "capture_output": True, "text": True, "check": False}
    compared = subprocess.run([*cli, "compare", f"mlflow:{old.info.run_id}", "new.json"], **kw)  # type: ignore[call-overload]
    assert compared.returncode == 1, compared.stderr
    assert f"vs reference mlflow:{old.info.run_id}" in compared.stdout.replace("\n    ", " ")
    assert "cases worse: c: 100% -> 0%, d: 100% -> 0%" in compared.stdout
    unknown = subprocess.run([*cli, "compare", "mlflow:nope", "new.json"], **kw)  # type: ignore[call-overload]
    assert unknown.returncode == 4 and "no MLflow run 'nope'" in unknown.stderr and "Traceback" not in unknown.stderr
    applied = subprocess.run([*cli, "apply", f"mlflow:{old.info.run_id}", "--dry-run"], **kw)  # type: ignore[call-overload]
    assert applied.returncode == 0, applied.stderr
    assert f"session mlflow:{old.info.run_id}" in applied.stdout and "flow.yaml::ab:" in applied.stdout
    assert Path(pytester.path / "flow.yaml").read_text() == flow(BROKEN).lstrip()


def test_the_reference_deploy_candidate_is_the_applied_winner(pytester: pytest.Pytester, echo_workflow) -> None:
    from tests.test_history_winner import FLOW

    path = echo_workflow("flow", FLOW.replace("PROMPT", "{{ bad }}").split("  regression:")[0])  # no regression gate
    first = run(pytester, "--promptab-apply-best")
    assert first.ret == 0, first.stdout.str()
    assert "{{ alt }}" in path.read_text().split("variants:")[0]  # 'other' won and was applied
    [parent] = _parents(pytester)
    assert parent.data.tags["promptab.deploy_candidate"] == "other" and parent.data.tags["promptab.accepted"] == "true"

    second = run(pytester, f"--promptab-compare-to=mlflow:{parent.info.run_id}")
    assert second.ret == 0, second.stdout.str()
    text = " ".join(second.stdout.str().split())
    assert f"vs reference mlflow:{parent.info.run_id}" in text
    assert "(other -> baseline): same prompts, settings and model" in text


def test_runs_that_are_no_promptab_session_are_refused(tmp_path: Path) -> None:
    """Read with the resolver directly: a foreign run, and a parent whose
    results.json is another session's."""
    import json

    from mlflow.tracking import MlflowClient

    from pytest_promptab.errors import PromptabError
    from pytest_promptab.references import Reference

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = MlflowClient(uri)
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    exp = SqlAlchemyStore(uri, (tmp_path / "art").as_uri()).create_experiment("e")
    foreign = client.create_run(exp).info.run_id
    stale = client.create_run(exp, tags={"promptab.nodeid": "f.yaml::ab", "promptab.file_sha256": "a" * 64}).info.run_id
    (tmp_path / "results.json").write_text(json.dumps({"promptab_version": "0.1.0", "abtests": [
        {"nodeid": "f.yaml::ab", "file_sha256": "b" * 64}]}))
    client.log_artifact(stale, str(tmp_path / "results.json"))
    with pytest.raises(PromptabError, match="is not a promptab A/B test run"):
        Reference(f"mlflow:{foreign}", tracking_uri=uri).check()
    with pytest.raises(PromptabError, match="is not the session of its A/B test f.yaml::ab"):
        Reference(f"mlflow:{stale}", tracking_uri=uri).check()


def test_under_xdist_the_controller_reads_the_mlflow_reference(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow("flow", flow(GOOD, REGRESSION))
    assert run(pytester).ret == 0
    [parent] = _parents(pytester)
    echo_workflow("flow", flow(BROKEN, REGRESSION))
    result = run(pytester, "-n", "2", "--promptab-no-mlflow", f"--promptab-compare-to=mlflow:{parent.info.run_id}")
    assert result.ret == 10, result.stdout.str()
    result.stdout.fnmatch_lines(["*cases worse: c: 100% -> 0%, d: 100% -> 0%"])
