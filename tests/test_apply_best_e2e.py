"""--promptab-apply-best through pytest: the winner's prompts written into the
file (only those lines change), the backup, the decision line, refusals, and
the prompts registered in MLflow."""

from __future__ import annotations

import difflib
import json
from pathlib import Path

import pytest

from tests.mlflow_server import MlflowServer

EXPECTED_DIFF = """\
--- before
+++ after
@@ -27,5 +27,5 @@
     prompt: |
-      Write a reply to this {{ category }} email:
-      {{ email }}
-    settings: {temperature: 0.7}
+      Acknowledge the customer's frustration first, then answer this
+      {{ category }} email briefly: {{ email }}
+    settings: {temperature: 0.3}
 
"""


def _diff(before: str, after: str) -> str:
    return "".join(difflib.unified_diff(before.splitlines(True), after.splitlines(True), "before", "after", n=1))


def test_apply_best_rewrites_only_the_prompt_lines(pytester: pytest.Pytester, examples_dir: Path) -> None:
    path = examples_dir / "support.yaml"
    before = path.read_bytes()
    result = pytester.runpytest("--promptab", "--promptab-no-mlflow", "--promptab-apply-best", "examples/")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["apply-best: examples/support.yaml: applied 'empathetic' (pass_rate +0.22, p=0.016)"])
    assert _diff(before.decode(), path.read_text()) == EXPECTED_DIFF
    assert (examples_dir / "support.yaml.bak").read_bytes() == before
    # the deploy candidate is now the winner: its gates are the ones that count
    result.stdout.fnmatch_lines(["*promptab summary*"])
    after = path.read_bytes()
    again = pytester.runpytest("--promptab", "--promptab-no-mlflow", "--promptab-apply-best", "examples/")
    assert again.ret == 0
    again.stdout.fnmatch_lines(["apply-best: examples/support.yaml: not applied: no significant winner*"])
    assert path.read_bytes() == after


def test_apply_best_refuses_after_failed_runs(pytester: pytest.Pytester, echo_workflow) -> None:
    path = echo_workflow(
        "flow",
        """
        name: failing
        provider: {type: python, callable: "echo_provider.py:echo"}
        nodes: [{id: a, prompt: "{{ line }}"}]
        cases:
          - {id: ok, inputs: {line: "yes"}}
          - {id: broken, inputs: {line: "FAIL"}}
        checks: [{type: equals, value: "yes"}]
        ab_test:
          name: ab
          runs: 3
          variants: [{name: better, prompts: {a: "yes"}}]
        """,
    )
    before = path.read_bytes()
    result = pytester.runpytest("--promptab", "--promptab-no-mlflow", "--promptab-apply-best")
    assert result.ret == 1  # 3 of 6 baseline runs FAILED: above max_error_rate, so they fail the session
    result.stdout.fnmatch_lines(["apply-best: flow.yaml: not applied: *"])
    assert path.read_bytes() == before and not (pytester.path / "flow.yaml.bak").exists()


def test_applied_prompts_are_registered_in_mlflow(
    pytester: pytest.Pytester, examples_dir: Path, mlflow_server: MlflowServer
) -> None:
    import mlflow.tracking

    result = pytester.runpytest(
        "--promptab", "--promptab-apply-best", "examples/", "--promptab-mlflow-uri", mlflow_server.uri
    )
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*applied 'empathetic'*registered in MLflow as prompts:/*"])
    line = next(l for l in result.stdout.lines if "registered in MLflow as" in l and "support.yaml" in l)
    uris = line.split("registered in MLflow as ", 1)[1].split(", ")
    client = mlflow.tracking.MlflowClient(mlflow_server.uri)
    reply_uri = next(u for u in uris if u.split("/")[1].endswith(".reply"))
    name, version = reply_uri.removeprefix("prompts:/").split("/")
    prompt = client.get_prompt_version(name, version)
    assert prompt.template.startswith("Acknowledge the customer's frustration first")
    # only the node the winner changed is registered, with its settings as the model config
    assert len(uris) == 1, uris
    assert prompt.model_config["temperature"] == 0.3 and prompt.model_config["model_name"]
    # the alias points at it, and the version names the winning run
    assert client.get_prompt_version_by_alias(name, "promptab-best").version == int(version)
    experiment = client.get_experiment_by_name("support-reply")
    runs = client.search_runs([experiment.experiment_id], "tags.`promptab.applied` = 'true'")
    assert [r.data.tags["mlflow.runName"] for r in runs][:1] == ["empathetic"]
    assert prompt.tags["promptab.run_id"] == runs[0].info.run_id
    assert {"name": name, "version": version} in json.loads(runs[0].data.tags["mlflow.linkedPrompts"])


GATED = """
name: gated
provider: {{type: python, callable: "echo_provider.py:echo"}}
nodes: [{{id: a, prompt: {prompt}}}]
inputs: {{}}
checks: [{{type: equals, value: "yes"}}]
ab_test:
  name: ab
  runs: 8
  variants: [{{name: better, prompts: {{a: "yes"}}}}]
  gates: [{{metric: pass_rate, min: 0.9, action: BLOCK_DEPLOY}}]
"""
"""The baseline always fails its check, the challenger always passes."""


def test_refused_apply_leaves_the_baseline_as_deploy_candidate(pytester: pytest.Pytester, echo_workflow) -> None:
    """The winner's prompt sits behind a YAML anchor: apply-best refuses, so
    the baseline stays in the file and its BLOCK_DEPLOY violation still counts."""
    path = echo_workflow("flow", GATED.format(prompt='&shared "no"'))
    before = path.read_bytes()
    result = pytester.runpytest("--promptab", "--promptab-no-mlflow", "--promptab-apply-best")
    result.stdout.fnmatch_lines(["apply-best: flow.yaml: not applied: *anchor*"])
    assert path.read_bytes() == before
    result.stdout.fnmatch_lines(["FAILED flow.yaml::ab::gate?baseline:pass_rate>=0.9?*"])
    assert result.ret == 10


def test_applied_winner_is_the_deploy_candidate(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow("flow", GATED.format(prompt='"no"'))
    result = pytester.runpytest("--promptab", "--promptab-no-mlflow", "--promptab-apply-best", "-rx")
    result.stdout.fnmatch_lines(["apply-best: flow.yaml: applied 'better'*"])
    result.stdout.fnmatch_lines(["XFAIL flow.yaml::ab::gate?baseline:pass_rate>=0.9?*"])
    assert result.ret == 0


def test_xdist_apply_best_sees_a_file_changed_during_the_session(pytester: pytest.Pytester, echo_workflow) -> None:
    path = echo_workflow(
        "flow",
        """
        name: edited
        provider: {type: python, callable: "echo_provider.py:echo"}
        nodes: [{id: a, prompt: "no"}]
        inputs: {}
        checks: [{type: equals, value: "yes"}]
        ab_test:
          name: ab
          runs: 8
          variants: [{name: better, prompts: {a: "yes"}}]
        """,
    )
    pytester.makeconftest(
        f"""
        def pytest_promptab_run_finished(record):
            if record.variant == "better" and record.run == 8:
                with open({str(path)!r}, "a") as handle:
                    handle.write("# edited by hand during the session\\n")
        """
    )
    result = pytester.runpytest_subprocess("--promptab", "--promptab-no-mlflow", "--promptab-apply-best", "-n", "2")
    result.stdout.fnmatch_lines(["apply-best: flow.yaml: not applied: file changed since collection"])
    assert path.read_text().endswith("# edited by hand during the session\n")
    assert not (pytester.path / "flow.yaml.bak").exists()
