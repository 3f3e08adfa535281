"""``promptab apply [SESSION] [--dry-run] [--ab-test NODEID]...`` (SPEC 8, 12):
apply a saved session's decision later, without running anything again.

SESSION is a history file, a results.json or an MLflow parent run,
``mlflow:<run id>`` (or ``mlflow:branch=<name>``: the latest accepted one from
that branch), read from ``--mlflow-uri``, else ``$MLFLOW_TRACKING_URI``, else
``sqlite:///<rootdir>/mlflow.db`` (default: the latest session under
``<rootdir>/.promptab/history/``). For each A/B test, the saved summary
goes through the same code as ``--promptab-apply-best``
(:func:`pytest_promptab.apply.best.apply_winner`): the same rules, the same
byte-exact rewrite, backup and atomic replace. The winner's prompts and
settings are recomputed from the workflow file and the winner's name: the
file's sha256 in the session proves it is the file the session ran. A file
whose bytes already equal what applying writes is "already applied" (a
history file holds their sha256, ``applied_sha256``; for a results.json, a
file that already has the winner's prompts and settings).

Exit codes: 0 when everything asked was applied or already applied; 1 when
something was refused (a file changed since, an A/B test no longer in its
file, or, for an A/B test named with ``--ab-test``, a decision that does not
allow applying); 2 for bad arguments (an unreadable SESSION, an unknown MLflow
run or an unreachable store, an unknown node id).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

USAGE = 2


def run_apply(session: str | None, ab_tests: Sequence[str], *, dry_run: bool, rootdir: str | None,
              mlflow_uri: str | None = None) -> int:
    from .apply.best import ApplyDecision, apply_winner, refusal
    from .errors import PromptabError
    from .references import Reference, cli_tracking_uri
    from .report.history import history_files
    from .tracking.prompt_cache import RegistryPrompts
    from .workflow.loader import load_workflow

    root = Path(rootdir) if rootdir else Path(".")
    if session is None:
        paths = history_files(root)
        if not paths:
            print(f"promptab apply: no saved session under {root / '.promptab' / 'history'}; "
                  "name a history file or a results.json", file=sys.stderr)
            return USAGE
        path = paths[-1]
    else:
        path = Path(session)
    text = session if session is not None and session.startswith("mlflow:") else str(path)
    uri = cli_tracking_uri(mlflow_uri, root) if text.startswith("mlflow:") else None
    try:
        saved = Reference(text, what="SESSION", tracking_uri=uri).session()
    except PromptabError as exc:
        print(f"promptab apply: {exc}", file=sys.stderr)
        return USAGE
    if rootdir is None and saved.label is None and path.parent.name == "history" and path.parent.parent.name == ".promptab":
        root = path.parent.parent.parent  # a history file knows its project
    known = [ab.nodeid for ab in saved.summary.abtests]
    unknown = [n for n in ab_tests if n not in known]
    if unknown:
        print(f"promptab apply: {saved.shown} has no A/B test {', '.join(map(repr, unknown))}; "
              f"it has: {', '.join(known) or 'none'}", file=sys.stderr)
        return USAGE
    print(f"promptab apply: session {saved.shown}")
    refused = False
    for ab in saved.summary.abtests:
        if ab_tests and ab.nodeid not in ab_tests:
            continue
        file = root / ab.file
        try:  # registry prompts: their cached text (.promptab/registry/); this command stays offline
            loaded = load_workflow(file, display=ab.file, registry=RegistryPrompts(root, tracking_uri=None))
        except PromptabError as exc:
            why = refusal(ab, interrupted=saved.summary.interrupted)  # the decision comes first
            decision = ApplyDecision(ab.file, ab.name, False, ab.winner, f"{ab.file}: not applied: "
                                     f"{why or 'cannot load the file: ' + exc.message}", "decision" if why else "file")
        else:
            planned = (saved.entry(ab.nodeid) or {}).get("applied_sha256")
            decision = apply_winner(file, loaded.config, ab, collected_sha256=ab.file_sha256,
                                    interrupted=saved.summary.interrupted, later=True, dry_run=dry_run,
                                    applied_sha256=planned if isinstance(planned, str) else None)
        print(f"{ab.nodeid}: {decision.message.removeprefix(ab.file + ': ')}")
        if decision.diff:
            sys.stdout.write(decision.diff)
        if not decision.applied and (decision.kind == "file" or ab_tests):
            refused = True
    return 1 if refused else 0
