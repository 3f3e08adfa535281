"""Do promptab's verdicts keep their promise? A simulation through real sessions.

Generates many A/B tests (one workflow file each, one challenger), runs them
all in ONE real ``pytest --promptab`` session on a stand-in model whose
per-case pass probabilities are known, and reads ``results.json``. From the
same run records it computes the old verdict (Fisher's exact test on the runs
pooled over cases, what promptab did before 0.2: kept here, not in the
product) next to the plugin's own verdict (paired per-case differences, exact
sign-flip test). Three scenarios:

(a) A/A: both variants have the same pass probability on every case
    (heterogeneous cases, p ~ U(0.1, 0.9)). Any winner is a false winner.
(b) zero-mean interaction: the challenger helps some inputs and hurts others
    by the same amount (+-0.3 with a fair coin per case, p ~ U(0.3, 0.7)):
    over inputs in general it makes no difference, so a winner is false.
(c) uniform real effect: +0.2 on every case, over heterogeneous cases (half
    hard, p ~ U(0.05, 0.25), half easy, p ~ U(0.55, 0.75)); a winner is a
    detection.

The generated folder's conftest.py reports XFAIL runs without pytest's
traceback formatting (about 0.1 s per XFAIL item on this plugin version, the
cost issue 9 removes); nothing else is changed, and no verdict depends on it.

Goals (issue 10): false winners <= alpha (+ simulation noise) in (a) and (b);
detection in (c) at least the pooled method's. Exit status 0 when met.

    python benchmarks/bench_verdicts.py                 # 300 A/B tests per scenario, ~3 minutes
    python benchmarks/bench_verdicts.py --cases 6 --runs 10   # the design issue 10 measured
    python benchmarks/bench_verdicts.py --tests 40      # quicker, noisier
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scipy import stats as sps

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import clean_env, machine_info, print_machine  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

STANDIN = '''
"""Stand-in model: the prompt says the pass probability; the draw is
independent per (workflow, variant, case, run)."""
import random

def generate(request):
    p = float(request.prompt.rsplit("p=", 1)[1])
    rng = random.Random(f"{request.workflow}|{request.variant}|{request.case_id}|{request.run}")
    return "pass" if rng.random() < p else "fail"
'''


FAST_XFAIL = '''
"""XFAIL runs reported without pytest's traceback formatting (see the benchmark's docstring)."""
from _pytest.outcomes import XFailed

from pytest_promptab.items import RunItem

_original = RunItem.repr_failure


def _repr_failure(self, excinfo, style=None):
    if isinstance(excinfo.value, XFailed):
        return str(excinfo.value)
    return _original(self, excinfo, style)


RunItem.repr_failure = _repr_failure
'''


def scenario_probabilities(kind: str, k: int, rng: random.Random) -> list[tuple[float, float]]:
    """(baseline p, challenger p) for each of ``k`` cases."""
    if kind == "a":
        return [(p, p) for p in (rng.uniform(0.1, 0.9) for _ in range(k))]
    if kind == "b":
        return [(p, p + rng.choice((-0.3, 0.3))) for p in (rng.uniform(0.3, 0.7) for _ in range(k))]
    hard_or_easy = (rng.uniform(0.05, 0.25) if rng.random() < 0.5 else rng.uniform(0.55, 0.75) for _ in range(k))
    return [(p, p + 0.2) for p in hard_or_easy]


def workflow_text(name: str, probs: list[tuple[float, float]], runs: int, alpha: float) -> str:
    cases = "\n".join(f"  - {{id: c{i}, inputs: {{pb: {pb:.4f}, pc: {pc:.4f}}}}}" for i, (pb, pc) in enumerate(probs))
    return f"""name: {name}
provider: {{type: python, callable: "standin.py:generate"}}
nodes: [{{id: answer, prompt: "p={{{{ pb }}}}"}}]
cases:
{cases}
checks: [{{name: ok, type: equals, value: "pass"}}]
ab_test:
  name: ab
  runs: {runs}
  alpha: {alpha}
  variants: [{{name: challenger, prompts: {{answer: "p={{{{ pc }}}}"}}}}]
"""


def pooled_fisher_winner(runs: list[dict], alpha: float) -> bool:
    """The old verdict: Fisher's exact test on runs pooled over cases."""
    counts = {"baseline": [0, 0], "challenger": [0, 0]}
    for r in runs:
        if r["status"] == "error":
            continue
        counts[r["variant"]][0 if r["metrics"]["passed"] >= 0.5 else 1] += 1
    (b_ok, b_no), (c_ok, c_no) = counts["baseline"], counts["challenger"]
    p = sps.fisher_exact([[c_ok, c_no], [b_ok, b_no]], alternative="two-sided").pvalue
    return bool(p < alpha and c_ok / (c_ok + c_no) > b_ok / (b_ok + b_no))


def wilson(x: int, n: int) -> tuple[float, float]:
    z = 1.959964
    p = x / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=300, help="A/B tests per scenario (default 300)")
    parser.add_argument("--cases", type=int, default=10, help="cases per A/B test (default 10)")
    parser.add_argument("--runs", type=int, default=8, help="runs per variant x case (default 8)")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    with tempfile.TemporaryDirectory(prefix="bench_verdicts_") as tmp:
        root = Path(tmp)
        (root / "standin.py").write_text(STANDIN, encoding="utf-8")
        (root / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
        (root / "conftest.py").write_text(FAST_XFAIL, encoding="utf-8")
        for kind in "abc":
            for i in range(args.tests):
                name = f"{kind}-{i:04d}"
                probs = scenario_probabilities(kind, args.cases, rng)
                (root / f"{name}.yaml").write_text(workflow_text(name, probs, args.runs, args.alpha), encoding="utf-8")
        items = 3 * args.tests * 2 * args.cases * args.runs
        print_machine(machine_info())
        print(f"{3 * args.tests} A/B tests ({args.tests} per scenario), {args.cases} cases x {args.runs} runs x 2 variants: "
              f"{items} items in one session")  # fmt: skip
        cmd = [sys.executable, "-m", "pytest", "--promptab", "--promptab-no-mlflow", "-q", "-p", "no:cacheprovider",
               "--promptab-json", str(root / "results.json"), str(root)]  # fmt: skip
        started = time.perf_counter()
        env = clean_env(root, {"PYTHONPATH": str(ROOT)})
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        if proc.returncode not in (0, 1) or not (root / "results.json").exists():
            print(proc.stdout[-3000:], proc.stderr[-3000:])
            return 2
        data = json.loads((root / "results.json").read_text())
    if "design" not in data["abtests"][0]:
        print(f"the session did not run this checkout's plugin ({ROOT}): results.json has no 'design'")
        return 2
    print(f"session (plugin from {ROOT}): exit {proc.returncode}, {elapsed:.0f} s wall")

    tallies: dict[str, dict[str, int]] = {k: {"n": 0, "pooled": 0, "new": 0} for k in "abc"}
    for ab in data["abtests"]:
        kind = ab["workflow"][0]
        t = tallies[kind]
        t["n"] += 1
        t["pooled"] += pooled_fisher_winner(ab["runs"], args.alpha)
        t["new"] += ab["winner"] == "challenger"

    labels = {
        "a": "(a) A/A: false winners",
        "b": "(b) zero-mean interaction: false winners",
        "c": "(c) uniform +0.2 effect: detections",  # over heterogeneous cases
    }
    print(f"\n{'scenario':44} {'pooled Fisher (old)':>24} {'case-level sign-flip (new)':>28}")
    for kind in "abc":
        t = tallies[kind]
        cells = []
        for method in ("pooled", "new"):
            lo, hi = wilson(t[method], t["n"])
            cells.append(f"{t[method]:3d}/{t['n']} = {t[method] / t['n']:5.1%} [{lo:.0%}, {hi:.0%}]")
        print(f"{labels[kind]:44} {cells[0]:>24} {cells[1]:>28}")

    noise = 2 * math.sqrt(args.alpha * (1 - args.alpha) / args.tests)
    ok_a = tallies["a"]["new"] / tallies["a"]["n"] <= args.alpha + noise
    ok_b = tallies["b"]["new"] / tallies["b"]["n"] <= args.alpha + noise
    ok_c = tallies["c"]["new"] >= tallies["c"]["pooled"]
    print(f"\ngoal (a) new false winners <= alpha + 2 se ({args.alpha + noise:.1%}): {'met' if ok_a else 'NOT met'}")
    print(f"goal (b) new false winners <= alpha + 2 se ({args.alpha + noise:.1%}): {'met' if ok_b else 'NOT met'}")
    print(f"goal (c) new detections >= pooled detections: {'met' if ok_c else 'NOT met'}")
    return 0 if ok_a and ok_b and ok_c else 1


if __name__ == "__main__":
    sys.exit(main())
