"""Log a session's summary to MLflow, and register applied prompts.

Called once, by the pytest controller, at session end, after the results file
is written. Layout: an experiment per workflow (or ``mlflow.experiment``), a
parent run per A/B test, a nested child run per variant with params, every
aggregate as a metric, tags, and artifacts (the full prompts, and a
``runs.json`` table the MLflow UI renders); what goes into each run is built
by :mod:`pytest_promptab.tracking.layout`. This module makes the client calls:
only ``MlflowClient`` with explicit run ids is used (no fluent API), and
mlflow is imported inside the functions, so importing this module is cheap.

:func:`log_session` never raises: every failure (server down or slow, HTTP
500, a deleted experiment, ...) becomes a :class:`LogOutcome` with a one-line
message. No secret is logged: settings named like keys, tokens or credentials
are dropped, and URIs are shown without their user info.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..analysis.summary import ABTestSummary, SessionSummary, VariantSummary
from . import layout, onewrite, registry
from .connect import (  # noqa: F401 - re-exported: the module's API
    HTTP_LIMITS,
    MlflowLogError,
    describe_error,
    http_defaults,
    is_transport_error,
    mlflow_client_class,
    quiet,
    redact_uri,
    resolve_tracking_uri,
    scoped_env,
)
from .layout import MAX_TAG_VALUE
from .registry import prompt_name

__all__ = [
    "HTTP_LIMITS",
    "LogOutcome",
    "MlflowLogError",
    "describe_error",
    "log_session",
    "prompt_name",
    "redact_uri",
    "register_prompts",
    "resolve_tracking_uri",
]

@dataclass
class LogOutcome:
    ok: bool
    message: str
    run_ids: dict[str, str] = field(default_factory=dict)
    """``ABTestSummary.nodeid`` -> parent run id, for the A/B tests logged."""
    variant_run_ids: dict[str, dict[str, str]] = field(default_factory=dict)
    """``ABTestSummary.nodeid`` -> variant name -> child run id."""
    experiment_ids: dict[str, str] = field(default_factory=dict)
    """``ABTestSummary.nodeid`` -> experiment id."""
    traces: int = 0
    """How many runs were logged as traces."""


def log_session(
    summary: SessionSummary,
    *,
    tracking_uri: str,
    rootdir: Path,
    results_path: Path,
    traces: int = 0,
    applied: Mapping[str, str] | None = None,
) -> LogOutcome:
    """Log every A/B test of ``summary`` to ``tracking_uri``, and at most
    ``traces`` of its runs as traces (:mod:`.traces`); ``applied`` (A/B test
    node id -> the variant apply-best wrote) names each deploy candidate.
    Never raises."""
    outcome = LogOutcome(ok=True, message="")
    if not summary.abtests:
        outcome.message = "nothing to log to MLflow (no A/B test ran)"
        return outcome
    created: list[str] = []
    client: Any = None
    single = False
    try:
        client_class = mlflow_client_class()
    except MlflowLogError as exc:
        return LogOutcome(ok=False, message=exc.message)
    with quiet(), scoped_env(http_defaults()):
        try:
            client = client_class(tracking_uri)
            common = layout.session_tags(Path(rootdir))
            common["promptab.session"] = uuid.uuid4().hex[:12]
            for ab in summary.abtests:  # first: a new experiment is created through another store
                name = ab.experiment or ab.workflow or "promptab"
                outcome.experiment_ids[ab.nodeid] = _experiment_id(client, tracking_uri, name, Path(rootdir))
            # sqlite: every write below in one transaction (one commit), all or nothing
            with onewrite.one_transaction(client) as single:
                for ab in summary.abtests:
                    exp_id = outcome.experiment_ids[ab.nodeid]
                    _set_experiment_tags(client, exp_id, ab)
                    candidate = (applied or {}).get(ab.nodeid) or ab.baseline
                    parent, children = _log_abtest(client, exp_id, ab, common, Path(results_path), created,
                                                   candidate=candidate, interrupted=summary.interrupted)
                    outcome.run_ids[ab.nodeid] = parent
                    outcome.variant_run_ids[ab.nodeid] = children
                if traces > 0:
                    from . import traces as traces_mod

                    outcome.traces = traces_mod.log_traces(client, summary, outcome, traces, tracking_uri, common)
        except Exception as exc:  # noqa: BLE001 - nothing may escape into the session
            outcome.ok = False
            outcome.message = describe_error(exc, tracking_uri)
            if single:  # rolled back: no run was left
                outcome.run_ids, outcome.variant_run_ids, outcome.traces = {}, {}, 0
                return outcome
            if client is not None and not is_transport_error(exc):
                for run_id in reversed(created):  # don't leave half-logged runs "RUNNING"
                    with contextlib.suppress(Exception):
                        client.set_terminated(run_id, "FAILED")
            return outcome
    n = len(summary.abtests)
    outcome.message = f"logged {n} A/B test{'' if n == 1 else 's'} to MLflow at {redact_uri(tracking_uri)}"
    return outcome


def register_prompts(
    tracking_uri: str,
    prompts: dict[str, str],
    *,
    name_prefix: str,
    run_id: str | None,
    tags: dict[str, str],
    commit_message: str | None = None,
    model_configs: dict[str, dict[str, Any]] | None = None,
    alias: str | None = None,
    names: dict[str, str] | None = None,
    extra_aliases: dict[str, list[str]] | None = None,
) -> list[str]:
    """Register each node's prompt as a new version of the prompt
    ``<name_prefix>.<node>`` (sanitized; ``names[node]`` when given: a node
    whose prompt comes from the registry) in MLflow's prompt registry, with its
    ``model_configs[node]`` (model, settings, system message), point ``alias``
    (and ``extra_aliases[node]``) at it, link the versions to ``run_id`` and
    tag it ``promptab.applied=true``. Returns the ``prompts:/<name>/<version>``
    URIs, in the order of ``prompts``. Raises :class:`MlflowLogError`."""
    client_class = mlflow_client_class()
    with quiet(), scoped_env(http_defaults()):
        try:
            client = client_class(tracking_uri)
            run = client.get_run(run_id) if run_id else None
            # register_prompt links each version to the "current" experiment,
            # which it finds through MLflow's global state: point that at ours.
            scope = {"MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_EXPERIMENT_NAME": None}
            scope["MLFLOW_EXPERIMENT_ID"] = run.info.experiment_id if run else None
            version_tags = {layout.key(k): layout.cap(str(v), MAX_TAG_VALUE) for k, v in tags.items()}
            with scoped_env(scope):
                versions = []
                for node, template in prompts.items():
                    version = _register(
                        client,
                        name=(names or {}).get(node) or prompt_name(f"{name_prefix}.{node}"),
                        template=template,
                        commit_message=commit_message or f"promptab: applied prompt of node {node}",
                        tags=dict(version_tags, **({"promptab.run_id": run_id} if run_id else {})),
                        model_config=(model_configs or {}).get(node),
                    )
                    for each in dict.fromkeys([alias, *(extra_aliases or {}).get(node, [])]):
                        if each:
                            client.set_prompt_alias(version.name, each, int(version.version))
                    versions.append(version)
            uris = [f"prompts:/{v.name}/{v.version}" for v in versions]
            if run is not None:
                _tag_applied(client, run, versions, uris)
            return uris
        except MlflowLogError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise MlflowLogError(
                f"could not register the applied prompts in MLflow's prompt registry: "
                f"{describe_error(exc, tracking_uri)}"
            ) from exc


# ------------------------------------------------------------------ internals


def _experiment_id(client: Any, uri: str, name: str, rootdir: Path) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        eid = experiment.experiment_id
        if experiment.lifecycle_stage == "deleted":
            raise MlflowLogError(
                f"MLflow experiment {name!r} (id {eid}) is deleted; restore it with "
                f"`mlflow experiments restore --experiment-id {eid}`, purge it for good with "
                f"`mlflow gc --experiment-ids {eid}`, or log elsewhere with `mlflow: {{experiment: <name>}}` "
                f"in the workflow file (tracking URI {redact_uri(uri)})"
            )
        return str(eid)
    try:
        if urlsplit(uri).scheme.split("+", 1)[0] in ("sqlite", "postgresql", "mysql", "mssql"):
            # The client's store would put artifacts in ./mlruns of the current
            # directory; put them where `mlflow server` started at the rootdir
            # puts its own: <rootdir>/mlartifacts/<experiment id>.
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

            store = SqlAlchemyStore(uri, (rootdir.resolve() / "mlartifacts").as_uri())
            try:
                return str(store.create_experiment(name))
            finally:
                with contextlib.suppress(Exception):
                    store.engine.dispose()
        return str(client.create_experiment(name))  # a server decides (it proxies artifacts)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_ALREADY_EXISTS":  # another session created it meanwhile
            return str(client.get_experiment_by_name(name).experiment_id)
        raise


def _set_experiment_tags(client: Any, exp_id: str, ab: ABTestSummary) -> None:
    """Description and kind, set when they differ from what is there."""
    current = client.get_experiment(exp_id).tags
    for name, value in layout.experiment_tags(ab).items():
        if current.get(name) != value:
            client.set_experiment_tag(exp_id, name, value)


def _log_abtest(
    client: Any, exp_id: str, ab: ABTestSummary, common: dict[str, str], results_path: Path, created: list[str],
    *, candidate: str | None = None, interrupted: bool = False,
) -> tuple[str, dict[str, str]]:
    now = int(time.time() * 1000)
    parent = client.create_run(exp_id, start_time=now, run_name=layout.parent_run_name(ab, common, now)).info.run_id
    created.append(parent)
    common = layout.abtest_common_tags(ab, common)
    tags = layout.parent_tags(ab, common, candidate=candidate, interrupted=interrupted)
    _log_batch(client, parent, now, layout.parent_params(ab), layout.parent_metrics(ab), tags)
    files = {"runs.json": layout.runs_table(ab, None)}
    if results_path.is_file():
        files["results.json"] = results_path.read_text(encoding="utf-8")
    _log_files(client, parent, files)

    children: dict[str, str] = {}
    count = len(ab.variants)
    for index, variant in enumerate(ab.variants):
        # created in the file's order; start times one millisecond apart and
        # falling, so MLflow's default (newest first) lists them in that order
        start = now + count - index
        child = client.create_run(exp_id, start_time=start, run_name=variant.name, tags={"mlflow.parentRunId": parent})
        created.append(child.info.run_id)
        children[variant.name] = child.info.run_id
        _log_variant(client, child.info.run_id, now, ab, variant, common)
        client.set_terminated(child.info.run_id, "FINISHED")
    client.set_terminated(parent, "FINISHED")
    return parent, children


def _log_variant(
    client: Any, run_id: str, now: int, ab: ABTestSummary, v: VariantSummary, common: dict[str, str]
) -> None:
    params, metrics = layout.variant_params(ab, v), layout.variant_metrics(v)
    _log_batch(client, run_id, now, params, metrics, layout.variant_tags(ab, v, common))
    _log_files(client, run_id, layout.variant_files(ab, v))


def _log_batch(
    client: Any, run_id: str, now: int, params: dict[str, Any], metrics: dict[str, Any], tags: dict[str, Any]
) -> None:
    """``log_batch`` in as few calls as MLflow's per-call limits allow."""
    from mlflow.entities import Metric, Param, RunTag

    for metrics_now, params_now, tags_now in layout.batches(params, metrics, tags):
        client.log_batch(
            run_id,
            metrics=[Metric(k, v, now, 0) for k, v in metrics_now],
            params=[Param(k, v) for k, v in params_now],
            tags=[RunTag(k, v) for k, v in tags_now],
            synchronous=True,
        )


def _log_files(client: Any, run_id: str, files: dict[str, str]) -> None:
    with tempfile.TemporaryDirectory(prefix="promptab-mlflow-") as tmp:
        for name, text in files.items():
            path = Path(tmp, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        client.log_artifacts(run_id, tmp)


def _register(client: Any, *, model_config: dict[str, Any] | None, **kwargs: Any) -> Any:
    """``register_prompt``; a model config MLflow refuses (a setting out of
    its range) goes whole into ``extra_params`` instead."""
    if not model_config:
        return client.register_prompt(**kwargs)
    try:
        from mlflow.entities.model_registry.prompt_version import PromptModelConfig

        PromptModelConfig.from_dict(model_config)
    except Exception:  # noqa: BLE001
        model_config = {"extra_params": model_config}
    return client.register_prompt(model_config=model_config, **kwargs)


def _tag_applied(client: Any, run: Any, versions: list[Any], uris: list[str]) -> None:
    """Tag the winning run and link the prompt versions to it as
    ``link_prompt_version_to_run`` does (which, in mlflow 3, reads the global
    tracking URI instead of the client's)."""
    from mlflow.entities import RunTag

    registered = [(v.name, str(v.version)) for v in versions]
    tags = registry.applied_tags(run.data.tags.get("mlflow.linkedPrompts"), registered, uris)
    client.log_batch(run.info.run_id, tags=[RunTag(k, v) for k, v in tags.items()], synchronous=True)
