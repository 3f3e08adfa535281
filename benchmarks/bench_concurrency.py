"""Benchmark: concurrent provider calls (``--promptab-concurrency``).

Goal (issue 4, "Performance"): against the fake OpenAI-compatible server of
the test suite answering each request after 100 ms, 400 runs finish within
1.25 x the ideal time (400 x 0.1 s / concurrency) at concurrency 16; the
speed-up over concurrency 1 is reported for 1, 4, 8, 16 and 32.

The server (tests/fake_openai.py, a real HTTP server on 127.0.0.1) runs in
this process; each configuration is a fresh ``python -m pytest -q
--promptab --promptab-no-mlflow --promptab-concurrency N`` subprocess on a
workflow of 2 variants x 10 cases x 20 runs with an ``openai`` provider.

What is timed: the **test phase**, from the start of pytest's test loop
(where promptab submits the runs to its pool) to the end of the last item,
taken by a small timing plugin in the subprocess (``-p _bench_phases``). It
leaves out start-up, collection and the session end, which do not depend on
the concurrency. The table also gives the whole process's wall time and
pytest's own "in X s" (session start to end), for reference.

"ms per call beyond the delay" is what each call costs on top of the
server's delay, per pool slot: test phase x concurrency / 400 - delay.

Every run is checked before its time is used: 400 passed, the server got
exactly 400 requests, and never more in flight than the concurrency.

Usage:  python benchmarks/bench_concurrency.py [--repeats 1] [--concurrency 1 4 8 16 32] [--delay 0.1]
Exit status 0 when the goal is met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))  # for tests.fake_openai

from _util import clean_env, load_average, machine_info, print_machine, run, table  # noqa: E402

from tests.fake_openai import FakeOpenAI, InFlight  # noqa: E402

RUNS = 400
VARIANTS, CASES = 2, 10
GOAL_CONCURRENCY, GOAL_RATIO = 16, 1.25

PHASES_PLUGIN = '''"""Benchmark helper plugin: when the test loop starts and the last item ends."""
import json
import os
import time

import pytest

_t = {}


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtestloop(session):
    _t["loop_start"] = time.perf_counter()
    return (yield)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    try:
        return (yield)
    finally:
        _t["last_item_end"] = time.perf_counter()


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    with open(os.environ["BENCH_PHASES_OUT"], "w") as handle:
        json.dump(_t, handle)
'''


def workflow_yaml(base_url: str) -> str:
    runs = RUNS // (VARIANTS * CASES)
    cases = "\n".join(f"  - {{id: c{i}, inputs: {{topic: t{i}}}}}" for i in range(CASES))
    return f"""name: bench-concurrency
provider:
  type: openai
  base_url: "{base_url}"
  model: fake-model
  retry: {{max_attempts: 1}}
nodes:
  - id: answer
    prompt: "Write about {{{{ topic }}}}"
cases:
{cases}
checks:
  - {{name: echoed, type: contains, value: "{{{{ topic }}}}"}}
ab_test:
  name: speed
  runs: {runs}
  variants:
    - name: other
      prompts: {{answer: "Please write about {{{{ topic }}}}"}}
"""


def measure(root: Path, fake: FakeOpenAI, concurrency: int, delay: float) -> dict[str, float]:
    fake.reset()
    fake.delay_s = delay
    gauge = InFlight(fake)
    out = root / "phases.json"
    env = clean_env(root, {"PYTHONPATH": str(root), "BENCH_PHASES_OUT": str(out)})
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "_bench_phases",
           "--promptab", "--promptab-no-mlflow", "--promptab-concurrency", str(concurrency), "wf.yaml"]
    timed = run(cmd, root, env)
    if f"{RUNS} passed" not in timed.proc.stdout:
        raise SystemExit(f"concurrency {concurrency}: expected '{RUNS} passed':\n{timed.proc.stdout[-3000:]}")
    if len(fake.completions) != RUNS or gauge.max > concurrency:
        raise SystemExit(f"concurrency {concurrency}: the server got {len(fake.completions)} requests "
                         f"(expected {RUNS}), at most {gauge.max} at once")
    stamps = json.loads(out.read_text())
    found = re.search(r" in ([0-9.]+)s", timed.proc.stdout.strip().splitlines()[-1])
    return {
        "phase": stamps["last_item_end"] - stamps["loop_start"],
        "pytest": float(found.group(1)) if found else float("nan"),
        "wall": timed.wall,
        "in_flight": gauge.max,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per concurrency, median kept (default 1)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8, 16, 32])
    parser.add_argument("--delay", type=float, default=0.1, help="the server's delay per answer, s (default 0.1)")
    args = parser.parse_args(argv)
    levels = sorted(set(args.concurrency) | {1})

    print_machine(machine_info())
    print(f"\n## {RUNS} runs, server delay {args.delay * 1000:.0f} ms, {args.repeats} run(s) per concurrency "
          f"(load average before: {load_average()})")
    rows: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="promptab-bench-concurrency-") as tmp, FakeOpenAI() as fake:
        root = Path(tmp)
        (root / "pytest.ini").write_text("[pytest]\n")
        (root / "_bench_phases.py").write_text(PHASES_PLUGIN)
        (root / "wf.yaml").write_text(workflow_yaml(fake.base_url))
        measure(root, fake, 8, 0.0)  # warm-up: .pyc files, page cache
        for level in levels:
            samples = [measure(root, fake, level, args.delay) for _ in range(args.repeats)]
            rows[level] = {key: statistics.median(s[key] for s in samples) for key in samples[0]}
            print(f"  concurrency {level}: test phase {rows[level]['phase']:.2f} s", file=sys.stderr, flush=True)

    serial = rows[1]["phase"]
    lines = []
    for level, row in rows.items():
        ideal = RUNS * args.delay / level
        lines.append([level, f"{row['phase']:.2f}", f"{ideal:.2f}", f"{row['phase'] / ideal:.3f}",
                      f"{serial / row['phase']:.2f}x", int(row["in_flight"]), f"{row['pytest']:.2f}",
                      f"{row['wall']:.2f}", f"{(row['phase'] * level / RUNS - args.delay) * 1000:.1f}"])
    print(table(lines, ["concurrency", "test phase s", "ideal s", "ratio", "speed-up vs 1", "max in flight",
                        "pytest 'in X s'", "process wall s", "ms per call beyond the delay"]))
    if GOAL_CONCURRENCY not in rows:
        print(f"\n(goal not checked: concurrency {GOAL_CONCURRENCY} not measured)")
        return 0
    ratio = rows[GOAL_CONCURRENCY]["phase"] / (RUNS * args.delay / GOAL_CONCURRENCY)
    met = ratio <= GOAL_RATIO
    print(f"\nratio at concurrency {GOAL_CONCURRENCY}: {ratio:.3f}; goal (<= {GOAL_RATIO}) "
          f"{'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
