"""Benchmark: provider throughput against a loopback OpenAI-compatible server.

Goals (issue 11), each measured for this tree ("new") and, side by side, for
an earlier commit ("base", default ``a5b5c5e``, taken with ``git archive``):

- ``200@100ms c16``: 200 calls answered after 100 ms each, concurrency 16:
  test phase <= 1.3 x the ideal 200 x 0.1 / 16 = 1.25 s (<= 1.6 s).
- ``200@100ms c32`` and ``c64``: the server sees the full concurrency in flight.
- ``2000@50ms c32``: 2,000 calls at 50 ms, concurrency 32: test phase within
  the ideal (3.125 s) + 1.5 ms per item.
- CPU per call, before and after: the process's user + system time during
  the test phase over the calls (all threads), and the whole process's CPU
  (start-up and session end included) over the calls.

The server is the test suite's ``tests/fake_openai.py`` (a real HTTP server
on 127.0.0.1) in this process; its own CPU per call is printed too, so that
a server that cannot keep up would show. Each measurement is a fresh
``python -m pytest -q --promptab --promptab-no-mlflow --promptab-concurrency N``
process on a workflow of 2 variants x 10 cases x (calls / 20) runs with an
``openai`` provider; a small timing plugin takes the test phase (from the
start of pytest's test loop, where promptab submits the runs, to the end of
the last item). Every run is checked before its figures are used: all items
passed, the server got exactly one request per item and never more in
flight than the concurrency.

Rounds are interleaved: each round runs every (scenario, implementation) in
a shuffled order, so that the load of a shared machine hits both alike;
medians over the rounds are shown, with the range.

The table also says when the server got the first request after the test
loop started (client start-up: imports, the first provider, the threads) and
how long after the server's last answer the last item was reported.

``--profile yappi`` runs one scenario once per implementation under yappi
(deterministic, CPU clock, every thread: pytest's and the runner's) and
prints where the CPU goes: per thread, and the top functions by own time.
``--profile py-spy`` samples the thread holding the GIL instead (much less
distortion) and counts the test phase only: by area (pytest, the runner, the
engine, the openai provider, httpcore, h11, ...) and by function. Both are
dev tools (``pip install yappi py-spy``), not dependencies; ``--keep DIR``
keeps the raw profiles.

Usage:  python benchmarks/bench_concurrency.py [--rounds 3] [--base REF|none] [--scenarios ...]
        python benchmarks/bench_concurrency.py --profile py-spy|yappi [--scenarios 2000@50ms:c32]
Exit status 0 when every goal is met by the new implementation, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))  # for tests.fake_openai

from _profiles import YAPPI_PLUGIN, py_spy_command, py_spy_report, yappi_report  # noqa: E402
from _util import clean_env, load_average, machine_info, print_machine, run, table  # noqa: E402

from tests.fake_openai import FakeOpenAI, InFlight  # noqa: E402

VARIANTS, CASES = 2, 10
PHASE_RATIO_GOAL = 1.3
PER_ITEM_GOAL_S = 0.0015
DEFAULT_BASE = "a5b5c5e"

PHASES_PLUGIN = '''"""Benchmark helper plugin: when the test loop starts and the last item ends."""
import json
import os
import time

import pytest

_t = {}


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtestloop(session):
    _t["loop_start"] = time.perf_counter()
    _t["loop_start_epoch"] = time.time()
    _t["cpu_loop_start"] = time.process_time()
    return (yield)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    try:
        return (yield)
    finally:
        _t["last_item_end"] = time.perf_counter()
        _t["cpu_last_item_end"] = time.process_time()
        _t["last_item_end_epoch"] = time.time()


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    with open(os.environ["BENCH_PHASES_OUT"], "w") as handle:
        json.dump(_t, handle)
'''



class Timeline(InFlight):
    """:class:`InFlight`, plus when the server answered its first and last
    request (``time.time()``, comparable with the pytest process's stamps)."""

    def __init__(self, fake: FakeOpenAI) -> None:
        super().__init__(fake)
        self.first: float | None = None
        self.last = 0.0

    def __call__(self, body: object) -> str:
        now = time.time()
        if self.first is None:
            self.first = now
        self.last = now
        return super().__call__(body)


@dataclass(frozen=True)
class Scenario:
    calls: int
    delay: float
    concurrency: int

    @property
    def name(self) -> str:
        return f"{self.calls}@{self.delay * 1000:.0f}ms:c{self.concurrency}"

    @property
    def ideal(self) -> float:
        return self.calls * self.delay / self.concurrency

    @property
    def goal(self) -> tuple[str, float | None]:
        """(what the goal is, the test phase limit in s or None)."""
        if self.calls >= 1000:
            limit = self.ideal + PER_ITEM_GOAL_S * self.calls
            return f"phase <= ideal + {PER_ITEM_GOAL_S * 1000:g} ms/item = {limit:.2f} s", limit
        if self.concurrency <= 16:
            limit = PHASE_RATIO_GOAL * self.ideal
            return f"phase <= {PHASE_RATIO_GOAL} x ideal = {limit:.2f} s", limit
        return f"server sees {self.concurrency} in flight", None


DEFAULT_SCENARIOS = ["200@100ms:c16", "200@100ms:c32", "200@100ms:c64", "2000@50ms:c32"]


def parse_scenario(text: str) -> Scenario:
    found = re.fullmatch(r"(\d+)@(\d+(?:\.\d+)?)ms:c(\d+)", text)
    if not found:
        raise argparse.ArgumentTypeError(f"{text!r}: expected CALLS@DELAYms:cCONCURRENCY, e.g. 200@100ms:c16")
    return Scenario(int(found.group(1)), float(found.group(2)) / 1000, int(found.group(3)))


def workflow_yaml(base_url: str, calls: int) -> str:
    runs = calls // (VARIANTS * CASES)
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


def export_base(ref: str, into: Path) -> Path:
    """The package as it was at ``ref`` (``git archive``), under ``into``."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "pytest_promptab"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def measure(root: Path, fake: FakeOpenAI, package_root: Path, scenario: Scenario,
            extra_plugins: tuple[str, ...] = (), extra_env: dict[str, str] | None = None,
            wrapper: list[str] | None = None) -> dict[str, float]:
    calls = scenario.calls // (VARIANTS * CASES) * VARIANTS * CASES
    (root / "wf.yaml").write_text(workflow_yaml(fake.base_url, calls))
    fake.reset()
    fake.delay_s = scenario.delay
    gauge = Timeline(fake)
    out = root / "phases.json"
    env = clean_env(root, {"PYTHONPATH": f"{package_root}:{root}", "BENCH_PHASES_OUT": str(out), **(extra_env or {})})
    cmd = [*(wrapper or []), sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "_bench_phases",
           *[arg for plugin in extra_plugins for arg in ("-p", plugin)],
           "--promptab", "--promptab-no-mlflow", "--promptab-concurrency", str(scenario.concurrency), "wf.yaml"]
    server_before = resource.getrusage(resource.RUSAGE_SELF)
    timed = run(cmd, root, env)
    server_after = resource.getrusage(resource.RUSAGE_SELF)
    if f"{calls} passed" not in timed.proc.stdout:
        raise SystemExit(f"{scenario.name} ({package_root}): expected '{calls} passed':\n{timed.proc.stdout[-3000:]}")
    if len(fake.completions) != calls or gauge.max > scenario.concurrency:
        raise SystemExit(f"{scenario.name} ({package_root}): the server got {len(fake.completions)} requests "
                         f"(expected {calls}), at most {gauge.max} at once")
    stamps = json.loads(out.read_text())
    server_cpu = (server_after.ru_utime - server_before.ru_utime) + (server_after.ru_stime - server_before.ru_stime)
    return {
        "phase": stamps["last_item_end"] - stamps["loop_start"],
        "phase_cpu_ms": (stamps["cpu_last_item_end"] - stamps["cpu_loop_start"]) / calls * 1000,
        "process_cpu_ms": timed.cpu / calls * 1000,
        "server_cpu_ms": server_cpu / calls * 1000,
        "wall": timed.wall,
        "in_flight": gauge.max,
        # the first answer's arrival (answer - delay) after the loop started, and the last item after the last answer
        "start_lag": (gauge.first or 0.0) - scenario.delay - stamps["loop_start_epoch"],
        "end_lag": stamps["last_item_end_epoch"] - gauge.last,
    }


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return f"load average: {load_average()}"


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    text = fmt.format(statistics.median(values))
    if len(values) > 1:
        text += f" ({fmt.format(min(values))}-{fmt.format(max(values))})"
    return text


def report(scenarios: list[Scenario], impls: list[str], results: dict[tuple[str, str], list[dict[str, float]]]) -> bool:
    """Print the side-by-side table; True when "new" meets every goal."""
    rows = []
    all_met = True
    for scenario in scenarios:
        what, limit = scenario.goal
        for impl in impls:
            samples = results[(scenario.name, impl)]
            phase = statistics.median(s["phase"] for s in samples)
            in_flight = min(int(s["in_flight"]) for s in samples)
            met = phase <= limit if limit is not None else in_flight >= scenario.concurrency
            if impl == "new":
                all_met &= met
            rows.append([
                scenario.name, impl, spread([s["phase"] for s in samples]), f"{scenario.ideal:.2f}",
                f"{phase / scenario.ideal:.2f}", f"{min(int(s['in_flight']) for s in samples)}-"
                f"{max(int(s['in_flight']) for s in samples)}",
                spread([s["phase_cpu_ms"] for s in samples]), spread([s["process_cpu_ms"] for s in samples]),
                spread([s["server_cpu_ms"] for s in samples]),
                spread([s["start_lag"] * 1000 for s in samples], "{:.0f}"), spread([s["end_lag"] * 1000 for s in samples], "{:.0f}"),
                spread([s["wall"] for s in samples]),
                f"{what}: {'met' if met else 'MISSED'}",
            ])
    print(table(rows, ["scenario", "impl", "test phase s", "ideal s", "ratio", "max in flight",
                       "CPU ms/call (test phase)", "CPU ms/call (process)", "server CPU ms/call",
                       "first request ms", "last item ms", "process wall s", "goal"]))
    return all_met


def profile(root: Path, fake: FakeOpenAI, packages: dict[str, Path], scenario: Scenario, tool: str, top: int) -> None:
    """One run per implementation under ``tool`` (yappi or py-spy), and what it saw."""
    (root / "_bench_yappi.py").write_text(YAPPI_PLUGIN)
    for impl, package_root in packages.items():
        if tool == "yappi":
            out = root / f"yappi-{impl}.json"
            row = measure(root, fake, package_root, scenario, ("_bench_yappi",), {"BENCH_YAPPI_OUT": str(out)})
            print(f"\n### {impl}: {scenario.name} under yappi (CPU clock; slows Python code down): "
                  f"test phase {row['phase']:.2f} s, CPU {row['phase_cpu_ms']:.2f} ms/call in the test phase")
            print(yappi_report(out, scenario.calls, top))
        else:
            out = root / f"py-spy-{impl}.txt"
            row = measure(root, fake, package_root, scenario, wrapper=py_spy_command(out))
            print(f"\n### {impl}: {scenario.name} under py-spy (1000 Hz, GIL holder only): test phase {row['phase']:.2f} s")
            print(py_spy_report(out, scenario.calls, top))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--base", default=DEFAULT_BASE,
                        help=f"git ref of the previous implementation (default {DEFAULT_BASE}); 'none' to skip it")
    parser.add_argument("--scenarios", type=parse_scenario, nargs="+",
                        default=[parse_scenario(s) for s in DEFAULT_SCENARIOS], help="CALLS@DELAYms:cN ...")
    parser.add_argument("--profile", choices=("yappi", "py-spy"),
                        help="profile one scenario (the last given) instead: yappi (deterministic, every thread) "
                        "or py-spy (sampling the thread holding the GIL, i.e. where the CPU goes)")
    parser.add_argument("--top", type=int, default=25, help="functions shown by --profile (default 25)")
    parser.add_argument("--keep", type=Path, help="copy the profiles (yappi JSON, py-spy raw stacks) into this folder")
    args = parser.parse_args(argv)

    print_machine(machine_info())
    print(f"uptime before: {uptime()}")
    print("(a shared machine: other processes run too, so wall times include their load)")
    with tempfile.TemporaryDirectory(prefix="promptab-bench-concurrency-") as tmp, FakeOpenAI() as fake:
        root = Path(tmp)
        (root / "pytest.ini").write_text("[pytest]\n")
        (root / "_bench_phases.py").write_text(PHASES_PLUGIN)
        packages = {}
        if args.base != "none":
            packages["base"] = export_base(args.base, root / "base")
        packages["new"] = REPO
        impls = list(packages)
        warm = Scenario(VARIANTS * CASES * 2, 0.0, 8)
        for package_root in packages.values():
            measure(root, fake, package_root, warm)  # warm-up: .pyc files, page cache
        if args.profile:
            profile(root, fake, packages, args.scenarios[-1], args.profile, args.top)
            if args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
                for kept in [*root.glob("yappi-*.json"), *root.glob("py-spy-*.txt")]:
                    shutil.copy(kept, args.keep / kept.name)
            print(f"\nuptime after: {uptime()}")
            return 0
        print(f"\n## {len(args.scenarios)} scenarios x {impls} x {args.rounds} interleaved rounds "
              f"(base = {args.base}, new = {REPO})")
        results: dict[tuple[str, str], list[dict[str, float]]] = {}
        jobs = [(s, impl) for s in args.scenarios for impl in impls]
        rng = random.Random(0)
        started = time.perf_counter()
        for round_no in range(args.rounds):
            rng.shuffle(jobs)
            for scenario, impl in jobs:
                row = measure(root, fake, packages[impl], scenario)
                results.setdefault((scenario.name, impl), []).append(row)
            print(f"  round {round_no + 1}/{args.rounds} done ({time.perf_counter() - started:.0f} s; "
                  f"load {load_average()})", file=sys.stderr, flush=True)
    print(f"uptime after: {uptime()}\n")
    met = report(args.scenarios, impls, results)
    print("\ntest phase: start of pytest's test loop to the end of the last item; ideal: calls x delay / concurrency;"
          "\nCPU ms/call: user + system CPU of the pytest process (every thread) over the calls;"
          "\nmax in flight: the most requests the server held at once (range over the rounds);"
          "\nfirst request: when the server got the first request, after the test loop started;"
          "\nlast item: when the last item was reported, after the server sent its last answer."
          f"\nnew implementation: every goal {'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
