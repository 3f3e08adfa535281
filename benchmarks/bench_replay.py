"""Benchmark: a replayed session (``--promptab-cache replay``) against the
same session on an instant ``python`` provider.

Goal (issue 4, "Performance"): a replayed session of 2,000 runs finishes
within 2 x the time of the same session with an instant ``python`` provider.

The workflow: one node, one ``contains`` check, a baseline and one
challenger, 10 cases x 100 runs (2,000 items). ``replay`` uses an ``openai``
provider whose 2,000 answers were first recorded from the fake
OpenAI-compatible server of the test suite (tests/fake_openai.py, in this
process), which is then stopped: the timed replays cannot call out. ``python``
is the same file with ``provider: {type: python}`` and a function giving the
same answers (``echo: <prompt>``) at once, so both sessions have the same
outcomes (checked: 2,000 passed, 2,000 runs in results.json).

Each configuration is a fresh ``python -m pytest -q -p no:cacheprovider
--promptab --promptab-no-mlflow`` subprocess, run ``--repeats`` times,
interleaved. Timed: the whole process (what a user waits for; the goal is
judged on its median), pytest's own "in X s", and the test phase (start of
the test loop to the end of the last item; a timing plugin in the subprocess).

Usage:  python benchmarks/bench_replay.py [--repeats 5] [--profile]
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
from typing import Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))  # for tests.fake_openai

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
from bench_concurrency import PHASES_PLUGIN  # noqa: E402

from tests.fake_openai import FakeOpenAI  # noqa: E402

ITEMS = 2000
VARIANTS, CASES = 2, 10
GOAL_RATIO = 2.0

INSTANT = '''"""An instant provider answering like the fake server: echo: <prompt>."""


def echo(request):
    return "echo: " + request.prompt
'''


def workflow_yaml(provider: str) -> str:
    cases = "\n".join(f"  - {{id: c{i}, inputs: {{topic: t{i}}}}}" for i in range(CASES))
    return f"""name: bench-replay
provider: {provider}
nodes:
  - id: answer
    prompt: "Write about {{{{ topic }}}}"
cases:
{cases}
checks:
  - {{name: echoed, type: contains, value: "{{{{ topic }}}}"}}
ab_test:
  name: speed
  runs: {ITEMS // (VARIANTS * CASES)}
  variants:
    - name: other
      prompts: {{answer: "Please write about {{{{ topic }}}}"}}
"""


REPLAY = "replay (openai, recorded)"
PYTHON = "instant python provider"


def build(root: Path) -> None:
    (root / "pytest.ini").write_text("[pytest]\n")
    (root / "_bench_phases.py").write_text(PHASES_PLUGIN)
    (root / "python").mkdir()
    (root / "python" / "instant.py").write_text(INSTANT)
    instant = '{type: python, callable: "instant.py:echo", model: fake-model}'
    (root / "python" / "wf.yaml").write_text(workflow_yaml(instant))


def record(root: Path) -> int:
    """Record every answer from the fake server, then stop it; returns the
    number of recordings."""
    with FakeOpenAI() as fake:
        provider = f'{{type: openai, base_url: "{fake.base_url}", model: fake-model, retry: {{max_attempts: 1}}}}'
        (root / "replay").mkdir()
        (root / "replay" / "wf.yaml").write_text(workflow_yaml(provider))
        env = clean_env(root, {"PYTHONPATH": str(root)})
        timed = run([*base_cmd(), "--promptab-cache", "record", "replay/wf.yaml"], root, env)
        check(REPLAY, timed.proc.stdout, root)
        if len(fake.completions) != ITEMS:
            raise SystemExit(f"recording: the server got {len(fake.completions)} requests, expected {ITEMS}")
    return len(list((root / ".promptab" / "cache").rglob("*.json")))


def base_cmd() -> list[str]:
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--promptab", "--promptab-no-mlflow"]


def check(label: str, stdout: str, root: Path) -> None:
    if f"{ITEMS} passed" not in stdout:
        raise SystemExit(f"{label}: expected '{ITEMS} passed' in the output:\n{stdout[-3000:]}")
    results = json.loads((root / ".promptab" / "results.json").read_text())
    runs = sum(len(ab["runs"]) for ab in results["abtests"])
    if runs != ITEMS:
        raise SystemExit(f"{label}: results.json holds {runs} runs, expected {ITEMS}")


def measure(root: Path, repeats: int) -> tuple[dict[str, list[Timed]], dict[str, list[dict[str, float]]]]:
    out = root / "phases.json"
    env = clean_env(root, {"PYTHONPATH": str(root), "BENCH_PHASES_OUT": str(out)})
    cmds = {
        REPLAY: [*base_cmd(), "--promptab-cache", "replay", "-p", "_bench_phases", "replay/wf.yaml"],
        PYTHON: [*base_cmd(), "-p", "_bench_phases", "python/wf.yaml"],
    }
    phases: dict[str, list[dict[str, float]]] = {label: [] for label in cmds}

    def runner(label: str) -> Callable[[], Timed]:
        def once() -> Timed:
            (root / ".promptab" / "results.json").unlink(missing_ok=True)
            timed = run(cmds[label], root, env)
            check(label, timed.proc.stdout, root)
            stamps = json.loads(out.read_text())
            found = re.search(r" in ([0-9.]+)s", timed.proc.stdout.strip().splitlines()[-1])
            stamps["pytest"] = float(found.group(1)) if found else float("nan")
            phases[label].append(stamps)
            return timed

        return once

    runners = {label: runner(label) for label in cmds}
    for once in runners.values():  # warm-up, and a first check of each outcome
        once()
    for values in phases.values():
        values.clear()
    series = interleaved(runners, repeats)
    return {label: s.runs for label, s in series.items()}, phases


def profile(root: Path) -> None:
    """Where a replayed session's test phase goes: cProfile of a replay at
    concurrency 1 (pool threads are invisible to cProfile), top functions."""
    import pstats

    env = clean_env(root, {"PYTHONPATH": str(root)})
    out = root / "replay.prof"
    run([sys.executable, "-m", "cProfile", "-o", str(out), *base_cmd()[1:], "--promptab-cache", "replay",
         "--promptab-concurrency", "1", "replay/wf.yaml"], root, env)
    stats = pstats.Stats(str(out))
    rows = sorted(stats.stats.items(), key=lambda fd: -fd[1][3])  # type: ignore[attr-defined]
    mine = [(f, d) for f, d in rows if "pytest_promptab" in f[0]][:20]
    print("\n## replay at concurrency 1 under cProfile: top pytest_promptab functions by cumulative ms")
    print(table([[f"{f[0].split('pytest_promptab/')[-1]}:{f[1]}({f[2]})", d[1], ms(d[3])] for f, d in mine],
                ["function", "calls", "cumulative ms"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per configuration (default 5)")
    parser.add_argument("--profile", action="store_true", help="also profile a replay with cProfile")
    args = parser.parse_args(argv)

    print_machine(machine_info())
    with tempfile.TemporaryDirectory(prefix="promptab-bench-replay-") as tmp:
        root = Path(tmp)
        build(root)
        recorded = record(root)
        print(f"\n## {ITEMS} items, {recorded} recordings; {args.repeats} interleaved runs per configuration "
              f"(load average before: {load_average()})")
        runs, phases = measure(root, args.repeats)
        if args.profile:
            profile(root)

    def median(label: str, what: str) -> float:
        if what == "wall":
            return statistics.median(t.wall for t in runs[label])
        if what == "cpu":
            return statistics.median(t.cpu for t in runs[label])
        if what == "phase":
            return statistics.median(s["last_item_end"] - s["loop_start"] for s in phases[label])
        return statistics.median(s[what] for s in phases[label])

    rows = []
    for what, name in (("wall", "whole process, wall"), ("cpu", "whole process, CPU"),
                       ("pytest", "pytest 'in X s'"), ("phase", "test phase (loop start to last item)")):
        replay, python = median(REPLAY, what), median(PYTHON, what)
        rows.append([name, ms(replay), ms(python), f"{replay / python:.2f}"])
    print(table(rows, ["median ms", REPLAY, PYTHON, "ratio"]))
    ratio = median(REPLAY, "wall") / median(PYTHON, "wall")
    met = ratio <= GOAL_RATIO
    print(f"\nreplay / instant python, whole process: {ratio:.2f}; goal (<= {GOAL_RATIO}) {'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
