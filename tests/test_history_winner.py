"""A regressed challenger loses (issue 13, SPEC 7 and 12): a challenger that
is significantly better than today's baseline but regressed against the
reference is no winner, and apply-best never writes it."""

from __future__ import annotations

import pytest

from tests.test_history import run

# 8 cases x 4 runs. The reference passes everything with "{{ line }}"; today
# the baseline "{{ bad }}" fails everything and the challenger "{{ alt }}"
# fails g and h: better than today's baseline, worse than the reference.
CASES = "\n".join(
    f"  - {{id: {c}, inputs: {{line: 'yes', bad: 'no', alt: '{'no' if c in 'gh' else 'yes'}'}}}}" for c in "abcdefgh"
)
FLOW = f"""
name: flow
provider: {{type: python, callable: "echo_provider.py:echo", model: echo-1}}
nodes: [{{id: a, prompt: "PROMPT"}}]
cases:
{CASES}
checks: [{{type: equals, value: "yes"}}]
ab_test:
  name: ab
  runs: 4
  variants:
    - {{name: other, prompts: {{a: "{{{{ alt }}}}"}}}}
  regression:
    - {{metric: pass_rate, max_drop: 0.05, action: BLOCK_DEPLOY}}
"""


def test_a_regressed_challenger_is_never_the_winner(pytester: pytest.Pytester, echo_workflow) -> None:
    path = echo_workflow("flow", FLOW.replace("PROMPT", "{{ line }}"))
    first = run(pytester)
    assert first.ret == 0, first.stdout.str()

    echo_workflow("flow", FLOW.replace("PROMPT", "{{ bad }}"))
    before = path.read_bytes()
    second = run(pytester, "--promptab-apply-best", "-v")
    out = second.stdout.str()
    # 'other' beats today's baseline significantly, yet it regressed: it loses
    assert "other" in out and "significantly better" in out, out
    assert "regressed against the reference: other" in out.replace("\n  ", " ")
    second.stdout.fnmatch_lines([
        "*::regression?baseline:pass_rate:0.05? FAILED*",
        "*::regression?other:pass_rate:0.05? XFAIL*",
    ])
    assert "other loses and is never applied" in out
    assert path.read_bytes() == before and not path.with_suffix(".yaml.bak").exists()  # nothing applied
    assert second.ret == 10  # the deploy candidate (the baseline) regressed: blocked
