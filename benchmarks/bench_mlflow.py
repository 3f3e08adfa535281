"""Benchmark: what MLflow logging adds to a session.

Goal (issue 3, "Performance"): logging a session of 4 variants x 1,000 runs
to the sqlite store adds at most 3 s over the same session with
``--promptab-no-mlflow``, the import of mlflow included.

The workflow has 4 variants, 10 cases and 100 runs each (4,000 items) on an
instant ``python`` provider. Each configuration is a fresh
``python -m pytest --promptab -q -p no:cacheprovider`` process, interleaved:

- ``no-mlflow``: ``--promptab-no-mlflow``;
- ``sqlite (existing store)``: logging to a sqlite store that already holds
  earlier sessions (the steady state of a project);
- ``sqlite (new store)``: a brand-new database each time (MLflow creates its
  tables: a one-off cost per project, reported apart).

The difference of medians (and its bootstrap interval over paired rounds) is
what logging costs the user.

Then the logging step alone (``_mlflow_step.py``: the session's summary
logged again and again by one process, as the logging process does at
session end), without traces, with the default cap of traces as promptab
writes them, and with the same traces through MlflowClient's trace API: the
difference to "no traces", divided by the traces logged, is the cost of one
trace (wall and CPU), less disturbed by the machine's load than a whole
session.

``--baseline DIR`` adds the two existing-store configurations run with the
copy of ``pytest_promptab`` in DIR (e.g. ``git archive <commit>
pytest_promptab | tar -x -C DIR``), interleaved with the others: a before /
after at the same machine load.

Usage:  python benchmarks/bench_mlflow.py [--repeats 5] [--step-repeats 8] [--baseline DIR] [--keep]
Exit status 0 when the goal is met for the existing store, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import (  # noqa: E402
    clean_env,
    interleaved,
    load_average,
    machine_info,
    paired_difference,
    print_machine,
    run,
    table,
)

GOAL_S = 3.0

WORKFLOW = """
name: bench-mlflow
provider: {type: python, callable: "fast.py:generate", model: instant}
nodes: [{id: a, prompt: "Say something about {{ topic }}"}]
cases: cases.jsonl
checks: [{name: has-ok, type: contains, value: ok}]
ab_test:
  name: ab
  runs: 100
  variants:
    - {name: v1, prompts: {a: "Say one thing about {{ topic }}"}}
    - {name: v2, prompts: {a: "Say two things about {{ topic }}"}}
    - {name: v3, prompts: {a: "Say three things about {{ topic }}"}}
"""

FAST = '''
def generate(request):
    return {"text": "ok " + str(request.run % 7), "tokens_in": 12, "tokens_out": 3}
'''


def build(root: Path) -> Path:
    project = root / "project"
    project.mkdir()
    (project / "flow.yaml").write_text(textwrap.dedent(WORKFLOW).lstrip())
    (project / "fast.py").write_text(FAST)
    (project / "cases.jsonl").write_text("".join(f'{{"id": "c{i}", "topic": "t{i}"}}\n' for i in range(10)))
    (project / "pytest.ini").write_text("[pytest]\n")
    return project


def step_table(project: Path, uri: str, env: dict[str, str], repeats: int, cap: int = 50) -> str:
    """The logging step alone, per mode (see the module doc), as a table."""
    helper = Path(__file__).resolve().parent / "_mlflow_step.py"
    results = project / ".promptab" / "results.json"
    proc = subprocess.run([sys.executable, str(helper), str(results), uri, str(project), str(repeats), str(cap)],
                          cwd=project, env=env, capture_output=True, text=True, check=False)  # fmt: skip
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return f"logging step: failed ({proc.returncode}): {(proc.stdout + proc.stderr)[-2000:]}"
    data = json.loads(lines[-1])
    base_wall = statistics.median(data["no traces"]["wall"][1:])
    base_cpu = statistics.median(data["no traces"]["cpu"][1:])
    rows = []
    for mode, d in data.items():
        wall, cpu, n = statistics.median(d["wall"][1:]), statistics.median(d["cpu"][1:]), d["traces"]
        per = [f"{(wall - base_wall) / n * 1000:.1f}", f"{(cpu - base_cpu) / n * 1000:.1f}"] if n else ["", ""]
        rows.append([mode, n, f"{d['wall'][0]:.3f}", f"{wall:.3f}", f"{cpu:.3f}", *per])
    title = f"the logging step alone, {repeats} repeats per mode, interleaved (first repeat apart; seconds, ms per trace)"
    headers = ["mode", "traces", "first wall", "median wall", "median CPU", "wall/trace", "CPU/trace"]
    return title + "\n" + table(rows, headers)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--step-repeats", type=int, default=8, help="repeats of the logging step alone (0: skip)")
    parser.add_argument("--baseline", type=Path, help="a directory holding another copy of pytest_promptab")
    parser.add_argument("--keep", action="store_true", help="keep the temp directory")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="promptab-bench-mlflow-"))
    try:
        project = build(root)
        env = clean_env(root)
        base = [sys.executable, "-m", "pytest", "--promptab", "-q", "-p", "no:cacheprovider", "flow.yaml"]
        existing = f"sqlite:///{root / 'existing.db'}"
        run([*base, "--promptab-mlflow-uri", existing], project, env)  # create the store once
        counter = iter(range(10_000))

        def fresh() -> list[str]:
            return [*base, "--promptab-mlflow-uri", f"sqlite:///{root / f'new{next(counter)}.db'}"]

        configs = {
            "no-mlflow": lambda: run([*base, "--promptab-no-mlflow"], project, env),
            "sqlite (existing store)": lambda: run([*base, "--promptab-mlflow-uri", existing], project, env),
            "sqlite (existing, no traces)": lambda: run(
                [*base, "--promptab-mlflow-uri", existing, "--promptab-mlflow-traces", "0"], project, env
            ),
            "sqlite (new store)": lambda: run(fresh(), project, env),
        }
        if args.baseline is not None:
            base_env = clean_env(root, {"PYTHONPATH": str(args.baseline.resolve())})
            configs["baseline: sqlite (existing store)"] = lambda: run(
                [*base, "--promptab-mlflow-uri", existing], project, base_env
            )
            configs["baseline: sqlite (existing, no traces)"] = lambda: run(
                [*base, "--promptab-mlflow-uri", existing, "--promptab-mlflow-traces", "0"], project, base_env
            )
        series = interleaved(configs, args.repeats)
        info = machine_info()
        print_machine(info)
        print(f"load average at the end: {load_average()}")
        control = series["no-mlflow"].wall
        rows = []
        verdict = None
        for label, s in series.items():
            wall = s.wall
            if label == "no-mlflow":
                rows.append([label, f"{wall.median:.2f}", f"{wall.min:.2f}..{wall.max:.2f}", "", ""])
                continue
            diff, low, high = paired_difference(wall, control)
            rows.append([label, f"{wall.median:.2f}", f"{wall.min:.2f}..{wall.max:.2f}",
                         f"{diff:+.2f}", f"{low:+.2f}..{high:+.2f}"])
            if label == "sqlite (existing store)":
                verdict = diff <= GOAL_S
        print(f"4 variants x 10 cases x 100 runs = 4,000 items; {args.repeats} runs per configuration (seconds)")
        print(table(rows, ["configuration", "median wall", "min..max", "added by MLflow", "95% CI"]))
        met = "MET" if verdict else "MISSED"
        print(f"MLflow goal (<= +{GOAL_S:.0f} s, existing sqlite store, mlflow import included): {met}")
        if args.step_repeats > 0:
            print(f"load average before the logging step: {load_average()}")
            print(step_table(project, existing, env, args.step_repeats))
            print(f"load average at the end: {load_average()}")
        return 0 if verdict else 1
    finally:
        if args.keep:
            print(f"kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
