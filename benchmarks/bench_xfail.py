"""Benchmark: an XFAIL costs about what a pass costs (issue 9, point 1).

Goal: a session of 1,200 runs of which ~45% fail a check (XFAIL) takes at most
1.2x the wall time of the same 1,200 runs all passing.

One workflow, an instant ``python`` provider (a constant answer), one
``equals`` check, a baseline and one challenger, 20 cases x 30 runs each
(2 x 20 x 30 = 1,200 runs). In the XFAIL configuration 9 of the 20 cases
expect another answer (9/20 = 45% of the runs XFAIL); in the passing one every
case expects the answer. Each configuration is a fresh
``python -m pytest -q -p no:cacheprovider --promptab --promptab-no-mlflow``
process, run ``--repeats`` times, interleaved, after one warm-up each. MLflow
logging is off in both (it costs the same in both and would only add noise).

Usage:  python benchmarks/bench_xfail.py [--repeats 5] [--runs 30] [--keep]
Exit status 0 when the goal is met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import (  # noqa: E402
    Timed,
    clean_env,
    interleaved,
    load_average,
    machine_info,
    ms,
    print_machine,
    run,
    table,
)

GOAL_RATIO = 1.2
CASES = 20
FAILING_CASES = 9

PROVIDER = '''"""An instant provider: returns a constant string, whatever it is asked."""


def generate(request):
    return "ok"
'''


def workflow_yaml(runs: int, failing: int) -> str:
    cases = "\n".join(
        f"  - {{id: c{i}, inputs: {{name: n{i}}}, expected: {{answer: {'nope' if i < failing else 'ok'}}}}}"
        for i in range(CASES)
    )
    return f"""name: bench-xfail
provider: {{type: python, callable: "fast.py:generate", model: instant}}
nodes:
  - id: answer
    prompt: "Say ok to {{{{ name }}}}"
cases:
{cases}
checks:
  - {{name: same, type: equals, value: "{{{{ expected.answer }}}}"}}
ab_test:
  name: xfail-cost
  runs: {runs}
  variants:
    - name: other
      prompts: {{answer: "Reply ok to {{{{ name }}}}"}}
"""


PASSING = "all runs pass"
XFAILING = f"{FAILING_CASES * 100 // CASES}% of runs XFAIL"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--runs", type=int, default=30, help="runs per variant x case (default 30: 1,200 runs)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    total = 2 * CASES * args.runs
    xfails = 2 * FAILING_CASES * args.runs

    tmp = tempfile.TemporaryDirectory(prefix="bench-xfail-")
    root = Path(tmp.name)
    base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--promptab", "--promptab-no-mlflow"]
    if importlib.util.find_spec("pytest_randomly") is not None:
        base += ["-p", "no:randomly"]
    expected = {PASSING: f"{total} passed", XFAILING: f"{total - xfails} passed, {xfails} xfailed"}
    for label, failing in ((PASSING, 0), (XFAILING, FAILING_CASES)):
        folder = root / ("pass" if failing == 0 else "xfail")
        folder.mkdir()
        (folder / "pytest.ini").write_text("[pytest]\n")
        (folder / "fast.py").write_text(PROVIDER)
        (folder / "wf.yaml").write_text(workflow_yaml(args.runs, failing))

    def runner(label: str):  # type: ignore[no-untyped-def]
        folder = root / ("pass" if label == PASSING else "xfail")
        env = clean_env(root, {"PYTHONPATH": str(folder)})

        def once() -> Timed:
            timed = run([*base, "wf.yaml"], folder, env)
            if expected[label] not in timed.proc.stdout:
                raise SystemExit(f"{label}: expected '{expected[label]}' in the output:\n{timed.proc.stdout[-3000:]}")
            return timed

        return once

    configs = {label: runner(label) for label in (PASSING, XFAILING)}
    for once in configs.values():
        once()  # warm-up: bytecode, page cache
    series = interleaved(configs, args.repeats)

    print_machine(machine_info())
    print(f"load average after: {load_average()}")
    print(f"{total} runs per session; MLflow logging off (--promptab-no-mlflow) in both")
    rows = []
    for label, s in series.items():
        wall, cpu = s.wall, s.cpu
        rows.append([label, ms(wall.median), f"{ms(wall.iqr[0])}-{ms(wall.iqr[1])}", ms(cpu.median)])
    print(table(rows, ["configuration", "wall ms (median)", "wall IQR", "cpu ms (median)"]))
    ratios = [x.wall / p.wall for x, p in zip(series[XFAILING].runs, series[PASSING].runs)]
    ratio = statistics.median(ratios)
    cpu_ratio = series[XFAILING].cpu.median / series[PASSING].cpu.median
    print(f"wall-time ratio XFAIL/pass: {ratio:.2f} (median of {len(ratios)} rounds; cpu ratio {cpu_ratio:.2f}); "
          f"goal <= {GOAL_RATIO}: {'met' if ratio <= GOAL_RATIO else 'NOT met'}")
    if args.keep:
        tmp_path = root
        tmp._finalizer.detach()  # type: ignore[attr-defined]
        print(f"kept {tmp_path}")
    else:
        tmp.cleanup()
    return 0 if ratio <= GOAL_RATIO else 1


if __name__ == "__main__":
    raise SystemExit(main())
