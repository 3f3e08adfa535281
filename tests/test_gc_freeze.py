"""The collected tree is frozen for the collector during the test loop
(:mod:`pytest_promptab.gcfreeze`): an in-process session leaves nothing
frozen behind, the ``pytest`` command keeps it frozen to its exit, and the
tests' own garbage is still collected."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from tests.test_end_to_end import NO_MLFLOW, SIMPLE

PLAIN_TESTS = textwrap.dedent(
    """
    import gc


    class Loop:
        def __del__(self):
            with open("collected", "a") as out:
                out.write("a loop of the tests' garbage was collected\\n")


    def test_the_collected_tree_is_frozen_while_the_tests_run():
        assert gc.get_freeze_count() > 0


    def test_makes_cyclic_garbage():
        loop = Loop()
        loop.me = loop
    """
)

EXIT_PROBE = textwrap.dedent(
    """
    import atexit
    import gc


    def pytest_configure(config):
        atexit.register(lambda: open("frozen_at_exit", "w").write(str(gc.get_freeze_count())))
    """
)


def test_an_in_process_session_leaves_nothing_frozen(pytester: pytest.Pytester, echo_workflow: Any) -> None:
    echo_workflow("flow", SIMPLE)
    pytester.makepyfile(test_plain=PLAIN_TESTS)
    assert gc.get_freeze_count() == 0
    result = pytester.runpytest_inprocess("--promptab", NO_MLFLOW, "-p", "no:randomly")
    result.assert_outcomes(passed=4, xfailed=6)
    assert gc.get_freeze_count() == 0  # this process keeps collecting what the session made
    gc.collect()
    assert (pytester.path / "collected").read_text() == "a loop of the tests' garbage was collected\n"


def test_the_pytest_command_stays_frozen_to_its_exit_and_collects_the_tests_garbage(
    pytester: pytest.Pytester, echo_workflow: Any
) -> None:
    echo_workflow("flow", SIMPLE)
    pytester.makepyfile(test_plain=PLAIN_TESTS)
    pytester.makeconftest(EXIT_PROBE)
    env = {key: value for key, value in os.environ.items() if key != "PYTEST_ADDOPTS"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--promptab", NO_MLFLOW, "-p", "no:randomly", "-p", "no:cacheprovider"],
        cwd=pytester.path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert "4 passed" in proc.stdout and "6 xfailed" in proc.stdout, proc.stdout + proc.stderr
    assert int((pytester.path / "frozen_at_exit").read_text()) > 0
    assert (pytester.path / "collected").read_text() == "a loop of the tests' garbage was collected\n"
