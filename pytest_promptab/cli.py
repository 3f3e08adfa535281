"""The ``promptab`` console script (SPEC 12), offline, without pytest:

- ``promptab compare OLD NEW``: each A/B test of NEW against the same A/B test
  of OLD (history or results files, ``mlflow:<run id>``, OLD also
  ``mlflow:branch=<name>``: :mod:`pytest_promptab.references`): the same
  tables, with their "vs reference" part, that a ``--promptab-compare``
  session prints;
- ``promptab history``: the saved sessions under ``.promptab/history/``;
- ``promptab apply [SESSION] [--dry-run] [--ab-test NODEID]...``: a saved
  session's winners written into their files (:mod:`pytest_promptab.cli_apply`).

It imports nothing heavy until a subcommand needs it. Exit codes: 0; 1 when
``compare`` finds the deploy candidate significantly worse on the objective;
2 for usage; ``apply``: see its module; 4 for a reference that cannot be read (a file that is not a
promptab results file, an unknown MLflow run, an unreachable store).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="promptab", description="promptab sessions, offline")
    sub = parser.add_subparsers(dest="command", required=True)
    compare = sub.add_parser("compare", help="compare two history or results files (OLD -> NEW)")
    compare.add_argument("old", help="the reference: a history file, a results.json, mlflow:<run id> "
                                     "or mlflow:branch=<name>")
    compare.add_argument("new", help="the session held against it (a file or mlflow:<run id>)")
    compare.add_argument("--mlflow-uri", default=None, metavar="URI",
                         help="tracking URI for mlflow: references (default: $MLFLOW_TRACKING_URI, "
                              "else sqlite:///<rootdir>/mlflow.db)")
    compare.add_argument("--rootdir", default=".", help="the project root (default: the current folder)")
    history = sub.add_parser("history", help="list the sessions saved under .promptab/history/")
    history.add_argument("--rootdir", default=".", help="the project root (default: the current folder)")
    apply = sub.add_parser("apply", help="write a saved session's winners into their workflow files")
    apply.add_argument("session", nargs="?", default=None,
                       help="a history file, a results.json or mlflow:<run id> (default: the latest saved session)")
    apply.add_argument("--mlflow-uri", default=None, metavar="URI",
                       help="tracking URI for an mlflow: SESSION (default: $MLFLOW_TRACKING_URI, "
                            "else sqlite:///<rootdir>/mlflow.db)")
    apply.add_argument("--dry-run", action="store_true", help="print the diff it would write; change nothing")
    apply.add_argument("--ab-test", action="append", default=[], metavar="NODEID",
                       help="only this A/B test (<file>::<name>); may be repeated")
    apply.add_argument("--rootdir", default=None,
                       help="the project root the files are named from (default: the history file's, else .)")
    args = parser.parse_args(argv)
    if args.command == "apply":
        from .cli_apply import run_apply

        return run_apply(args.session, args.ab_test, dry_run=args.dry_run, rootdir=args.rootdir,
                         mlflow_uri=args.mlflow_uri)
    from .errors import PromptabError

    try:
        if args.command == "compare":
            return _compare(args.old, args.new, mlflow_uri=args.mlflow_uri, rootdir=Path(args.rootdir))
        return _history(Path(args.rootdir))
    except PromptabError as exc:
        print(f"promptab: {exc}", file=sys.stderr)
        return 4


def _compare(old_text: str, new_text: str, *, mlflow_uri: str | None = None, rootdir: Path = Path(".")) -> int:
    from .analysis.regression import compare_abtests
    from .references import Reference, cli_tracking_uri
    from .report.table import render_abtest

    uri = cli_tracking_uri(mlflow_uri, rootdir) if "mlflow:" in (old_text[:7], new_text[:7]) else None
    reference = Reference(old_text, what="OLD", tracking_uri=uri)
    reference.check()
    new = Reference(new_text, what="NEW", tracking_uri=uri).session()
    worse = False
    compared = 0
    for ab in new.summary.abtests:
        old, note = reference.for_abtest(ab.nodeid)
        ref_ab = old.abtest(ab.nodeid) if old is not None else None
        candidate, ref_candidate = new.candidate(ab.nodeid), old.candidate(ab.nodeid) if old is not None else None
        if old is None or ref_ab is None or candidate is None or ref_candidate is None:
            print(f"{ab.nodeid}: {note}")
            continue
        compared += 1
        vs = compare_abtests(ab, candidate, ref_ab, ref_candidate, old.shown)
        ab.vs_reference, ab.compare_note = vs, None
        print()
        for line in render_abtest(ab, width=shutil.get_terminal_size((100, 24)).columns):
            print(line)
        objective = vs["changes"][0] if vs["changes"] else None
        if objective and objective["significant"] and objective["cases_worse"]:
            worse = True
    if not reference.by_branch:  # one session: say what only it has
        whole = reference.session()
        for nodeid in [a.nodeid for a in whole.summary.abtests if new.abtest(a.nodeid) is None]:
            print(f"{nodeid}: only in {whole.shown}")
    if not compared:
        print("nothing to compare: no A/B test is in both files")
    return 1 if worse else 0


def _history(rootdir: Path) -> int:
    from .errors import PromptabError
    from .report.history import history_files, load_saved, shown_path

    paths = history_files(rootdir)
    if not paths:
        print(f"no saved session under {rootdir / '.promptab' / 'history'}")
        return 0
    for path in paths:
        try:
            saved = load_saved(path)
        except PromptabError as exc:
            print(f"{shown_path(path)}: unreadable ({exc.message})")
            continue
        git = saved.header.get("git") or {}
        print(f"{shown_path(path)}  {saved.header.get('saved_at', '?')}  "
              f"{git.get('branch') or 'detached'}@{(git.get('commit') or '-')[:8]}")
        for entry in saved.header.get("index", []):
            state = "accepted" if entry.get("accepted") else "not accepted"
            failed = [n.rpartition("::")[2] for n, o in (entry.get("gates") or {}).items() if o == "failed"]
            extra = f" (failed: {', '.join(failed)})" if failed else ""
            print(f"  {entry.get('nodeid')}: {state}, deploy candidate {entry.get('deploy_candidate')!r}, "
                  f"winner {entry.get('winner')!r}{extra}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
