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

Usage:  python benchmarks/bench_mlflow.py [--repeats 5] [--keep]
Exit status 0 when the goal is met for the existing store, 1 otherwise.
"""

from __future__ import annotations

import argparse
import shutil
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
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
        return 0 if verdict else 1
    finally:
        if args.keep:
            print(f"kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
