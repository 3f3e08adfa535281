"""What the configurable-agents tests share: a promptab run with MLflow off,
and the assertion that a file's mistake is a located error found before any
call."""

from __future__ import annotations

import pytest

from tests.fake_openai import FakeOpenAI

QUIET = ("-p", "no:hypothesispytest", "-p", "no:benchmark")


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*QUIET, "--promptab", "--promptab-no-mlflow", *args)


def assert_located_error(pytester: pytest.Pytester, fake_openai: FakeOpenAI, text: str, message: str,
                         needle: str) -> None:
    """``text`` as ``wf.yaml`` fails with ``message`` at the line holding
    ``needle`` (the line to fix), with no traceback and no provider call."""
    pytester.makefile(".yaml", wf=text)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if needle in ln)
    result = run(pytester)
    assert result.ret != 0
    out = result.stdout.str()
    assert message in out, out
    assert f"wf.yaml:{line}:" in out, out
    assert "Traceback" not in out
    assert not fake_openai.completions
