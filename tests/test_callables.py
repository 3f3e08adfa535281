"""``callable:`` files import their sibling modules (end-to-end, pytester)."""

from __future__ import annotations

import textwrap

import pytest

WORKFLOW = """
name: siblings
provider: {type: python, callable: "model.py:reply"}
nodes: [{id: a, prompt: "{{ text }}"}]
inputs: {text: hello}
checks:
  - {name: shouted, type: python, callable: "rules.py:shouted"}
ab_test: {name: t, runs: 2}
"""


def test_a_callable_file_imports_a_module_next_to_it(pytester: pytest.Pytester) -> None:
    flows = pytester.mkdir("flows")  # not the rootdir nor the current directory
    (flows / "flow.yaml").write_text(textwrap.dedent(WORKFLOW).lstrip())
    (flows / "shout.py").write_text("def shout(text):\n    return text.upper() + '!'\n")
    (flows / "model.py").write_text("from shout import shout\n\ndef reply(request):\n    return shout(request.prompt)\n")
    (flows / "rules.py").write_text("import shout\n\ndef shouted(output):\n    return output == shout.shout('hello')\n")
    result = pytester.runpytest("--promptab", "--promptab-no-mlflow", "flows/", "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=2)
    # the folder was importable only while the files loaded
    assert str(flows) not in __import__("sys").path
