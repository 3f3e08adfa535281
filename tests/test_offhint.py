"""Without --promptab, a session over promptab files says how to turn it on,
and stays cheap (no YAML parser imported)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_promptab.offhint import MAX_FILES, hint, looks_like_promptab

WORKFLOW = "name: w\nnodes: [{id: a, prompt: hi}]\nab_test: {name: t}\n"
HINT = "*promptab is off: flows/flow.yaml has an ab_test section and was not run; turn promptab on with --promptab*"


def _flows(pytester: pytest.Pytester) -> Path:
    flows = pytester.mkdir("flows")
    (flows / "flow.yaml").write_text(WORKFLOW)
    (flows / "chart.yaml").write_text("apiVersion: v2\nname: chart\nvalues:\n  ab_test_mode: off\n")
    return flows


def test_collecting_nothing_over_promptab_files_says_how_to_turn_it_on(pytester: pytest.Pytester) -> None:
    _flows(pytester)
    pytester.makeconftest(
        "import sys\n\ndef pytest_unconfigure(config):\n"
        "    print('yaml imported' if 'yaml' in sys.modules else 'no yaml import')\n"
    )
    result = pytester.runpytest_subprocess("flows/", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    result.stdout.fnmatch_lines([HINT + "promptab = true in the ini file"])
    assert "no yaml import" in result.stdout.str()


def test_hint_also_when_other_tests_ran_and_never_with_promptab_on(pytester: pytest.Pytester) -> None:
    flows = _flows(pytester)
    (flows / "test_unit.py").write_text("def test_ok():\n    pass\n")
    result = pytester.runpytest("flows/", "-p", "no:cacheprovider")
    assert result.ret == 0
    result.stdout.fnmatch_lines([HINT])
    on = pytester.runpytest("flows/", "--promptab", "--promptab-no-mlflow", "-p", "no:cacheprovider")
    assert "promptab is off" not in on.stdout.str()


def test_bare_pytest_that_ran_tests_stays_quiet(pytester: pytest.Pytester) -> None:
    """No paths given (testpaths, or the current folder) and tests ran: the
    workflow files may be test data, as this project's own tests/bad_inputs/."""
    (_flows(pytester) / "test_unit.py").write_text("def test_ok():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == 0
    assert "promptab is off" not in result.stdout.str()
    pytester.makeini("[pytest]\ntestpaths = flows\n")
    assert "promptab is off" not in pytester.runpytest("-p", "no:cacheprovider").stdout.str()
    (pytester.path / "flows" / "test_unit.py").unlink()  # nothing to collect: the line again
    pytester.runpytest("-p", "no:cacheprovider").stdout.fnmatch_lines([HINT])


def test_no_hint_without_promptab_files(pytester: pytest.Pytester) -> None:
    flows = pytester.mkdir("flows")
    (flows / "ci.yml").write_text("jobs:\n  test:\n    ab_test: not top-level\n")
    result = pytester.runpytest("flows/", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    assert "promptab is off" not in result.stdout.str()


def test_text_scan(tmp_path: Path) -> None:
    files = {
        "top.yaml": "# a workflow\nname: x\nab_test:\n  name: t\n",
        "agents.yaml": "schema_version: '1'\nflow: {}\nnodes: []\nconfig:\n  ab_test: {name: t}\n",
        "nested.yaml": "jobs:\n  ab_test: x\n",
        "mention.yaml": "description: uses ab_test: later\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert [n for n in files if looks_like_promptab(tmp_path / n)] == ["top.yaml", "agents.yaml"]
    assert not looks_like_promptab(tmp_path / "missing.yaml")
    many = [tmp_path / "nested.yaml"] * MAX_FILES + [tmp_path / "top.yaml"]
    assert hint(many) is None  # only the first MAX_FILES files are read
    assert hint([tmp_path / "top.yaml"], collected_nothing=False, paths_given=False) is None
    assert "2 files with an ab_test section" in (hint([tmp_path / "top.yaml", tmp_path / "agents.yaml"]) or "")
