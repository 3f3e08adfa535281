"""Benchmark: a big session's whole cost, and a small session's start.

Goals (issue 9, point 5, "cheap session end"), measured side by side in one
run, every configuration a fresh ``python -m pytest -q -p no:cacheprovider``
process, interleaved in shuffled rounds:

1. 10,000 instant runs (``python`` provider, one node, one ``contains``
   check, 2 variants x 10 cases x 500 runs) take at most 1.25x the wall time
   of a plain ``@pytest.mark.parametrize("i", range(10000))`` test making the
   same call, and at most 2x its peak RSS (the process's ``ru_maxrss``, from
   ``wait4``). Whole process: start-up, collection, the items, the
   statistics, the gate reports, results.json, the table, exit.
2. From the process start to the first item, a 2-run session (2 variants x
   1 case x 1 run) with ``--promptab-no-mlflow`` takes at most 0.3 s more than
   a plain 2-test parametrize: the statistics (numpy, scipy) are imported
   after the last item, not before the first. The script also lists which
   of numpy / scipy / mlflow were already imported when the first item
   started.

MLflow logging is OFF (``--promptab-no-mlflow``) for every configuration the
goals are judged on. ``--mlflow`` adds configurations with logging ON, to a
new sqlite store in the temporary folder, for comparison (their figures
include MLflow's start and the logging; see bench_mlflow.py for its goal).

Usage:  python benchmarks/bench_session_end.py [--repeats 5] [--items 10000] [--mlflow] [--keep]
Exit status 0 when every goal is met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import (  # noqa: E402
    CommandFailed,
    clean_env,
    load_average,
    machine_info,
    paired_difference,
    print_machine,
    table,
)
from bench_items import PHASES_PLUGIN, PLAIN_TEST, PROVIDER, workflow_yaml  # noqa: E402

GOAL_WALL_RATIO = 1.25
GOAL_RSS_RATIO = 2.0
GOAL_FIRST_ITEM_S = 0.3
VARIANTS, CASES = 2, 10

FIRST_ITEM_PLUGIN = '''"""Benchmark helper plugin: when the first item starts, and what was imported by then."""
import json
import os
import sys
import time

import pytest

_seen = {}


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    if not _seen:
        _seen["first_item"] = time.time()
        _seen["heavy"] = sorted(m for m in ("numpy", "scipy", "scipy.stats", "mlflow") if m in sys.modules)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    _seen["promptab_from"] = getattr(sys.modules.get("pytest_promptab"), "__file__", None)
    with open(os.environ["BENCH_FIRST_OUT"], "w") as handle:
        json.dump(_seen, handle)
'''

STATS_IMPORT_PLUGIN = '''"""Benchmark helper plugin: import what promptab's statistics import, after the last test."""


def pytest_sessionfinish(session):
    import pytest_promptab.analysis.summarize  # noqa: F401  (what a session end imports for its statistics)
'''

SMALL_WORKFLOW = """name: small
provider: {type: python, callable: "fast.py:generate", model: instant}
nodes:
  - id: answer
    prompt: "Say ok to {{ name }}"
inputs: {name: you}
checks:
  - {name: ok, type: contains, value: "ok"}
ab_test:
  name: start
  runs: 1
  variants:
    - name: other
      prompts: {answer: "Reply ok to {{ name }}"}
"""


@dataclass
class Sample:
    wall: float
    cpu: float
    max_rss_kb: int
    stdout: str


def run_measured(cmd: list[str], cwd: Path, env: dict[str, str]) -> Sample:
    """Run ``cmd``; wall time, CPU time and peak RSS of that one process
    (``os.wait4``: ``RUSAGE_CHILDREN`` would give the largest child ever)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if proc.returncode != 0:
        tail = "\n".join((stdout + stderr).splitlines()[-30:])
        raise CommandFailed(f"{' '.join(cmd)} exited with {proc.returncode} in {cwd}:\n{tail}")
    return Sample(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, stdout)


def build(root: Path, items: int) -> None:
    (root / "pytest.ini").write_text("[pytest]\n")
    (root / "fast.py").write_text(PROVIDER)
    (root / "_bench_phases.py").write_text(PHASES_PLUGIN)
    (root / "_bench_first.py").write_text(FIRST_ITEM_PLUGIN)
    (root / "_bench_stats_import.py").write_text(STATS_IMPORT_PLUGIN)
    big, small = root / "big", root / "small"
    for folder, n, workflow in ((big, items, workflow_yaml(items // (VARIANTS * CASES))), (small, 2, SMALL_WORKFLOW)):
        folder.mkdir()
        (folder / "pytest.ini").write_text("[pytest]\n")
        (folder / "fast.py").write_text(PROVIDER)
        (folder / "test_plain.py").write_text(PLAIN_TEST.format(n=n))
        (folder / "wf.yaml").write_text(workflow)


BASE = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
try:
    import pytest_randomly  # noqa: F401

    BASE += ["-p", "no:randomly"]
except ImportError:
    pass

OFF = ["--promptab", "--promptab-no-mlflow", "wf.yaml"]
OURS = str(Path(__file__).resolve().parent.parent / "pytest_promptab") if (
    Path(__file__).resolve().parent.parent / "pytest_promptab").is_dir() else ""
"""The package next to this script: the one measured (put its folder first on PYTHONPATH)."""
PLAIN_STATS = "plain parametrize + importing promptab's statistics at the end (for reference)"


def big_configs(mlflow: bool, compare: list[Path]) -> dict[str, list[str]]:
    found = {
        "plain parametrize": [*BASE, "test_plain.py", "-p", "_bench_phases"],
        "promptab, MLflow off": [*BASE, *OFF, "-p", "_bench_phases"],
        PLAIN_STATS: [*BASE, "test_plain.py", "-p", "_bench_phases", "-p", "_bench_stats_import"],
    }
    for directory in compare:
        found[f"promptab [{directory}], MLflow off"] = found["promptab, MLflow off"]
    if mlflow:
        found["promptab, MLflow ON (sqlite store)"] = [*BASE, "--promptab", "wf.yaml", "-p", "_bench_phases"]
    return found


def small_configs(mlflow: bool, compare: list[Path]) -> dict[str, list[str]]:
    found = {
        "plain parametrize, 2 tests": [*BASE, "test_plain.py", "-p", "_bench_first"],
        "promptab 2 runs, MLflow off": [*BASE, *OFF, "-p", "_bench_first"],
    }
    for directory in compare:
        found[f"promptab [{directory}] 2 runs, MLflow off"] = found["promptab 2 runs, MLflow off"]
    if mlflow:
        found["promptab 2 runs, MLflow ON (sqlite store)"] = [*BASE, "--promptab", "wf.yaml", "-p", "_bench_first"]
    return found


def package_of(label: str) -> str:
    """The folder the configuration's pytest_promptab must come from."""
    if label.startswith("promptab [") and "]" in label:
        return str(Path(label[len("promptab ["):label.index("]")]).resolve() / "pytest_promptab")
    return OURS


def check(label: str, sample: Sample, folder: Path, items: int) -> None:
    """A benchmark of a run that did not do its job measures nothing."""
    if f"{items} passed" not in sample.stdout:
        raise SystemExit(f"{label}: expected '{items} passed' in the output:\n{sample.stdout[-3000:]}")
    if label.startswith("promptab"):
        results = json.loads((folder / ".promptab" / "results.json").read_text())
        runs = sum(len(ab["runs"]) for ab in results["abtests"])
        if runs != items or "promptab summary" not in sample.stdout:
            raise SystemExit(f"{label}: results.json holds {runs} runs, expected {items}, or no summary table")
        if ("MLflow ON" in label) != bool(results.get("mlflow_uri")) or results.get("mlflow_error"):
            raise SystemExit(f"{label}: MLflow logging was not as labelled: {results.get('mlflow_uri')!r}, "
                             f"{results.get('mlflow_error')!r}")


def measure(root: Path, folder: Path, configs: dict[str, list[str]], items: int, repeats: int,
            stamps_file: Path) -> dict[str, list[tuple[Sample, dict]]]:
    """Every configuration ``repeats`` times in shuffled rounds, after a
    warm-up each; returns label -> [(sample, the helper plugin's stamps)]."""
    import random

    env = clean_env(root, {"PYTHONPATH": str(root), "BENCH_PHASES_OUT": str(stamps_file),
                           "BENCH_FIRST_OUT": str(stamps_file),
                           "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}"})

    def once(label: str) -> tuple[Sample, dict]:
        (folder / ".promptab" / "results.json").unlink(missing_ok=True)
        package = package_of(label)
        started = time.time()
        path = os.pathsep.join([str(Path(package).parent), env["PYTHONPATH"]])
        sample = run_measured(configs[label], folder, {**env, "PYTHONPATH": path})
        check(label, sample, folder, items)
        stamps = json.loads(stamps_file.read_text())
        where = stamps.pop("promptab_from", None)
        if label.startswith("promptab") and where and not where.startswith(package):
            raise SystemExit(f"{label}: pytest_promptab was imported from {where}, not from {package}")
        stamps["start"], stamps["end"] = started, started + sample.wall
        return sample, stamps

    for label in configs:
        once(label)  # warm-up: .pyc files, page cache, the sqlite store
    found: dict[str, list[tuple[Sample, dict]]] = {label: [] for label in configs}
    labels, rng = list(configs), random.Random(0)
    for round_no in range(repeats):
        rng.shuffle(labels)
        for label in labels:
            found[label].append(once(label))
        print(f"  round {round_no + 1}/{repeats} done (load {load_average()})", file=sys.stderr, flush=True)
    return found


def median(values: list[float]) -> float:
    return statistics.median(values)


def report_big(found: dict[str, list[tuple[Sample, dict]]], items: int) -> tuple[float, float]:
    plain_label = next(iter(found))
    plain = found[plain_label]
    plain_wall = median([s.wall for s, _ in plain])
    plain_rss = median([s.max_rss_kb for s, _ in plain])
    plain_cpu = median([s.cpu for s, _ in plain])
    rows = []
    for label, samples in found.items():
        wall = [s.wall for s, _ in samples]
        ratios = [s.wall / p.wall for (s, _), (p, _) in zip(samples, plain)]
        rss = [s.max_rss_kb for s, _ in samples]
        rows.append([label, len(samples), f"{median(wall) * 1000:.0f}", f"{min(wall) * 1000:.0f}-{max(wall) * 1000:.0f}",
                     f"{median([s.cpu for s, _ in samples]) * 1000:.0f}",
                     f"{median([s.cpu for s, _ in samples]) / plain_cpu:.3f}",
                     f"{median(wall) / plain_wall:.3f}", f"{median(ratios):.3f}",
                     f"{median(rss) / 1024:.0f}", f"{median(rss) / plain_rss:.2f}"])
    print(table(rows, ["whole process", "runs", "wall median ms", "wall min-max ms", "CPU median ms",
                       "CPU / plain", "wall / plain (medians)", "wall / plain (per-round median)", "peak RSS median MB",
                       "RSS / plain"]))
    spans = [
        ("start-up (imports, configure)", "start", "collect_start"),
        ("collection", "collect_start", "collect_end"),
        ("test loop start to first item (prefetch)", "loop_start", "first_item"),
        ("items, first to last", "first_item", "last_item_end"),
        ("after the last item, in the test loop (statistics, results.json, gates)", "last_item_end", "loop_end"),
        ("sessionfinish (MLflow, results.json again)", "finish_start", "finish_end"),
        ("terminal summary, unconfigure", "finish_end", "unconfigure"),
        ("interpreter exit", "unconfigure", "end"),
    ]
    rows = []
    for name, a, b in spans:
        rows.append([name, *(f"{median([st[b] - st[a] for _, st in samples]) * 1000:.0f}" for samples in found.values())])
    print("\nphases, median ms:")
    print(table(rows, ["phase", *found]))
    promptab = found["promptab, MLflow off"]
    wall_ratio = median([s.wall for s, _ in promptab]) / plain_wall
    rss_ratio = median([s.max_rss_kb for s, _ in promptab]) / plain_rss
    return wall_ratio, rss_ratio


def report_small(found: dict[str, list[tuple[Sample, dict]]]) -> float:
    plain_label = next(iter(found))
    plain = [st["first_item"] - st["start"] for _, st in found[plain_label]]
    rows = []
    for label, samples in found.items():
        first = [st["first_item"] - st["start"] for _, st in samples]
        diff, low, high = paired_difference(_Values(first), _Values(plain))
        heavy = sorted({m for _, st in samples for m in st["heavy"]})
        rows.append([label, len(samples), f"{median(first) * 1000:.0f}", f"{min(first) * 1000:.0f}-{max(first) * 1000:.0f}",
                     "-" if label == plain_label else f"{(median(first) - median(plain)) * 1000:+.0f}",
                     "-" if label == plain_label else f"{diff * 1000:+.0f} [{low * 1000:+.0f}, {high * 1000:+.0f}]",
                     f"{median([s.wall for s, _ in samples]) * 1000:.0f}", ", ".join(heavy) or "none"])
    print(table(rows, ["2-item session", "runs", "start to first item, median ms", "min-max ms",
                       "more than plain (medians), ms", "per-round pairs: median [95% CI], ms",
                       "whole process median ms", "numpy/scipy/mlflow imported before the first item"]))
    promptab = [st["first_item"] - st["start"] for _, st in found["promptab 2 runs, MLflow off"]]
    return median(promptab) - median(plain)


class _Values:
    """What :func:`paired_difference` reads (``.values``)."""

    def __init__(self, values: list[float]) -> None:
        self.values = values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per configuration (default 5)")
    parser.add_argument("--items", type=int, default=10_000, help="runs of the big session (default 10000)")
    parser.add_argument("--small-repeats", type=int, default=None, help="rounds of the 2-run session (default 3x --repeats)")
    parser.add_argument("--mlflow", action="store_true", help="also measure with MLflow logging ON (sqlite store)")
    parser.add_argument("--compare", type=Path, action="append", default=[], metavar="DIR",
                        help="also time promptab with the package in DIR/pytest_promptab (e.g. an older commit: "
                             "git archive COMMIT pytest_promptab | tar -x -C DIR), MLflow off; repeatable")
    parser.add_argument("--keep", action="store_true", help="keep the generated files and print where they are")
    args = parser.parse_args(argv)
    if args.items < VARIANTS * CASES or args.items % (VARIANTS * CASES):
        parser.error(f"--items must be a positive multiple of {VARIANTS * CASES}")

    print_machine(machine_info())
    kept = tempfile.mkdtemp(prefix="promptab-bench-end-") if args.keep else None
    with tempfile.TemporaryDirectory(prefix="promptab-bench-end-") as auto:
        root = Path(kept or auto)
        build(root, args.items)
        if kept:
            print(f"files kept in {root}")
        stamps = root / "stamps.json"
        print(f"\n## {args.items} instant runs, {args.repeats} interleaved rounds (load average before: {load_average()})")
        big = measure(root, root / "big", big_configs(args.mlflow, args.compare), args.items, args.repeats, stamps)
        wall_ratio, rss_ratio = report_big(big, args.items)
        small_repeats = args.small_repeats or 3 * args.repeats
        print(f"\n## start to first item, 2-run session, {small_repeats} interleaved rounds "
              f"(load average before: {load_average()})")
        small = measure(root, root / "small", small_configs(args.mlflow, args.compare), 2, small_repeats, stamps)
        first_more = report_small(small)
        print(f"load average after: {load_average()}")
    goals: list[tuple[str, bool, str]] = [
        (f"{args.items} runs, wall <= {GOAL_WALL_RATIO}x plain (MLflow off)", wall_ratio <= GOAL_WALL_RATIO, f"{wall_ratio:.3f}x"),
        (f"{args.items} runs, peak RSS <= {GOAL_RSS_RATIO}x plain (MLflow off)", rss_ratio <= GOAL_RSS_RATIO, f"{rss_ratio:.2f}x"),
        (f"2 runs, start to first item <= plain + {GOAL_FIRST_ITEM_S} s (MLflow off)", first_more <= GOAL_FIRST_ITEM_S,
         f"{first_more * 1000:+.0f} ms"),
    ]
    print()
    for name, ok, figure in goals:
        print(f"goal: {name}: {'MET' if ok else 'MISSED'} ({figure})")
    return 0 if all(ok for _, ok, _ in goals) else 1


if __name__ == "__main__":
    sys.exit(main())
