"""The README's GitHub Actions recipe (issue 13), run locally: its YAML holds
together (the artifact main uploads is the one pull requests download, where
the script looks for it), and its ``run:`` script, step by step, on main (no
reference: the regression items are skipped), then on a pull request that
breaks a prompt (held against main's results: blocked, the cases named) and
one that does not (passes)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from tests.test_history import BROKEN, GOOD, REGRESSION, flow


def recipe() -> dict[str, Any]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### CI recipe (GitHub Actions)", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    loaded = yaml.safe_load(block)
    assert isinstance(loaded, dict)
    loaded["_first_line"] = block.splitlines()[0]
    return loaded


def _steps() -> list[dict[str, Any]]:
    return list(recipe()["jobs"]["promptab"]["steps"])


def test_the_recipe_holds_together() -> None:
    workflow = recipe()
    steps = _steps()
    assert workflow["permissions"]["actions"] == "read"
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert on["push"]["branches"] == ["main"] and "pull_request" in on
    [download] = [s for s in steps if "action-download-artifact" in s.get("uses", "")]
    uploads = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact")]
    [main_upload] = [s for s in uploads if "push" in s["if"]]
    assert "pull_request" in download["if"] and "success()" in main_upload["if"]
    assert download["with"]["name"] == main_upload["with"]["name"]  # what main keeps is what a PR fetches
    assert workflow["_first_line"] == f"# .github/workflows/{download['with']['workflow']}"
    assert download["with"]["branch"] == "main" and download["with"]["workflow_conclusion"] == "success"
    assert download["with"]["if_no_artifact_found"] == "warn"  # the first pull request has no reference
    assert main_upload["with"]["path"] == ".promptab/results.json"
    script = next(s["run"] for s in steps if s.get("name") == "run the prompt tests")
    assert f"{download['with']['path']}/results.json" in script


def _run_script(folder: Path) -> subprocess.CompletedProcess[str]:
    """The recipe's test step, as GitHub's bash runs it (``pytest``: this interpreter's)."""
    script = next(s["run"] for s in _steps() if s.get("name") == "run the prompt tests")
    prelude = f'set -eo pipefail\npytest() {{ "{sys.executable}" -m pytest -p no:cacheprovider "$@"; }}\n'
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(["bash", "-c", prelude + script], cwd=folder, env=env, capture_output=True, text=True,
                          check=False, timeout=300)


def test_the_recipe_saves_on_main_and_blocks_a_pull_request(pytester: pytest.Pytester, echo_workflow) -> None:
    folder = pytester.path
    pytester.makeini("[pytest]\n")
    echo_workflow("flow", flow(GOOD, REGRESSION))
    main = _run_script(folder)  # a push to main: no reference/ yet
    assert main.returncode == 0, main.stdout + main.stderr
    assert "vs reference: nothing to compare" in main.stdout and "FAILED" not in main.stdout
    assert "2 skipped" in main.stdout  # the file's regression item and the --promptab-compare-fail one
    artifact = pytester.mkdir("artifact")
    shutil.copy(folder / ".promptab" / "results.json", artifact / "results.json")  # upload-artifact

    def pull_request(prompt: str) -> subprocess.CompletedProcess[str]:
        shutil.rmtree(folder / ".promptab")  # a fresh checkout
        shutil.rmtree(folder / "reference", ignore_errors=True)
        (folder / "reference").mkdir()
        shutil.copy(artifact / "results.json", folder / "reference" / "results.json")  # download-artifact
        echo_workflow("flow", flow(prompt, REGRESSION))
        return _run_script(folder)

    broken = pull_request(BROKEN)
    assert broken.returncode == 10, broken.stdout + broken.stderr
    out = broken.stdout
    assert "vs reference reference/results.json" in " ".join(out.split())
    assert "cases worse: c: 100% -> 0%, d: 100% -> 0%" in out
    assert "FAILED flow.yaml::ab::regression[baseline:pass_rate:0.05]" in out  # the --promptab-compare-fail gate too
    assert "DEPLOY BLOCKED" in out

    fine = pull_request(GOOD)
    assert fine.returncode == 0, fine.stdout + fine.stderr
    assert "same prompts, settings and model" in " ".join(fine.stdout.split())
