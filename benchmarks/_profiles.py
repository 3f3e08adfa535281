"""Profiles of a pytest run for the benchmarks: yappi and py-spy, every thread.

cProfile sees only the main thread; promptab's runs happen in the runner's
threads. :data:`YAPPI_PLUGIN` (load it with ``-p``) profiles every thread on
the CPU clock (deterministic, but it slows Python code down);
:func:`py_spy_command` samples the thread holding the GIL, which distorts
little. The reports keep the test phase only where they can tell it apart.
Both tools are dev tools (``pip install yappi py-spy``), not dependencies.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

from _util import table

YAPPI_PLUGIN = '''"""Benchmark helper plugin: yappi over every thread, CPU clock."""
import json
import os

import yappi


def pytest_configure(config):
    yappi.set_clock_type("cpu")
    yappi.start(builtins=True, profile_threads=True)


def pytest_unconfigure(config):
    yappi.stop()
    funcs = [
        {"module": f.module, "name": f.name, "line": f.lineno, "calls": f.ncall, "tsub": f.tsub, "ttot": f.ttot}
        for f in yappi.get_func_stats()
    ]
    threads = [{"name": t.name, "ttot": t.ttot, "switches": t.sched_count} for t in yappi.get_thread_stats()]
    with open(os.environ["BENCH_YAPPI_OUT"], "w") as handle:
        json.dump({"funcs": funcs, "threads": threads}, handle)
'''


def yappi_report(path: Path, calls: int, top: int) -> str:
    """CPU per thread kind, the top functions by own time, and promptab's by total."""
    data = json.loads(path.read_text())
    threads: dict[str, list[float]] = {}
    for thread in data["threads"]:
        name = re.sub(r"[-_ ]?\d+$", "-N", thread["name"])
        threads.setdefault(name, []).append(thread["ttot"])
    parts = [table([[name, len(v), f"{sum(v):.3f}", f"{sum(v) / calls * 1000:.3f}"]
                    for name, v in sorted(threads.items(), key=lambda kv: -sum(kv[1]))],
                   ["thread", "count", "CPU s", "CPU ms/call"])]
    funcs = sorted(data["funcs"], key=lambda f: -f["tsub"])[:top]
    parts.append(table([[_short(f["module"]) + f":{f['line']}", f["name"], f["calls"], f"{f['tsub']:.3f}",
                         f"{f['ttot']:.3f}", f"{f['tsub'] / calls * 1e6:.0f}"] for f in funcs],
                       ["module", "function", "calls", "own CPU s", "total CPU s", "own us/call"]))
    ours = sorted((f for f in data["funcs"] if "pytest_promptab" in f["module"]), key=lambda f: -f["ttot"])[:top]
    parts.append("promptab's functions by total CPU (with what they call)")
    parts.append(table([[_short(f["module"]) + f":{f['line']}", f["name"], f["calls"], f"{f['ttot']:.3f}",
                         f"{f['ttot'] / calls * 1e6:.0f}"] for f in ours],
                       ["module", "function", "calls", "total CPU s", "total us/call"]))
    return "\n".join(parts)


def py_spy_command(out: Path) -> list[str]:
    """The prefix that runs a command under ``py-spy record --gil`` (1000 Hz,
    raw stacks with thread names into ``out``)."""
    return [_py_spy(), "record", "--gil", "--threads", "--nonblocking", "-r", "1000", "--format", "raw",
            "-o", str(out), "--"]


def py_spy_report(path: Path, calls: int, top: int) -> str:
    """Samples of the test phase only (stacks under pytest's test loop or under
    a runner thread, less the session end that promptab runs inside the test
    loop's hook wrapper): by area the stacks pass through, and by function."""
    total = 0
    own: dict[str, int] = {}
    inside: dict[str, int] = {}
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not any(_in_test_phase(f) for f in frames) or any("end_test_loop" in f for f in frames):
            continue  # start-up, collection, or the session end
        n = int(count)
        total += n
        leaf = re.sub(r":\d+\)$", ")", frames[-1])
        own[leaf] = own.get(leaf, 0) + n
        for area in {_area(f) for f in frames}:
            inside[area] = inside.get(area, 0) + n
    return "\n".join([
        f"{total} samples in the test phase = {total / calls:.2f} ms/call",
        table([[area, n, f"{n / max(total, 1) * 100:.0f}%", f"{n / calls:.3f}"]
               for area, n in sorted(inside.items(), key=lambda kv: -kv[1])],
              ["stacks that pass through", "samples", "share", "ms/call"]),
        table([[name[:110], n, f"{n / calls * 1000:.0f}"] for name, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]],
              ["function (own time)", "samples", "us/call"]),
    ])


def _py_spy() -> str:
    """py-spy next to this Python (a dev tool: ``pip install py-spy``), else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if not found:
        raise SystemExit("--profile py-spy needs py-spy: pip install py-spy (a dev tool, not a dependency)")
    return found


_AREAS = (("pytest_promptab/providers/transport.py", "promptab transport"),
          ("pytest_promptab/providers/openai.py", "promptab openai provider"), ("pytest_promptab/run/runner", "promptab runner"),
          ("pytest_promptab/run/engine", "promptab engine"), ("pytest_promptab/items", "promptab items"),
          ("pytest_promptab", "promptab (any)"), ("httpcore", "httpcore"), ("httpx", "httpx"), ("h11", "h11"),
          ("jinja2", "jinja2"), ("_pytest", "pytest"), ("pluggy", "pluggy"), ("json/", "json"))


def _area(frame: str) -> str:
    for marker, name in _AREAS:
        if marker in frame:
            return name
    return "other"


def _in_test_phase(frame: str) -> bool:
    return "pytest_runtestloop" in frame or ("pytest_promptab/run/runner" in frame and "_work" in frame) or \
        "_run_loop" in frame


def _short(module: str) -> str:
    for marker in ("site-packages/", "pytest_promptab/", "lib/python3"):
        if marker in module:
            return module[module.index(marker):]
    return module
