"""Shared helpers of the benchmark scripts: timed subprocess runs, interleaved
repetitions, robust statistics, ``-X importtime`` parsing and the machine
description printed with every result.

The benchmarks run pytest in fresh subprocesses so that each measurement is
what a user pays for one ``pytest`` command, imports included.
"""

from __future__ import annotations

import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Callable, Iterable, Sequence

from tabulate import tabulate

# Environment variables that would change what pytest loads or does.
_PYTEST_ENV = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD", "PYTEST_XDIST_AUTO_NUM_WORKERS")


def clean_env(root: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The current environment without pytest-steering variables, and with
    bytecode caching on, as users have it (``PYTHONDONTWRITEBYTECODE`` would
    recompile every module at every start). The ``.pyc`` files go under
    ``root/pycache`` so that the repository is not written to."""
    env = {k: v for k, v in os.environ.items() if k not in _PYTEST_ENV}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
    env["PYTHONHASHSEED"] = "0"
    extra = dict(extra or {})
    if "PYTHONPATH" in extra and env.get("PYTHONPATH"):
        # keep the caller's PYTHONPATH (e.g. a scratch copy of the package to measure)
        extra["PYTHONPATH"] = extra["PYTHONPATH"] + os.pathsep + env["PYTHONPATH"]
    env.update(extra)
    return env


class CommandFailed(RuntimeError):
    """A benchmarked command exited with an unexpected code."""


@dataclass
class Timed:
    """One finished command: wall-clock and CPU (user + system) seconds."""

    wall: float
    cpu: float
    proc: subprocess.CompletedProcess[str]


def run(cmd: Sequence[str], cwd: Path, env: dict[str, str], ok_codes: Iterable[int] = (0,)) -> Timed:
    """Run ``cmd`` and time it.

    CPU time (of the child and its own children) is less disturbed than wall
    time by other load on the machine. Raises :class:`CommandFailed` with the
    output's tail when the exit code is not in ``ok_codes``: a benchmark of a
    broken run would measure nothing.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode not in tuple(ok_codes):
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise CommandFailed(f"{' '.join(cmd)} exited with {proc.returncode} in {cwd}:\n{tail}")
    return Timed(elapsed, cpu, proc)


@dataclass
class Samples:
    """Repeated measurements of one configuration, in seconds."""

    label: str
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def min(self) -> float:
        return min(self.values)

    @property
    def max(self) -> float:
        return max(self.values)

    @property
    def iqr(self) -> tuple[float, float]:
        """25th and 75th percentiles (``statistics.quantiles``, inclusive)."""
        if len(self.values) < 2:
            return self.values[0], self.values[0]
        q = statistics.quantiles(self.values, n=4, method="inclusive")
        return q[0], q[2]


@dataclass
class Series:
    """Every timed run of one configuration."""

    label: str
    runs: list[Timed] = field(default_factory=list)

    @property
    def wall(self) -> Samples:
        return Samples(self.label, [r.wall for r in self.runs])

    @property
    def cpu(self) -> Samples:
        return Samples(self.label, [r.cpu for r in self.runs])


def interleaved(configs: dict[str, Callable[[], Timed]], repeats: int, seed: int = 0,
                progress: bool = True) -> dict[str, Series]:
    """Run every configuration ``repeats`` times, shuffling the order within
    each round so that drift (thermal, other load) hits all of them alike."""
    series = {label: Series(label) for label in configs}
    rng = random.Random(seed)
    labels = list(configs)
    for round_no in range(repeats):
        rng.shuffle(labels)
        for label in labels:
            series[label].runs.append(configs[label]())
        if progress:
            print(f"  round {round_no + 1}/{repeats} done", file=sys.stderr, flush=True)
    return series


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "-"


def machine_info() -> dict[str, str]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 0

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "-"

    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.system()} {platform.machine()}, nproc={usable}",
        "python": platform.python_version(),
        "pytest": version("pytest"),
        "pytest-promptab": f"{version('pytest-promptab')} from {_package_dir('pytest_promptab')}",
        "other pytest plugins": ", ".join(sorted(pytest_plugins_installed() - {"pytest-promptab"})) or "-",
    }


def _package_dir(name: str) -> str:
    import importlib.util

    spec = importlib.util.find_spec(name)
    return str(Path(spec.origin).parent) if spec and spec.origin else "-"


def pytest_plugins_installed() -> set[str]:
    """Distributions that register a ``pytest11`` entry point (autoloaded)."""
    names = set()
    for dist in metadata.distributions():
        if any(ep.group == "pytest11" for ep in dist.entry_points):
            names.add(dist.metadata["Name"])
    return names


def print_machine(info: dict[str, str]) -> None:
    print(tabulate(list(info.items()), tablefmt="plain"))


def table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> str:
    return str(tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True))


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


# -- python -X importtime ----------------------------------------------------


@dataclass
class ImportLine:
    self_us: int
    cumulative_us: int
    depth: int
    module: str


def parse_importtime(stderr: str) -> list[ImportLine]:
    """The ``import time:`` lines of ``-X importtime`` output, in order
    (children are printed before their parent, one level deeper)."""
    lines = []
    for raw in stderr.splitlines():
        if not raw.startswith("import time:") or "|" not in raw:
            continue
        parts = raw[len("import time:"):].split("|")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue  # the header line
        name = parts[2]
        stripped = name.lstrip(" ")
        depth = (len(name) - len(stripped) - 1) // 2
        lines.append(ImportLine(int(parts[0]), int(parts[1]), depth, stripped.strip()))
    return lines


def imported_modules(lines: list[ImportLine]) -> set[str]:
    return {line.module for line in lines}


def top_packages(modules: Iterable[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def cumulative_import_us(lines: list[ImportLine], prefix: str) -> int:
    """Total import time of the modules named ``prefix`` or ``prefix.*``,
    with what they import, counting each nested import once."""

    def ours(name: str) -> bool:
        return name == prefix or name.startswith(prefix + ".")

    total = 0
    for index, line in enumerate(lines):
        if not ours(line.module):
            continue
        # walk up the ancestors: the next lines with a smaller depth
        depth, nested = line.depth, False
        for later in lines[index + 1:]:
            if later.depth < depth:
                if ours(later.module):
                    nested = True
                    break
                depth = later.depth
                if depth == 0:
                    break
        if not nested:
            total += line.cumulative_us
    return total


# -- what a real pytest run imported -------------------------------------------

MODULES_PLUGIN = '''"""Benchmark helper plugin: dump sys.modules at the very end of the run."""
import json
import os
import sys

import pytest


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    with open(os.environ["BENCH_MODULES_OUT"], "w") as handle:
        json.dump({"modules": sorted(sys.modules),
                   "promptab_registered": config.pluginmanager.has_plugin("promptab")}, handle)
'''


def modules_of_run(cmd: Sequence[str], cwd: Path, env: dict[str, str], out: Path) -> tuple[set[str], bool]:
    """The modules loaded by the end of a pytest run, and whether the
    ``promptab`` plugin was registered in it. ``cwd`` must be on PYTHONPATH
    and hold ``_bench_modules.py`` (see :data:`MODULES_PLUGIN`)."""
    run([*cmd, "-p", "_bench_modules"], cwd, {**env, "BENCH_MODULES_OUT": str(out)})
    data = json.loads(out.read_text())
    return set(data["modules"]), bool(data["promptab_registered"])


def paired_overhead(treated: Samples, control: Samples, resamples: int = 4000, seed: int = 0) -> tuple[float, float, float]:
    """Median of the per-round ratios treated/control - 1, with a bootstrap
    95% interval. Rounds pair the runs made close in time, which cancels
    slow drifts of the machine's load."""
    return _paired([t / c - 1 for t, c in zip(treated.values, control.values)], resamples, seed)


def paired_difference(treated: Samples, control: Samples, resamples: int = 4000, seed: int = 0) -> tuple[float, float, float]:
    """Median of the per-round differences treated - control (seconds), with
    a bootstrap 95% interval."""
    return _paired([t - c for t, c in zip(treated.values, control.values)], resamples, seed)


def _paired(values: list[float], resamples: int, seed: int) -> tuple[float, float, float]:
    rng = random.Random(seed)
    boots = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples))
    return statistics.median(values), boots[int(0.025 * resamples)], boots[int(0.975 * resamples) - 1]


def profile_attribution(cmd_args: Sequence[str], cwd: Path, env: dict[str, str], package_dir: Path,
                        out: Path) -> tuple[float, float, list[tuple[str, float, int]]]:
    """Run ``python -m cProfile -m pytest <cmd_args>`` and attribute time to
    the code in ``package_dir``.

    Returns (seconds inside the package, including what it calls; total
    profiled seconds; the package's top-level entries as (function,
    cumulative seconds, calls)). cProfile slows Python code down, so the
    figures are upper bounds, but unlike wall times they hardly move with the
    machine's load.
    """
    import pstats

    run([sys.executable, "-m", "cProfile", "-o", str(out), "-m", "pytest", *cmd_args], cwd, env)
    stats = pstats.Stats(str(out))
    prefix = str(package_dir.resolve()) + os.sep

    def ours(func: tuple[str, int, str]) -> bool:
        return func[0].startswith(prefix)

    entries = []
    for func, (_cc, calls, _tt, cumulative, callers) in stats.stats.items():  # type: ignore[attr-defined]
        if ours(func) and not any(ours(caller) for caller in callers):
            name = f"{Path(func[0]).relative_to(package_dir.resolve().parent).as_posix()}:{func[1]}({func[2]})"
            entries.append((name, cumulative, calls))
    entries.sort(key=lambda e: -e[1])
    return sum(e[1] for e in entries), stats.total_tt, entries  # type: ignore[attr-defined]
