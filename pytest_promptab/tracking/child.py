"""The MLflow logging process: ``python -m pytest_promptab.tracking.child``.

Started by the pytest controller at session start (see
:mod:`pytest_promptab.tracking.process`), it imports mlflow and opens the
tracking store while the tests run, so that logging at session end costs
almost nothing. The protocol, one JSON document per line:

1. stdin, at start: ``{"tracking_uri": ..., "traces": N}`` (the URI may
   hold credentials: it never goes through argv or the environment);
1b. stdin, any number of times before the session end: ``{"resolve":
   ["name@alias", "name/3", ...], "tracking_uri": ...}``; stdout: one line,
   the answer of :func:`resolve_prompts` (the prompt registry texts the
   collection needs, see :mod:`pytest_promptab.tracking.prompt_cache`);
2. stdin, at session end: ``{"summary": <SessionSummary.to_dict()>,
   "tracking_uri": ..., "rootdir": ..., "results_path": ..., "applied":
   {<A/B test node id>: <variant>}}``;
3. stdout: the answer of :func:`run_logging`, then the process exits.

End of input at any point makes it exit without touching MLflow. Whatever
mlflow or its dependencies print goes to stderr (which the controller
captures), never into the answer. Ctrl-C at the terminal is the controller's
business: this process ignores SIGINT and is stopped by its controller.

:func:`run_logging` is also what the controller calls in-process when it has
no logging process: the same two steps as ever, :func:`log_session` then
:func:`register_prompts` for each applied winner.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from ..analysis.summary import SessionSummary


def run_logging(
    summary: SessionSummary,
    *,
    tracking_uri: str,
    rootdir: Path,
    results_path: Path,
    applied: dict[str, str],
    traces: int = 0,
    registry_nodes: dict[str, dict[str, dict[str, str]]] | None = None,
    alias: str | None = None,
    registry_links: dict[str, dict[str, list[list[str]]]] | None = None,
    text_safe: bool = False,
) -> dict[str, Any]:
    """Log ``summary`` to MLflow, then register the prompts of the applied
    winners (``applied``: A/B test node id -> variant), pointing ``alias``
    (default ``promptab-best``) at them; at most ``traces`` runs are logged as
    MLflow traces. ``registry_nodes``: A/B test node id -> node -> ``{"prompt":
    "name@alias", "system": ...}``, the texts that come from the registry
    (registered under their own names, their aliases moved); ``registry_links``:
    A/B test node id -> variant -> the [name, version] each variant's run
    links (the registry texts it ran). Never raises.

    Returns ``{"ok", "message", "run_ids", "variant_run_ids", "registered",
    "problems", "registry_notes", "registry_cache"}``: ``registered`` maps a
    node id to its ``prompts:/`` URIs, ``problems`` lists the registrations
    that failed, ``registry_notes`` (node id -> lines) says which aliases moved,
    ``registry_cache`` (``name@alias`` -> ``{"name", "version", "text"}``) what
    the moved aliases now hold. ``text_safe``: the
    summary is known to hold no surrogates (not checked again)."""
    from .log import MlflowLogError, log_session, register_prompts

    summary = summary if text_safe else _text_safe(summary)
    outcome = log_session(
        summary, tracking_uri=tracking_uri, rootdir=rootdir, results_path=results_path, traces=traces,
        applied=applied,
    )
    answer: dict[str, Any] = {
        "ok": outcome.ok,
        "message": outcome.message,
        "run_ids": outcome.run_ids,
        "variant_run_ids": outcome.variant_run_ids,
        "registered": {},
        "problems": [],
        "traces": outcome.traces,
        "registry_notes": {},
        "registry_cache": {},
    }
    if not outcome.ok:
        return answer
    if registry_links:
        problem = _link_runs(tracking_uri, {
            run_id: pairs for nodeid, variants in registry_links.items() for variant, pairs in variants.items()
            if (run_id := outcome.variant_run_ids.get(nodeid, {}).get(variant))
        })
        if problem:
            answer["problems"].append(problem)
    for ab in summary.abtests:
        variant = applied.get(ab.nodeid)
        if variant is None:
            continue
        from .registry import PROMPT_ALIAS, registrations, registry_notes

        items = registrations(ab, variant, (registry_nodes or {}).get(ab.nodeid, {}))
        try:
            uris = register_prompts(
                tracking_uri,
                {item.key: item.text for item in items},
                model_configs={item.key: item.model_config for item in items if item.model_config},
                alias=alias or PROMPT_ALIAS,
                names={item.key: item.name for item in items if item.name},
                extra_aliases={item.key: item.aliases for item in items if item.aliases},
                name_prefix=f"{ab.workflow}.{ab.name}",
                run_id=outcome.variant_run_ids.get(ab.nodeid, {}).get(variant),
                tags={"promptab.file": ab.file, "promptab.variant": variant, "promptab.ab_test": ab.name},
            )
        except MlflowLogError as exc:
            answer["problems"].append(exc.message)
            continue
        answer["registered"][ab.nodeid] = uris
        done = list(zip(items, uris))
        answer["registry_notes"][ab.nodeid] = registry_notes(done, alias or PROMPT_ALIAS)
        for item, uri in done:
            if item.reference and item.aliases and item.name:
                answer["registry_cache"][item.reference] = {
                    "name": item.name, "version": int(uri.rsplit("/", 1)[-1]), "text": item.text,
                }
    return answer


def _link_runs(tracking_uri: str, links: dict[str, list[list[str]]]) -> str | None:
    """Link each run to the registry versions it ran (its
    ``mlflow.linkedPrompts`` tag); returns what went wrong, if anything."""
    from .connect import (
        describe_error,
        http_defaults,
        mlflow_client_class,
        quiet,
        scoped_env,
    )
    from .registry import linked_prompts

    try:
        with quiet(), scoped_env(http_defaults()):
            client = mlflow_client_class()(tracking_uri)
            for run_id, pairs in links.items():
                current = client.get_run(run_id).data.tags.get("mlflow.linkedPrompts")
                versions = [(str(name), str(version)) for name, version in pairs]
                client.set_tag(run_id, "mlflow.linkedPrompts", linked_prompts(current, versions))
    except Exception as exc:  # noqa: BLE001
        return f"could not link the variant runs to their registry prompts: {describe_error(exc, tracking_uri)}"
    return None


_NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND")


def resolve_prompts(tracking_uri: str, references: list[str]) -> dict[str, Any]:
    """Read each ``name@alias`` / ``name/<version>`` from the prompt registry
    at ``tracking_uri`` (straight from the store: MLflow's own prompt cache
    and experiment linking are bypassed). Never raises.

    Returns ``{"ok", "message", "prompts"}``: ``ok`` False (with the reason)
    when the registry cannot be reached, and then nothing was read; else
    ``prompts`` maps each reference to ``{"name", "version", "text"}``, or
    ``{"missing": why}`` when the registry has no such prompt, version or
    alias, or holds a prompt a node cannot use (a chat prompt)."""
    from .connect import (
        describe_error,
        http_defaults,
        mlflow_client_class,
        quiet,
        redact_uri,
        scoped_env,
    )

    scheme = urlsplit(tracking_uri).scheme.split("+", 1)[0]
    if scheme == "sqlite":  # an absent database is not a registry: never create one to look in it
        database = tracking_uri.split(":///", 1)[-1].split("?", 1)[0]
        if database and database != ":memory:" and not Path(database).is_file():
            return {"ok": False, "message": f"no MLflow store at {redact_uri(tracking_uri)} (the file does not exist)",
                    "prompts": {}}
    try:
        client_class = mlflow_client_class()
    except Exception as exc:  # noqa: BLE001 - MlflowLogError: mlflow not installed
        return {"ok": False, "message": describe_error(exc, tracking_uri), "prompts": {}}
    prompts: dict[str, Any] = {}
    with quiet(), scoped_env(http_defaults()):
        try:
            from mlflow.exceptions import MlflowException

            client = client_class(tracking_uri)
            for reference in references:
                name, sep, rest = reference.partition("@")
                try:
                    if sep:
                        version = client.get_prompt_version_by_alias(name, rest)
                    else:
                        name, _, number = reference.rpartition("/")
                        version = client.get_prompt_version(name, number)
                except MlflowException as exc:
                    if exc.error_code not in _NOT_FOUND:
                        raise
                    first = next((ln.strip() for ln in str(exc.message).splitlines() if ln.strip()), "not found")
                    prompts[reference] = {"missing": first}
                    continue
                if version is None:
                    prompts[reference] = {"missing": "not found"}
                elif not version.is_text_prompt:
                    prompts[reference] = {"missing": f"version {version.version} is a chat prompt (a list of messages); "
                                          "a node takes a text prompt"}
                else:
                    prompts[reference] = {"name": version.name, "version": int(version.version),
                                          "text": version.template}
        except Exception as exc:  # noqa: BLE001 - unreachable, refused, broken: nothing read
            return {"ok": False, "message": describe_error(exc, tracking_uri), "prompts": {}}
    return {"ok": True, "message": "", "prompts": prompts}


def _text_safe(summary: SessionSummary) -> SessionSummary:
    """``summary`` with lone surrogates (a provider answering "\\ud800")
    replaced by U+FFFD: MLflow writes tags, params and artifacts as UTF-8,
    which cannot hold them. The summary itself when it has none."""
    from ..textsafe import clean_data, has_surrogates

    data = summary.to_dict()
    if not has_surrogates(data):
        return summary
    return SessionSummary.from_dict(clean_data(data))


def warm_up(tracking_uri: str, traces: int = 0) -> None:
    """Import mlflow and open the tracking store (MLflow caches it per URI),
    without creating anything: a sqlite database that does not exist yet is
    left for session end, when there is something to log. Never raises; a
    failure here shows again, and is reported, when logging."""
    from .connect import http_defaults, mlflow_client_class, quiet, scoped_env

    try:
        client_class = mlflow_client_class()
        with quiet(), scoped_env(http_defaults()):
            from mlflow.entities import Metric, Param, RunTag  # noqa: F401

            if traces:  # what the first trace would otherwise pay for at session end
                import mlflow.tracing.export.mlflow_v3  # noqa: F401
                import mlflow.tracing.trace_manager  # noqa: F401
                from mlflow.entities import (  # noqa: F401
                    AssessmentSource,
                    Feedback,
                    Span,
                    SpanType,
                    TraceInfo,
                )

                from . import traces as _traces  # noqa: F401

            scheme = urlsplit(tracking_uri).scheme.split("+", 1)[0]
            if scheme == "sqlite":
                import mlflow.store.tracking.sqlalchemy_store  # noqa: F401

                database = tracking_uri.split(":///", 1)[-1].split("?", 1)[0]
                if database and Path(database).is_file():
                    client = client_class(tracking_uri)  # opens the store, which MLflow caches
                    from .onewrite import rehearse

                    rehearse(client)  # the first writes' costs, paid now (rolled back)
            elif scheme in ("http", "https"):
                client_class(tracking_uri)  # no network, no file written
    except Exception:  # noqa: BLE001
        return


def serve(stdin: TextIO, answer_to: TextIO) -> int:
    """Run the protocol on ``stdin``; write the answer to ``answer_to``."""
    hello_line = stdin.readline()
    if not hello_line.strip():
        return 0
    hello = json.loads(hello_line)
    warm_up(hello["tracking_uri"], int(hello.get("traces") or 0))
    if not gc.isenabled():  # the command turned it off for the imports
        gc.freeze()  # what is imported stays: later collections skip it
        gc.enable()
    line = stdin.readline()
    while line.strip() and "resolve" in (request := json.loads(line)):
        try:
            resolved = resolve_prompts(request["tracking_uri"], [str(r) for r in request["resolve"]])
        except Exception as exc:  # noqa: BLE001 - the controller must get an answer
            from .connect import describe_error

            resolved = {"ok": False, "message": describe_error(exc, request["tracking_uri"]), "prompts": {}}
        answer_to.write(json.dumps(resolved) + "\n")
        answer_to.flush()
        line = stdin.readline()
    if not line.strip():
        return 0  # the controller had nothing to log, or went away
    request = json.loads(line)
    uri = request["tracking_uri"]
    try:
        answer = run_logging(
            SessionSummary.from_dict(request["summary"]),
            tracking_uri=uri,
            rootdir=Path(request["rootdir"]),
            results_path=Path(request["results_path"]),
            applied=dict(request.get("applied") or {}),
            traces=int(request.get("traces") or 0),
            registry_nodes=request.get("registry_nodes") or {},
            alias=request.get("registry_alias"),
            registry_links=request.get("registry_links") or {},
            # JSON escapes every surrogate as \udxxx (ensure_ascii): none there, none to clean
            text_safe="\\ud" not in line.lower(),
        )
    except Exception as exc:  # noqa: BLE001 - the controller must get an answer
        from .connect import describe_error

        answer = {"ok": False, "message": describe_error(exc, uri), "run_ids": {}, "variant_run_ids": {}}
    answer_to.write(json.dumps(answer) + "\n")
    answer_to.flush()
    return 0


def main() -> int:  # pragma: no cover - runs in the child process
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # the answer gets its own copy of stdout; anything else printed (by
    # mlflow, alembic, a warning) lands on stderr, which the controller keeps
    answer_to = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    code = serve(sys.stdin, answer_to)
    answer_to.close()
    sys.stderr.flush()
    # everything is written (MLflow's calls are synchronous); don't wait on
    # background threads a library may have left at interpreter shutdown
    os._exit(code)


if __name__ == "__main__":
    raise SystemExit(main())
