"""Session end: logging the summary to MLflow, from the controller.

Split from :mod:`.session` (its state) so that each stays small; called
through :meth:`PromptabSession.log_mlflow`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .session import PromptabSession


def log_session(psession: PromptabSession) -> str | None:
    """Log the summary, then register applied prompts; returns a warning
    text when MLflow failed (the results file already has everything).

    The logging process does it when it was started; otherwise it is done
    here, in this process."""
    from .tracking.log import redact_uri, resolve_tracking_uri

    assert psession.summary is not None
    uri = resolve_tracking_uri(psession.options.mlflow_uri, psession.options.mlflow_ini, os.environ, psession.options.rootdir)
    psession.summary.mlflow_uri = redact_uri(uri)  # the summary goes to results.json: no credentials
    applied = {ab.nodeid: psession.applied[ab.nodeid] for ab in psession.summary.abtests if ab.nodeid in psession.applied}
    from .tracking.prompt_cache import registry_links, registry_nodes

    from_registry = registry_nodes(psession.workflows, psession.summary.abtests) if applied else {}
    links = registry_links(psession.workflows, psession.summary.abtests)
    process = psession.take_mlflow_process()
    if process is not None:
        answer = process.log(
            {
                "summary": psession.summary.to_dict(),
                "tracking_uri": uri,
                "rootdir": str(psession.options.rootdir),
                "results_path": str(psession.options.results_path),
                "applied": applied,
                "traces": psession.options.mlflow_traces,
                "registry_nodes": from_registry,
                "registry_alias": psession.options.registry_alias,
                "registry_links": links,
            }
        )
    else:
        from .tracking.child import run_logging

        answer = run_logging(
            psession.summary,
            tracking_uri=uri,
            rootdir=psession.options.rootdir,
            results_path=psession.options.results_path,
            applied=applied,
            traces=psession.options.mlflow_traces,
            registry_nodes=from_registry,
            alias=psession.options.registry_alias,
            registry_links=links,
        )
    run_ids = answer.get("run_ids") or {}
    for ab in psession.summary.abtests:
        ab.mlflow_run_id = run_ids.get(ab.nodeid)
    if not answer.get("ok"):
        psession.summary.mlflow_error = str(answer.get("message") or "unknown error")
        return psession.summary.mlflow_error
    registered = answer.get("registered") or {}
    notes = answer.get("registry_notes") or {}
    for ab in psession.summary.abtests:
        if ab.nodeid in registered:
            ab.apply_decision = f"{ab.apply_decision}; registered in MLflow as {', '.join(registered[ab.nodeid])}"
            ab.apply_decision += "".join(f"; {note}" for note in notes.get(ab.nodeid) or [])
    if answer.get("registry_cache"):
        from .tracking.prompt_cache import store_moved

        store_moved(psession.options.rootdir, answer["registry_cache"])
    problems = answer.get("problems") or []
    if problems:
        psession.summary.mlflow_error = "; ".join(problems)
        return psession.summary.mlflow_error
    return None
