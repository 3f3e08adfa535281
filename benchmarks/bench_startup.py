"""Benchmark: what the installed plugin costs a pytest run WITHOUT --promptab.

Goals (issue 2, "Performance"):
  1. on a 200-test plain suite, ``pytest`` with the plugin installed (the
     default) takes at most 5% longer than with ``-p no:promptab``;
  2. neither ``import pytest_promptab.plugin`` nor such a pytest run imports
     mlflow, httpx, numpy or scipy (nor pydantic, yaml, jinja2, which only a
     ``--promptab`` session needs).

Each configuration runs ``python -m pytest -q -p no:cacheprovider suite`` in a
fresh process, interleaved, after one warm-up run each. The goal is judged on
the median wall time; CPU time (user + system) is shown too because it is
less disturbed by other load on the machine.

Usage:  python benchmarks/bench_startup.py [--repeats 20] [--keep]
Exit status 0 when every goal is met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import (  # noqa: E402
    MODULES_PLUGIN,
    Samples,
    clean_env,
    cumulative_import_us,
    imported_modules,
    interleaved,
    load_average,
    machine_info,
    modules_of_run,
    ms,
    paired_overhead,
    parse_importtime,
    print_machine,
    profile_attribution,
    run,
    table,
    top_packages,
)

FILES = 20
TESTS_PER_FILE = 10
GOAL_OVERHEAD = 0.05
FORBIDDEN = ("mlflow", "httpx", "numpy", "scipy")
"""Never imported without --promptab: the issue's goal."""
ALSO_FORBIDDEN = ("pydantic", "yaml", "jinja2")
"""Needed by a --promptab session only; importing them would slow every run."""

PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "suite"]
CONFIGS = {"installed (default)": PYTEST, "-p no:promptab": [*PYTEST, "-p", "no:promptab"]}


def build_suite(root: Path) -> None:
    """20 files x 10 trivial tests; a pytest.ini pins the rootdir."""
    suite = root / "suite"
    suite.mkdir()
    (root / "pytest.ini").write_text("[pytest]\n")
    (root / "_bench_modules.py").write_text(MODULES_PLUGIN)
    for f in range(FILES):
        body = "\n\n".join(f"def test_{f}_{t}():\n    assert {t} + 1 == {t + 1}\n" for t in range(TESTS_PER_FILE))
        (suite / f"test_mod{f:02d}.py").write_text(body)


def _row(label: str, s: Samples) -> list[object]:
    q1, q3 = s.iqr
    return [label, len(s.values), ms(s.median), ms(s.min), f"{ms(q1)}-{ms(q3)}", ms(s.max)]


def timing(root: Path, repeats: int) -> float:
    """Prints the timing table; returns the overhead on the median wall time."""
    env = clean_env(root)
    expected = f"{FILES * TESTS_PER_FILE} passed"
    for cmd in CONFIGS.values():  # warm up: .pyc files, assertion rewrite cache, page cache
        proc = run(cmd, root, env).proc
        if expected not in proc.stdout:
            raise SystemExit(f"unexpected outcome of {' '.join(cmd)}:\n{proc.stdout[-2000:]}")

    def runner(cmd: list[str]):  # type: ignore[no-untyped-def]
        return lambda: run(cmd, root, env)

    load_before = load_average()
    series = interleaved({label: runner(cmd) for label, cmd in CONFIGS.items()}, repeats)
    on, off = series["installed (default)"], series["-p no:promptab"]
    rows = [_row(f"{s.label}, wall", s.wall) for s in (on, off)] + [_row(f"{s.label}, CPU", s.cpu) for s in (on, off)]
    print(table(rows, ["pytest -q, 200 tests", "runs", "median ms", "min ms", "IQR ms", "max ms"]))
    print(f"load average before / after: {load_before} / {load_average()}")
    overhead = on.wall.median / off.wall.median - 1
    rows = []
    for what, a, b in (("wall", on.wall, off.wall), ("CPU", on.cpu, off.cpu)):
        paired, low, high = paired_overhead(a, b)
        rows.append([what, f"{(a.median / b.median - 1) * 100:+.1f}%", f"{(a.median - b.median) * 1000:+.0f}",
                     f"{(a.min / b.min - 1) * 100:+.1f}%", f"{paired * 100:+.1f}% [{low * 100:+.1f}%, {high * 100:+.1f}%]"])
    print(table(rows, ["overhead of the installed plugin", "medians", "medians, ms", "minimums",
                       "per-round ratios: median [95% CI]"]))
    print(f"goal: <= +{GOAL_OVERHEAD * 100:.0f}% on the median wall time")
    return overhead


def attribution(root: Path) -> None:
    """Time spent inside pytest_promptab's code during a run, by cProfile."""
    spec = importlib.util.find_spec("pytest_promptab")
    assert spec is not None and spec.origin is not None
    package_dir = Path(spec.origin).parent
    inside, total, entries = profile_attribution(PYTEST[3:], root, clean_env(root), package_dir, root / "run.prof")
    print(f"under cProfile: {inside * 1000:.1f} ms of {total * 1000:.0f} ms profiled ({inside / total * 100:.2f}%) "
          "are spent in pytest_promptab code (module bodies and hooks, with what they call; the\n"
          "loading of its files by importlib is not included: see the import ms above). Top entries:")
    print(table([[name, f"{cum * 1000:.2f}", calls] for name, cum, calls in entries[:8]],
                ["function", "cumulative ms", "calls"]))


def import_checks(root: Path) -> bool:
    """Which heavy packages the bare import and real pytest runs load."""
    env = clean_env(root, {"PYTHONPATH": str(root)})
    ok = True
    bare = parse_importtime(run([sys.executable, "-X", "importtime", "-c", "import pytest_promptab.plugin"], root, env).proc.stderr)
    # the same with pytest imported first, to time our own modules alone
    own = parse_importtime(run([sys.executable, "-X", "importtime", "-c", "import pytest; import pytest_promptab.plugin"],
                               root, env).proc.stderr)
    # -X importtime does not see modules loaded by importlib.import_module (how
    # pytest loads entry-point plugins), so a plugin dumps sys.modules at the end
    on, registered = modules_of_run(CONFIGS["installed (default)"], root, env, root / "modules-on.json")
    off, registered_off = modules_of_run(CONFIGS["-p no:promptab"], root, env, root / "modules-off.json")
    if not registered or "pytest_promptab.plugin" not in on:
        print("ERROR: the promptab plugin was not loaded by pytest: is the package installed (pip install -e .)?")
        return False
    if registered_off or any(m.startswith("pytest_promptab") for m in off):
        print("ERROR: -p no:promptab still loaded pytest_promptab: the comparison is meaningless")
        return False

    rows = []
    for label, modules, own_ms in (
        ("python -X importtime -c 'import pytest_promptab.plugin'", imported_modules(bare),
         f"{cumulative_import_us(own, 'pytest_promptab') / 1000:.1f}"),
        ("pytest run without --promptab (sys.modules at exit)", on, "-"),
    ):
        packages = top_packages(modules)
        found = [p for p in FORBIDDEN if p in packages]
        found_also = [p for p in ALSO_FORBIDDEN if p in packages]
        ok = ok and not found and not found_also
        promptab_modules = sorted(m for m in modules if m.startswith("pytest_promptab"))
        rows.append([label, ", ".join(found) or "none", ", ".join(found_also) or "none", own_ms, ", ".join(promptab_modules)])
    print(table(rows, ["what", f"{'/'.join(FORBIDDEN)} loaded", f"{'/'.join(ALSO_FORBIDDEN)} loaded",
                       "import ms of pytest_promptab (pytest excluded)", "pytest_promptab modules loaded"]))
    extra = sorted(m for m in on - off if not m.startswith("pytest_promptab"))
    print(f"other modules loaded only because of the plugin (default run minus '-p no:promptab' run): {', '.join(extra) or 'none'}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per configuration (default 20)")
    parser.add_argument("--keep", action="store_true", help="keep the generated suite and print where it is")
    args = parser.parse_args(argv)

    print_machine(machine_info())
    kept = tempfile.mkdtemp(prefix="promptab-bench-startup-") if args.keep else None
    with tempfile.TemporaryDirectory(prefix="promptab-bench-startup-") as auto:
        root = Path(kept or auto)
        build_suite(root)
        if kept:
            print(f"suite kept in {root}")
        print(f"\n## start-up: {FILES * TESTS_PER_FILE} plain tests, {args.repeats} interleaved runs per configuration")
        overhead = timing(root, args.repeats)
        print("\n## imports")
        imports_ok = import_checks(root)
        print("\n## time inside the plugin")
        attribution(root)
    time_ok = overhead <= GOAL_OVERHEAD
    print(f"\nstart-up goal (<= +5% wall, median): {'MET' if time_ok else 'MISSED'} ({overhead * 100:+.1f}%); "
          f"import goal (none of {', '.join(FORBIDDEN + ALSO_FORBIDDEN)}): {'MET' if imports_ok else 'MISSED'}")
    return 0 if time_ok and imports_ok else 1


if __name__ == "__main__":
    sys.exit(main())
