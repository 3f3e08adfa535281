"""The summary table fits the terminal (SPEC section 9): end-to-end at 80 and
160 columns (pytester, ``COLUMNS``), and the splitting rules on a summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_promptab.analysis.summary import (
    ABTestSummary,
    Comparison,
    GateJudgement,
    VariantSummary,
)
from pytest_promptab.report.table import COLUMNS, Column, render_abtest, variant_tables

NO_MLFLOW = "--promptab-no-mlflow"
CORE = ["variant", "role", "runs", "pass rate", "diff pass_rate", "p (Holm)"]
REST = ["score", "latency", "tokens", "cost $", "gates"]


def summary_section(output: str) -> list[str]:
    """The summary of examples/support.yaml (the other examples come before it)."""
    lines = output.splitlines()
    summary = next(i for i, line in enumerate(lines) if "promptab summary" in line)
    start = next(i for i, line in enumerate(lines) if i > summary and line.startswith("examples/support.yaml::")) - 1
    end = next(i for i, line in enumerate(lines) if line.startswith("results: "))
    return lines[start + 1 : end]


def header_lines(section: list[str]) -> list[str]:
    return [line for line in section if line.startswith("variant ")]


def test_table_fits_80_columns_with_the_core_columns_on_one_line(
    pytester: pytest.Pytester, examples_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    result = pytester.runpytest("--promptab", NO_MLFLOW, "examples/")
    section = summary_section(result.stdout.str())
    too_wide = [line for line in section if len(line) > 80]
    assert not too_wide, "\n".join(section)
    first, second = header_lines(section)
    assert all(name in first for name in CORE), first
    assert all(name in second for name in REST), second
    rows = [line for line in section if line.startswith("empathetic *")]  # the winner, in both tables
    assert len(rows) == 2 and "+22 [+8, +36]" in rows[0] and "0.016 sig" in rows[0]
    assert "4/4 ok" in rows[1]
    # the gate details the narrow gates column leaves out are in the lines below
    assert any("terse: pass_rate = 0.4, required >= 0.6" in line for line in section)


def test_table_at_160_columns_is_one_table(
    pytester: pytest.Pytester, examples_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    result = pytester.runpytest("--promptab", NO_MLFLOW, "examples/")
    section = summary_section(result.stdout.str())
    assert max(len(line) for line in section) <= 160, "\n".join(section)
    (header,) = header_lines(section)
    assert all(name in header for name in CORE + REST), header
    assert len([line for line in section if line.startswith("terse ")]) == 1


def _summary(name_len: int = 8) -> ABTestSummary:
    def variant(name: str, role: str, rate: float) -> VariantSummary:
        return VariantSummary(
            name=name, role=role, runs=20, failed_runs=0, pass_rate=rate, pass_rate_ci=(rate - 0.2, rate + 0.1),  # type: ignore[arg-type]
            aggregates={"latency_ms": {"p50": 120.0, "p95": 480.0}, "tokens_total": {"mean": 95.0},
                        "cost_usd": {"mean": 0.00012}, "score": {"mean": 0.7}},
            comparison=None if role == "baseline" else Comparison(
                name, "pass_rate", 0.5, rate, rate - 0.5, 0.05, 0.35, 0.01, 0.02, "t", True, True),
        )  # fmt: skip

    gates = [GateJudgement("latency_ms.p95<=100", "latency_ms.p95", "WARN", None, 100.0, "b" * name_len, 480.0, False,
                           "warned", "f.yaml::ab::gate", "latency too high")]
    return ABTestSummary(file="f.yaml", workflow="w", name="ab", nodeid="f.yaml::ab", baseline="b" * name_len,
                         objective="pass_rate", goal="max", alpha=0.05, gates=gates,
                         variants=[variant("b" * name_len, "baseline", 0.5), variant("c" * name_len, "challenger", 0.7)])


def test_no_width_limit_is_one_table_of_every_column() -> None:
    lines = variant_tables(_summary(), COLUMNS, width=None)
    assert len([line for line in lines if line.startswith("variant")]) == 1
    assert "latency p50/p95 ms" in lines[0] and "WARNED latency_ms.p95<=100" in lines[2]


def test_a_column_that_does_not_fit_is_dropped_with_a_hint_and_shown_with_verbose() -> None:
    wide = Column("wide", "wide column", lambda s, v: "x" * 70, 1)
    columns = [*COLUMNS, wide]
    lines = variant_tables(_summary(), columns, width=80)
    assert max(len(line) for line in lines) <= 80, "\n".join(lines)
    assert not any("x" * 70 in line for line in lines)
    assert lines[-1] == "(not shown at 80 columns: wide column; -v shows every column)"
    verbose = variant_tables(_summary(), columns, width=80, verbose=True)
    assert any("x" * 70 in line for line in verbose) and not any("not shown" in line for line in verbose)


def test_lines_below_the_table_wrap_to_the_width() -> None:
    summary = _summary()
    summary.winner, summary.winner_reason = "c" * 8, "a reason " * 20
    lines = render_abtest(summary, width=70)  # the core table is 69 wide here
    assert max(len(line) for line in lines) <= 70, "\n".join(lines)
    assert len([line for line in lines if line.startswith(("winner: ", "  reason"))]) > 1
    assert lines[0] == "f.yaml::ab  (workflow 'w', objective: pass_rate max)"
