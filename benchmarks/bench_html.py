"""Benchmark: the HTML report's size and build time for big sessions (issue 16).

Builds synthetic session summaries (no pytest, no provider: the report is
built from a :class:`SessionSummary` only) with long outputs (3,000
characters, two nodes per run, a failed check on every third run) and times
:func:`pytest_promptab.report.html.write_html` on each:

- 4 variants x 100 cases x 5 runs (2,000 runs): the page must stay under 5 MB;
- 50 variants x 200 cases x 2 runs (20,000 runs): under 15 MB.

Usage:  python benchmarks/bench_html.py [--keep DIR]
Exit status 0 when every size goal is met, 1 otherwise. The times are
printed, not judged (the machine is shared).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pytest_promptab.analysis.summary import (
    ABTestSummary,
    Comparison,
    GateJudgement,
    SessionSummary,
    VariantSummary,
)
from pytest_promptab.checks.result import CheckResult
from pytest_promptab.run.records import RunRecord

GOALS = {(4, 100, 5): 5_000_000, (50, 200, 2): 15_000_000}


def synthetic(variants: int, cases: int, runs: int, output_chars: int = 3000, seed: int = 1) -> SessionSummary:
    """A session with one A/B test of the given shape (shared with tests/test_html_report.py)."""
    rng = random.Random(seed)
    names = ["baseline"] + [f"challenger-{i}" for i in range(1, variants)]
    records: list[RunRecord] = []
    vsums = []
    for vi, name in enumerate(names):
        rate = 0.5 + 0.4 * vi / max(1, variants - 1)
        case_means, passed_total = {}, 0
        for c in range(cases):
            passed = 0
            for run in range(1, runs + 1):
                ok = rng.random() < rate
                passed += ok
                records.append(
                    RunRecord(
                        file="flow.yaml",
                        ab_test="ab",
                        variant=name,
                        case=f"case-{c}",
                        run=run,
                        status="passed" if ok else "check_failed",
                        metrics={
                            "passed": float(ok),
                            "latency_ms": rng.uniform(100, 900),
                            "cost_usd": rng.uniform(1e-5, 9e-5),
                        },
                        checks=[
                            CheckResult(
                                name="polite",
                                type="contains",
                                passed=ok,
                                score=float(ok),
                                expected="thank you",
                                detail=None if ok else "missing 'thank you'",
                            )
                        ],
                        outputs={
                            "category": "billing",
                            "reply": ("x" * 60 + "\n") * (output_chars // 61),
                        },
                    )
                )
            case_means[f"case-{c}"] = {"passed": passed / runs}
            passed_total += passed
        pr = sum(m["passed"] for m in case_means.values()) / cases
        comparison = None
        if vi:
            comparison = Comparison(
                variant=name,
                metric="pass_rate",
                baseline_value=0.5,
                value=pr,
                diff=pr - 0.5,
                ci_low=pr - 0.58,
                ci_high=pr - 0.42,
                p_value=0.01,
                p_adjusted=0.03,
                test="sign-flip",
                significant=pr - 0.58 > 0,
                better=pr - 0.58 > 0,
            )
        vsums.append(
            VariantSummary(
                name=name,
                role="challenger" if vi else "baseline",
                runs=cases * runs,
                failed_runs=0,
                aggregates={},
                pass_rate=pr,
                pass_rate_ci=(max(0.0, pr - 0.08), min(1.0, pr + 0.08)),
                comparison=comparison,
                prompts={"reply": f"Write a reply.\nBe kind {vi}.\n{{{{ email }}}}"},
                case_means=case_means,
                case_runs={f"case-{c}": runs for c in range(cases)},
                passed_runs=passed_total,
            )
        )
    best = max(vsums[1:], key=lambda v: v.pass_rate or 0.0) if variants > 1 else vsums[0]
    best.winner = True
    gates = [
        GateJudgement(
            gate="pass_rate>=0.6",
            metric="pass_rate",
            action="BLOCK_DEPLOY",
            min=0.6,
            max=None,
            variant=v.name,
            value=v.pass_rate,
            met=(v.pass_rate or 0) >= 0.6,
            outcome="passed" if (v.pass_rate or 0) >= 0.6 else "failed",
            nodeid=f"flow.yaml::ab::gate[{v.name}]",
            message=f"{v.name}: pass_rate = {v.pass_rate:.2f}",
        )
        for v in vsums
    ]
    ab = ABTestSummary(
        file="flow.yaml",
        workflow="synthetic",
        name="ab",
        nodeid="flow.yaml::ab",
        baseline="baseline",
        objective="pass_rate",
        goal="max",
        alpha=0.05,
        variants=vsums,
        gates=gates,
        winner=best.name,
        runs=records,
    )
    return SessionSummary(abtests=[ab])


def main() -> int:
    from pytest_promptab.report.html import write_html

    parser = argparse.ArgumentParser()
    parser.add_argument("--keep", type=Path, default=None, help="write the pages into this folder")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench-html-"))
    ok = True
    print(f"{'shape':>16} {'runs':>7} {'build s':>8} {'size MB':>8} {'goal MB':>8}")
    for (v, c, r), goal in GOALS.items():
        summary = synthetic(v, c, r)
        path = folder / f"report-{v}x{c}x{r}.html"
        started = time.perf_counter()
        write_html(path, summary)
        took = time.perf_counter() - started
        size = path.stat().st_size
        met = size <= goal
        ok &= met
        print(
            f"{f'{v}x{c}x{r}':>16} {v * c * r:>7} {took:>8.2f} {size / 1e6:>8.2f} {goal / 1e6:>8.0f} {'ok' if met else 'OVER'}"
        )
    print(f"pages in {folder}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
