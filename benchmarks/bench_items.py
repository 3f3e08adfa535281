"""Benchmark: the cost per promptab item, against a plain parametrized test.

Goal (issue 2, "Performance"): with an instant ``python`` provider, 2,000
items cost at most 1.5 ms per item more than a plain
``@pytest.mark.parametrize("i", range(2000))`` test making the same call.

The workflow is one node, one ``contains`` check, a baseline and one
challenger, 10 cases and 100 runs each (2 x 10 x 100 = 2,000 items); its
provider is ``fast.py:generate``, which returns a constant string. The plain
test calls the same function and asserts the same thing. Each configuration
is a fresh ``python -m pytest -q -p no:cacheprovider`` process (promptab with
``--promptab-no-mlflow``), run ``--repeats`` times, interleaved. The user's
cost is the whole process: start-up, collection, the items, and the work
promptab does at session end (statistics, gate reports, results.json, the
table). A small timing plugin splits the wall time into those phases.

Usage:  python benchmarks/bench_items.py [--repeats 5] [--items 2000] [--profile] [--keep]
Exit status 0 when the goal is met (at the default concurrency), 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import (  # noqa: E402
    Series,
    clean_env,
    interleaved,
    load_average,
    machine_info,
    ms,
    paired_difference,
    print_machine,
    run,
    table,
)

GOAL_MS_PER_ITEM = 1.5
VARIANTS = 2
CASES = 10

PHASES_PLUGIN = '''"""Benchmark helper plugin: timestamps of the phases of a pytest run."""
import json
import os
import sys
import time

import pytest

_t = {}


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_collection(session):
    _t["collect_start"] = time.time()
    try:
        return (yield)
    finally:
        _t["collect_end"] = time.time()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtestloop(session):
    _t["loop_start"] = time.time()
    try:
        return (yield)
    finally:
        _t["loop_end"] = time.time()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    _t.setdefault("first_item", time.time())
    try:
        return (yield)
    finally:
        _t["last_item_end"] = time.time()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    _t["finish_start"] = time.time()
    try:
        return (yield)
    finally:
        _t["finish_end"] = time.time()


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    _t["unconfigure"] = time.time()
    _t["promptab_from"] = getattr(sys.modules.get("pytest_promptab"), "__file__", None)
    with open(os.environ["BENCH_PHASES_OUT"], "w") as handle:
        json.dump(_t, handle)
'''

PROVIDER = '''"""An instant provider: returns a constant string, whatever it is asked."""


def generate(request):
    return "ok, done"
'''

PLAIN_TEST = '''import pytest

from fast import generate


@pytest.mark.parametrize("i", range({n}))
def test_plain(i):
    assert "ok" in generate(i)
'''


def workflow_yaml(runs: int) -> str:
    cases = "\n".join(f"  - {{id: c{i}, inputs: {{name: n{i}}}}}" for i in range(CASES))
    return f"""name: bench
provider: {{type: python, callable: "fast.py:generate", model: instant}}
nodes:
  - id: answer
    prompt: "Say ok to {{{{ name }}}}"
cases:
{cases}
checks:
  - {{name: ok, type: contains, value: "ok"}}
ab_test:
  name: speed
  runs: {runs}
  variants:
    - name: other
      prompts: {{answer: "Reply ok to {{{{ name }}}}"}}
"""


def build(root: Path, items: int) -> None:
    (root / "pytest.ini").write_text("[pytest]\n")
    (root / "fast.py").write_text(PROVIDER)
    (root / "_bench_phases.py").write_text(PHASES_PLUGIN)
    (root / "test_plain.py").write_text(PLAIN_TEST.format(n=items))
    (root / "wf.yaml").write_text(workflow_yaml(items // (VARIANTS * CASES)))


PLAIN = "plain parametrize"
DEFAULT = "promptab, concurrency 8 (default)"
SERIAL = "promptab, concurrency 1"


def configs(items: int, compare: list[Path] | None = None) -> dict[str, tuple[list[str], dict[str, str]]]:
    """label -> (command, extra environment)."""
    base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    if importlib.util.find_spec("pytest_randomly") is not None:
        base += ["-p", "no:randomly"]  # keep the order, and the seeding work, out of both
    promptab = [*base, "--promptab", "--promptab-no-mlflow", "wf.yaml"]
    found: dict[str, tuple[list[str], dict[str, str]]] = {
        PLAIN: ([*base, "test_plain.py"], {}),
        DEFAULT: (promptab, {}),
        SERIAL: ([*promptab, "--promptab-concurrency", "1"], {}),
    }
    for directory in compare or []:
        # a scratch copy of the package, found before the installed one
        found[f"{DEFAULT} [{directory}]"] = (promptab, {"PYTHONPATH": str(directory.resolve())})
    return found


def check_outcome(label: str, stdout: str, root: Path, items: int) -> None:
    """A benchmark of a run that did not do its job measures nothing."""
    if f"{items} passed" not in stdout:
        raise SystemExit(f"{label}: expected '{items} passed' in the output:\n{stdout[-3000:]}")
    if label != PLAIN:
        results = json.loads((root / ".promptab" / "results.json").read_text())
        runs = sum(len(ab["runs"]) for ab in results["abtests"])
        if runs != items or "promptab summary" not in stdout:
            raise SystemExit(f"{label}: results.json holds {runs} runs, expected {items}, or no summary table")


def measure(root: Path, items: int, repeats: int,
            compare: list[Path]) -> tuple[dict[str, Series], dict[str, list[dict[str, float]]]]:
    phases: dict[str, list[dict[str, float]]] = {label: [] for label in configs(items, compare)}
    out = root / "phases.json"

    def runner(label: str, cmd: list[str], extra_env: dict[str, str]):  # type: ignore[no-untyped-def]
        path = os.pathsep.join(p for p in (extra_env.get("PYTHONPATH"), str(root)) if p)
        env = clean_env(root, {"PYTHONPATH": path, "BENCH_PHASES_OUT": str(out)})

        def once():  # type: ignore[no-untyped-def]
            results = root / ".promptab" / "results.json"
            results.unlink(missing_ok=True)
            started = time.time()
            timed = run([*cmd, "-p", "_bench_phases"], root, env)
            check_outcome(label, timed.proc.stdout, root, items)
            stamps = json.loads(out.read_text())
            where = stamps.pop("promptab_from")
            if extra_env and not str(where).startswith(extra_env["PYTHONPATH"] + os.sep):
                raise SystemExit(f"{label}: pytest_promptab was imported from {where}, not from the copy")
            stamps["start"], stamps["end"] = started, started + timed.wall
            phases[label].append(stamps)
            return timed

        return once

    runners = {label: runner(label, cmd, extra) for label, (cmd, extra) in configs(items, compare).items()}
    for once in runners.values():  # warm up (.pyc files, page cache) and check each outcome once
        once()
    for values in phases.values():
        values.clear()
    return interleaved(runners, repeats), phases


def phase_table(phases: dict[str, list[dict[str, float]]], items: int) -> list[list[object]]:
    spans = [
        ("start-up (imports, configure)", "start", "collect_start"),
        ("collection", "collect_start", "collect_end"),
        ("items (first to last)", "loop_start", "last_item_end"),
        ("after the last item, in the test loop (summary, gates)", "last_item_end", "loop_end"),
        ("sessionfinish (results.json, table)", "finish_start", "finish_end"),
        ("exit (unconfigure, interpreter shutdown)", "finish_end", "end"),
    ]
    rows = []
    for name, a, b in spans:
        row: list[object] = [name]
        for stamps in phases.values():
            row.append(ms(statistics.median(s[b] - s[a] for s in stamps)))
        rows.append(row)
    row = ["items phase, per item (ms)"]
    for stamps in phases.values():
        row.append(f"{statistics.median(s['last_item_end'] - s['loop_start'] for s in stamps) / items * 1000:.3f}")
    rows.append(row)
    return rows


def report(series: dict[str, Series], phases: dict[str, list[dict[str, float]]], items: int) -> float:
    """Prints the tables; returns the extra ms per item at the default concurrency."""
    plain = series[PLAIN]
    rows = []
    for label, s in series.items():
        wall, cpu = s.wall, s.cpu
        extra = (wall.median - plain.wall.median) / items * 1000
        paired, low, high = (x / items * 1000 for x in paired_difference(wall, plain.wall))
        rows.append([label, len(wall.values), ms(wall.median), f"{ms(wall.min)}-{ms(wall.max)}", ms(cpu.median),
                     f"{wall.median / items * 1000:.3f}", "-" if label == PLAIN else f"{extra:+.3f}",
                     "-" if label == PLAIN else f"{paired:+.3f} [{low:+.3f}, {high:+.3f}]"])
    print(table(rows, ["whole process", "runs", "wall median ms", "wall min-max ms", "CPU median ms",
                       "ms per item", "ms per item more than plain (medians)",
                       "same, per-round pairs: median [95% CI]"]))
    print("\nphases (median ms of the timed runs; 'items' starts at the test loop, so it includes promptab's "
          "prefetch of the runs):")
    print(table(phase_table(phases, items), ["phase", *series]))
    return (series[DEFAULT].wall.median - plain.wall.median) / items * 1000


def profile(root: Path, items: int, top: int) -> None:
    """cProfile of the plain run and of a promptab run at concurrency 1 (the
    pool threads are invisible to cProfile), grouped by package, then the top
    functions inside pytest_promptab."""
    import pstats

    env = clean_env(root, {"PYTHONPATH": str(root)})
    spec = importlib.util.find_spec("pytest_promptab")
    assert spec is not None and spec.origin is not None
    ours = str(Path(spec.origin).parent) + "/"
    cmds = configs(items)
    profiles = {}
    for label in (PLAIN, SERIAL):
        out = root / f"{'plain' if label == PLAIN else 'promptab'}.prof"
        run([sys.executable, "-m", "cProfile", "-o", str(out), *cmds[label][0][1:]], root, env)
        profiles[label] = pstats.Stats(str(out))

    def group(filename: str) -> str:
        if filename.startswith(ours):
            return "pytest_promptab"
        for marker in ("/_pytest/", "/pluggy/", "/pydantic/", "/pydantic_core/", "/jinja2/", "/markupsafe/",
                       "/yaml/", "/numpy/", "/scipy/", "/tabulate/", "/concurrent/", "/json/", "/dataclasses"):
            if marker in filename:
                return marker.strip("/")
        if filename.startswith("~") or filename.startswith("<"):
            return "builtins / C"
        if "site-packages" in filename:
            return "other site-packages"
        return "stdlib / other"

    totals: dict[str, dict[str, float]] = {}
    for label, stats in profiles.items():
        for func, (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
            key = group(func[0])
            totals.setdefault(key, {}).setdefault(label, 0.0)
            totals[key][label] += tottime
    rows = sorted(totals.items(), key=lambda kv: -kv[1].get(SERIAL, 0.0))
    print("\n## where the time goes (cProfile, self time by package, ms; cProfile slows Python code down)")
    print(table([[k, ms(v.get(PLAIN, 0.0)), ms(v.get(SERIAL, 0.0))] for k, v in rows],
                ["package", PLAIN, SERIAL]))

    stats = profiles[SERIAL]
    mine = [(func, data) for func, data in stats.stats.items() if func[0].startswith(ours)]  # type: ignore[attr-defined]

    def name(func: tuple[str, int, str]) -> str:
        return f"{func[0][len(ours):]}:{func[1]}({func[2]})"

    print(f"\n## top {top} pytest_promptab functions by cumulative time (ms; calls)")
    mine.sort(key=lambda fd: -fd[1][3])
    print(table([[name(f), d[1], ms(d[3]), ms(d[2])] for f, d in mine[:top]], ["function", "calls", "cumulative", "self"]))
    print(f"\n## top {top} functions anywhere by self time, promptab run")
    everything = sorted(stats.stats.items(), key=lambda fd: -fd[1][2])  # type: ignore[attr-defined]
    print(table([[f"{f[0].split('site-packages/')[-1]}:{f[1]}({f[2]})", d[1], ms(d[2]), ms(d[3])] for f, d in everything[:top]],
                ["function", "calls", "self", "cumulative"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per configuration (default 5)")
    parser.add_argument("--items", type=int, default=2000, help=f"items, a multiple of {VARIANTS * CASES} (default 2000)")
    parser.add_argument("--profile", action="store_true", help="also profile a plain and a promptab run with cProfile")
    parser.add_argument("--top", type=int, default=25, help="functions listed by --profile (default 25)")
    parser.add_argument("--compare", type=Path, action="append", default=[], metavar="DIR",
                        help="also time the promptab run with the package found in DIR (a scratch copy holding "
                             "pytest_promptab/), to measure a change; repeatable")
    parser.add_argument("--keep", action="store_true", help="keep the generated files and print where they are")
    args = parser.parse_args(argv)
    if args.items < VARIANTS * CASES or args.items % (VARIANTS * CASES):
        parser.error(f"--items must be a positive multiple of {VARIANTS * CASES}")

    print_machine(machine_info())
    kept = tempfile.mkdtemp(prefix="promptab-bench-items-") if args.keep else None
    with tempfile.TemporaryDirectory(prefix="promptab-bench-items-") as auto:
        root = Path(kept or auto)
        build(root, args.items)
        if kept:
            print(f"files kept in {root}")
        print(f"\n## {args.items} items: {args.repeats} interleaved runs per configuration "
              f"(load average before: {load_average()})")
        series, phases = measure(root, args.items, args.repeats, args.compare)
        extra = report(series, phases, args.items)
        print(f"load average after: {load_average()}")
        if args.profile:
            profile(root, args.items, args.top)
    ok = extra <= GOAL_MS_PER_ITEM
    print(f"\nper-item goal (<= {GOAL_MS_PER_ITEM} ms more than plain, default concurrency, whole process): "
          f"{'MET' if ok else 'MISSED'} ({extra:+.3f} ms per item)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
