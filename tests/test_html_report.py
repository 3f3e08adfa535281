"""The HTML report (SPEC 13, issue 16): ``--promptab-html PATH`` end to end
(what a reviewer sees: the verdict, DEPLOY BLOCKED, gate outcomes, the
matrix, outputs shown as text, the prompt diff), nothing loaded from the
network, MLflow links, the page's size for a big session, and the page in a
real headless Chromium (skipped when it is not installed)."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pytest_promptab.analysis.summary import SessionSummary
from pytest_promptab.report.html import RUNS_PER_CELL, render_html, sized

EVIL = '<script>alert("pwned")</script>'

CASES = "\n".join(f"  - {{id: case-{i}, inputs: {{}}}}" for i in range(8))
EVIL_YAML = EVIL.replace('"', '\\"')
WORKFLOW = """
name: html-report
provider: {type: python, callable: "echo_provider.py:echo"}
nodes:
  - id: answer
    prompt: |
      Answer the question.
      no
cases:
CASES
checks: [{name: is-yes, type: equals, value: "yes"}]
ab_test:
  name: tone
  runs: 2
  variants:
    - {name: good, prompts: {answer: "Answer the question.\\nyes"}}
    - {name: evil, prompts: {answer: "Answer the question.\\nEVIL_YAML"}}
  gates:
    - {metric: pass_rate, min: 0.5, action: BLOCK_DEPLOY}
""".replace("CASES", CASES).replace("EVIL_YAML", EVIL_YAML)


@pytest.fixture
def report(pytester: pytest.Pytester, echo_workflow) -> tuple[pytest.RunResult, str]:
    echo_workflow("flow", WORKFLOW)
    result = pytester.runpytest("--promptab", "--promptab-no-mlflow", "--promptab-html", "out/report.html")
    page = pytester.path / "out" / "report.html"
    assert page.exists(), result.stdout.str()
    return result, page.read_text(encoding="utf-8")


def text_of(page: str) -> str:
    """The page's visible text, roughly: tags dropped, entities decoded, spaces collapsed."""
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.DOTALL)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def test_report_shows_the_verdict_gates_matrix_outputs_and_diff(report: tuple[pytest.RunResult, str]) -> None:
    result, page = report
    assert result.ret == 10  # the baseline, the deploy candidate, fails its BLOCK_DEPLOY gate
    result.stdout.fnmatch_lines(["HTML report: out*report.html"])
    text = text_of(page)
    assert "Winner: good (+100pp pass_rate over baseline, p=0.016 Holm)" in text
    assert "DEPLOY BLOCKED" in text
    assert "a BLOCK_DEPLOY gate failed: pass_rate>=0.5 (baseline)" in text
    # gates: one row per variant with its outcome
    assert re.search(r"pass_rate>=0\.5 baseline BLOCK_DEPLOY 0 FAILED", text), text
    assert re.search(r"pass_rate>=0\.5 good BLOCK_DEPLOY 1 PASSED", text), text
    assert re.search(r"pass_rate>=0\.5 evil BLOCK_DEPLOY 0 XFAILED", text), text
    # the matrix: every case, a cell per variant with its rate, outputs under it
    for i in range(8):
        assert f'data-case="case-{i}"' in page
        assert f'title="good on case-{i}: 100% of 2 runs"' in page
        assert f'title="baseline on case-{i}: 0% of 2 runs"' in page
    assert page.count('<details class="mcase"') == 8
    assert "run 2 · check_failed" in text
    assert "✗ is-yes: expected 'yes', got 'no'" in text  # the failed check and why, under the run
    # an output that is HTML is shown as text, never run
    assert EVIL not in page
    assert html.escape(EVIL) in page or "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;" in page
    assert EVIL in text
    # the prompt diff per challenger and node, line by line
    assert '<span class="d-del">-no</span>' in page
    assert '<span class="d-add">+yes</span>' in page
    assert "+" + EVIL in text
    # the charts
    assert page.count('<svg class="chart rate"') == 1
    assert page.count('<svg class="chart forest"') == 1
    assert 'class="zero"' in page  # the forest plot's zero line
    assert '<svg class="chart strip"' in page  # latency per variant


def assert_self_contained(page: str) -> None:
    loads = re.findall(r"""\b(?:src|href|action|poster|data)\s*=\s*["']?\s*((?:https?:)?//[^"'\s>]*)""", page, re.IGNORECASE)
    assert loads == []
    assert not re.search(r"""url\(\s*["']?\s*(?:https?:)?//|@import""", page, re.IGNORECASE)
    assert "<link" not in page and "<iframe" not in page


def test_the_page_loads_nothing_from_the_network(report: tuple[pytest.RunResult, str]) -> None:
    _, page = report
    assert_self_contained(page)
    assert "<style>" in page and "<script>" in page  # inline


def test_ini_option_and_an_unwritable_path_is_a_warning(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow("flow", WORKFLOW)
    pytester.makeini("[pytest]\npromptab_html = from-ini.html\n")
    result = pytester.runpytest("--promptab", "--promptab-no-mlflow")
    assert (pytester.path / "from-ini.html").exists()
    (pytester.path / "blocker").write_text("a file, not a folder")
    result = pytester.runpytest("--promptab", "--promptab-no-mlflow", "--promptab-html", "blocker/report.html")
    assert result.ret == 10  # the session's own outcome, not a crash
    result.stdout.fnmatch_lines(["*the HTML report was not written to blocker*report.html*"])
    result.stdout.no_fnmatch_line("*Traceback*")


def test_mlflow_runs_are_plain_links_without_credentials(pytester: pytest.Pytester, echo_workflow) -> None:
    echo_workflow("flow", WORKFLOW)
    pytester.runpytest("--promptab", "--promptab-no-mlflow")
    summary = SessionSummary.from_dict(
        json.loads((pytester.path / ".promptab" / "results.json").read_text())
    )
    summary.mlflow_uri = "https://alice:s3cret@mlflow.example.com:5000/"
    summary.abtests[0].mlflow_run_id = "0123abcd"
    page = render_html(summary)
    assert '<a href="https://mlflow.example.com:5000/#/runs/0123abcd">0123abcd</a>' in page
    assert "s3cret" not in page and "alice" not in page
    summary.mlflow_uri = "sqlite:////tmp/mlflow.db"  # not a page a browser opens: the id, no link
    page = render_html(summary)
    assert "MLflow run id:" in page and "0123abcd" in page and "#/runs/" not in page
    summary.abtests[0].mlflow_run_id = None
    assert "MLflow run" not in render_html(summary)


def test_a_big_session_stays_small() -> None:
    from benchmarks.bench_html import synthetic

    summary = synthetic(4, 100, 5, output_chars=3000)
    assert sized(summary).runs_per_cell == RUNS_PER_CELL
    page = render_html(summary)
    assert len(page.encode()) < 5_000_000
    assert "[… cut: " in page and "more characters]" in page
    assert page.count('<details class="mcase"') == 100
    assert_self_contained(page)
    big = sized(synthetic(50, 200, 2, output_chars=3000))  # 20,000 runs: fewer shown, said on the page
    assert big.runs_per_cell == 1 and big.output_chars < 1500


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install -y chromium)")
def test_the_page_in_a_headless_browser(report: tuple[pytest.RunResult, str], tmp_path: Path) -> None:
    _, page = report
    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    assert CHROMIUM is not None
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", path.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    dom = done.stdout
    assert "</html>" in dom, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if "CONSOLE" in line and ("Uncaught" in line or "Error" in line)]
    assert errors == []
    assert dom.count("<circle") >= 3 and '<svg class="chart forest"' in dom
    for name in ("baseline", "good", "evil"):
        assert f"<h4>{name}</h4>" in dom
    assert all(f'data-case="case-{i}"' in dom for i in range(8))
    assert "<script>alert" not in dom and "&lt;script&gt;alert" in dom


def test_page_data_verdicts_forest_plot_diffs_and_cuts() -> None:
    from benchmarks.bench_html import synthetic
    from pytest_promptab.report.html import (
        OUTPUT_CHARS,
        Options,
        matrix,
        prompt_diffs,
        verdict,
    )
    from pytest_promptab.report.htmlcharts import forest_plot, strip_plot

    ab = synthetic(3, 6, 2, output_chars=OUTPUT_CHARS * 2).abtests[0]
    ab.winner = ab.baseline
    for v in ab.variants:
        v.winner = v.name == ab.baseline
    assert verdict(ab) == "No significant winner: baseline (baseline) stays"
    forest = forest_plot(ab)
    assert forest is not None and [r["name"] for r in forest["rows"]] == ["challenger-1", "challenger-2"]
    for row in forest["rows"]:  # the zero line sits inside an interval exactly when it straddles 0
        c = ab.variant(row["name"]).comparison
        assert c is not None and c.ci_low is not None and c.ci_high is not None
        assert (row["lo"] <= forest["zero"] <= row["hi"]) == (c.ci_low <= 0 <= c.ci_high)
    (diff,) = prompt_diffs(ab)[:1]
    assert ("del", "-Be kind 0.") in diff["nodes"][0]["lines"] and ("add", "+Be kind 1.") in diff["nodes"][0]["lines"]
    rows = matrix(ab, [f"case-{i}" for i in range(6)], Options(runs_per_cell=1))
    column = rows[0]["columns"][0]
    assert len(column["shown"]) == 1 and column["hidden"] == 1
    reply = dict(column["shown"][0]["outputs"])["reply"]
    assert reply.endswith("more characters]") and len(reply) < OUTPUT_CHARS + 60
    ab.runs[0].metrics["latency_ms"] = 1e9  # one very slow run: the axis does not stretch to it
    plot = strip_plot(ab, "latency_ms", "ms")
    assert plot is not None and plot["clipped"] and "max 1,000,000,000" in plot["rows"][0]["label"]
    assert strip_plot(ab, "no_such_metric", "s") is None
