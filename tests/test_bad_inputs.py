"""The corpus of broken workflow files in tests/bad_inputs/: each one gives a
clear error naming the file and line, with no traceback into the plugin, and
does not stop the other files from running."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import ECHO_PROVIDER

CORPUS = Path(__file__).parent / "bad_inputs"
FILES = sorted(CORPUS.glob("*.yaml"))
GOOD = """
name: good
provider: {type: python, callable: "echo_provider.py:echo"}
nodes: [{id: a, prompt: "yes"}]
checks: [{type: equals, value: "yes"}]
ab_test: {name: fine, runs: 2}
"""


def _expectation(path: Path) -> tuple[str, int, list[str]]:
    first = path.read_text().splitlines()[0]
    match = re.match(r"# (expect|expect-run): (\d+): (.*)", first)
    assert match, f"{path.name} lacks an '# expect: LINE: text|text' first line"
    return match.group(1), int(match.group(2)), match.group(3).split("|")


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_bad_file_reports_file_line_and_fix(pytester: pytest.Pytester, path: Path) -> None:
    pytester.makepyfile(echo_provider=ECHO_PROVIDER + "\n\ndef divide(output):\n    return 1 / 0\n")
    (pytester.path / "good.yaml").write_text(GOOD)
    bad_dir = pytester.path / "bad"
    bad_dir.mkdir()
    shutil.copy(path, bad_dir / path.name)
    kind, line, fragments = _expectation(path)
    result = pytester.runpytest(
        "--promptab", "--promptab-no-mlflow", "-p", "no:cacheprovider"
    )
    out = result.stdout.str()
    assert result.ret == 1, out
    # the good file still ran
    assert result.parseoutcomes()["passed"] == 2
    assert result.parseoutcomes()["failed"] == 1
    assert f"bad/{path.name}:{line}:" in out, out
    for fragment in fragments:
        assert fragment in out, f"{fragment!r} not in output:\n{out}"
    assert "Traceback" not in out
    assert "pytest_promptab/" not in out and "site-packages" not in out
    if kind == "expect":
        result.stdout.fnmatch_lines([f"FAILED bad/{path.name}::workflow*"])
    else:
        result.stdout.fnmatch_lines([f"FAILED bad/{path.name}::t::baseline?run1?*"])
