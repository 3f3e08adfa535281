"""Reading a reference session back from MLflow (SPEC 12):
``mlflow:<run id>`` and ``mlflow:branch=<name>``.

What an A/B test's parent run holds (:mod:`pytest_promptab.tracking.log`)
is enough to rebuild the session: the ``results.json`` artifact (the results
file, the one serialisation of a session) and the tags ``promptab.nodeid``,
``promptab.deploy_candidate``, ``promptab.accepted`` and
``mlflow.source.git.branch``, which make ``search_runs`` filters possible.
Metric names are never read back.

- ``mlflow:<run id>``: that parent run; a variant's child run stands for its
  parent.
- ``mlflow:branch=<name>``: the latest *accepted* parent run (complete, not
  blocked or failed on its deploy candidate) of the A/B test logged from that
  branch, in any experiment of the store.

mlflow is imported by these functions only, in the calling process (the
pytest controller, or the ``promptab`` console script). Every failure is a
:class:`MlflowReferenceError` with one line: an unknown run, no run from that
branch, a store that is not there or not reachable. Reading never creates a
store: a sqlite database that does not exist is an error.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import PromptabError

PREFIX = "mlflow:"
RESULTS_ARTIFACT = "results.json"


class MlflowReferenceError(PromptabError):
    """An ``mlflow:`` reference that cannot be read; the message says why."""


@dataclass(frozen=True)
class MlflowRef:
    """A parsed ``mlflow:`` reference: a run id or a branch."""

    text: str
    run_id: str | None = None
    branch: str | None = None


@dataclass
class MlflowSession:
    """A parent run read back: the results document and what its tags say."""

    run_id: str
    data: dict[str, Any]
    candidates: dict[str, str]
    """A/B test node id -> deploy candidate (the tag; the baseline when absent)."""
    label: str
    """``mlflow:<run id> (main@1a2b3c4d, 2026-12-01 08:45Z)``."""


def is_mlflow_ref(text: str | None) -> bool:
    return bool(text) and str(text).startswith(PREFIX)


def parse_ref(text: str) -> MlflowRef:
    """``mlflow:<run id>`` or ``mlflow:branch=<name>``; raises
    :class:`MlflowReferenceError` for anything else."""
    rest = text[len(PREFIX):].strip()
    if rest.startswith("branch="):
        branch = rest[len("branch="):].strip()
        if not branch:
            raise MlflowReferenceError("no branch name after 'branch=' (e.g. mlflow:branch=main)")
        return MlflowRef(text, branch=branch)
    if not rest or "=" in rest or any(ch.isspace() for ch in rest):
        raise MlflowReferenceError("not an MLflow reference: expected mlflow:<run id> or mlflow:branch=<name>")
    return MlflowRef(text, run_id=rest)


class MlflowReader:
    """Reads parent runs of A/B tests from the store at ``tracking_uri``."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self._client: Any = None
        self._sessions: dict[str, MlflowSession] = {}

    # -- the store ------------------------------------------------------
    def _where(self) -> str:
        from .connect import redact_uri

        return f"MLflow at {redact_uri(self.tracking_uri)}"

    def client(self) -> Any:
        if self._client is None:
            scheme = urlsplit(self.tracking_uri).scheme.split("+", 1)[0]
            if scheme == "sqlite":
                database = self.tracking_uri.split(":///", 1)[-1].split("?", 1)[0]
                if database and database != ":memory:" and not Path(database).is_file():
                    raise MlflowReferenceError(
                        f"no MLflow store at {database} (nothing was logged there); "
                        "set --promptab-mlflow-uri or MLFLOW_TRACKING_URI to the store the reference was logged to"
                    )
            from .connect import MlflowLogError, mlflow_client_class

            try:
                client_class = mlflow_client_class()
            except MlflowLogError as exc:
                raise MlflowReferenceError(exc.message) from None
            self._client = self._call(lambda: client_class(self.tracking_uri))
        return self._client

    def _call(self, fn: Any, *, missing: str | None = None) -> Any:
        """``fn()`` with MLflow's chatter quiet and its HTTP retries bounded;
        a failure becomes one line (``missing``: for a run that does not exist)."""
        from .connect import describe_error, http_defaults, quiet, scoped_env

        with quiet(), scoped_env(http_defaults()):
            try:
                return fn()
            except MlflowReferenceError:
                raise
            except Exception as exc:  # noqa: BLE001 - one line, never a traceback
                code = getattr(exc, "error_code", "")
                if missing and (code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
                                or "not found" in str(exc).lower()):
                    raise MlflowReferenceError(missing) from None
                raise MlflowReferenceError(describe_error(exc, self.tracking_uri)) from None

    # -- runs -----------------------------------------------------------
    def session_of_run(self, run_id: str) -> MlflowSession:
        """The parent run ``run_id`` (or the parent of the child run ``run_id``), read back."""
        if run_id in self._sessions:
            return self._sessions[run_id]
        client = self.client()
        run = self._call(lambda: client.get_run(run_id), missing=f"no MLflow run {run_id!r} in {self._where()}")
        tags = run.data.tags
        parent_id = tags.get("mlflow.parentRunId")
        if parent_id and "promptab.nodeid" not in tags:  # a variant's run: its A/B test is the parent
            run = self._call(lambda: client.get_run(parent_id), missing=f"no MLflow run {parent_id!r} "
                             f"(the parent of run {run_id!r}) in {self._where()}")
            tags = run.data.tags
        real_id = run.info.run_id
        if getattr(run.info, "lifecycle_stage", "active") == "deleted":
            raise MlflowReferenceError(f"MLflow run {real_id!r} is deleted: restore it (mlflow runs restore "
                                       f"--run-id {real_id}) or name another run")
        if "promptab.nodeid" not in tags:
            raise MlflowReferenceError(f"MLflow run {run_id!r} is not a promptab A/B test run (no promptab.nodeid tag)")
        data = self._results(real_id)
        nodeid = str(tags["promptab.nodeid"])
        mine = [ab for ab in data.get("abtests") or [] if isinstance(ab, dict) and ab.get("nodeid") == nodeid]
        if not mine or mine[0].get("file_sha256") != tags.get("promptab.file_sha256", mine[0].get("file_sha256")):
            raise MlflowReferenceError(f"the {RESULTS_ARTIFACT} artifact of MLflow run {real_id!r} is not the "
                                       f"session of its A/B test {nodeid} (a results file left from another session?)")
        candidates = self._candidates(tags)
        import time

        when = time.strftime("%Y-%m-%d %H:%MZ", time.gmtime((run.info.start_time or 0) / 1000))
        branch, commit = tags.get("mlflow.source.git.branch"), tags.get("mlflow.source.git.commit")
        if branch or commit:  # outside git: the time alone
            when = f"{branch or 'detached'}@{(commit or '-')[:8]}, {when}"
        session = MlflowSession(real_id, data, candidates, f"mlflow:{real_id} ({when})")
        self._sessions[run_id] = self._sessions[real_id] = session
        return session

    def _candidates(self, tags: dict[str, str]) -> dict[str, str]:
        """A/B test node id -> deploy candidate, for every A/B test of the
        parent's session (its ``results.json`` holds them all): the tags of
        the parent runs that share its ``promptab.session`` tag."""
        own = {str(tags["promptab.nodeid"]): str(tags.get("promptab.deploy_candidate") or "")}
        session = tags.get("promptab.session")
        if session:
            client = self.client()
            ids = [e.experiment_id for e in self._call(lambda: client.search_experiments())]
            filter_ = f"tags.`promptab.session` = {_quote(session)} and tags.`promptab.nodeid` != ''"
            for run in self._call(lambda: client.search_runs(ids, filter_, max_results=1000)) if ids else []:
                nodeid, candidate = run.data.tags.get("promptab.nodeid"), run.data.tags.get("promptab.deploy_candidate")
                if nodeid and candidate:
                    own.setdefault(nodeid, candidate)
        return {k: v for k, v in own.items() if v}

    def _results(self, run_id: str) -> dict[str, Any]:
        client = self.client()
        with tempfile.TemporaryDirectory(prefix="promptab-ref-") as tmp:
            path = self._call(
                lambda: client.download_artifacts(run_id, RESULTS_ARTIFACT, tmp),
                missing=f"MLflow run {run_id!r} has no {RESULTS_ARTIFACT} artifact (was the results file written?)",
            )
            try:
                data = json.loads(Path(path).read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise MlflowReferenceError(f"the {RESULTS_ARTIFACT} artifact of MLflow run {run_id!r} "
                                           f"is not a promptab results file ({exc})") from None
        if not isinstance(data, dict):
            raise MlflowReferenceError(f"the {RESULTS_ARTIFACT} artifact of MLflow run {run_id!r} "
                                       "is not a promptab results file")
        return data

    def latest_on_branch(self, branch: str, nodeid: str | None = None, *, accepted: bool = True) -> str | None:
        """The id of the latest parent run logged from ``branch`` (of the A/B
        test ``nodeid``, else of any), accepted ones only unless told; None when there is none."""
        from mlflow.entities import ViewType

        client = self.client()
        experiments = self._call(lambda: client.search_experiments(view_type=ViewType.ACTIVE_ONLY))
        ids = [e.experiment_id for e in experiments]
        if not ids:
            return None
        parts = [f"tags.`mlflow.source.git.branch` = {_quote(branch)}"]
        parts.append(f"tags.`promptab.nodeid` = {_quote(nodeid)}" if nodeid else "tags.`promptab.nodeid` != ''")
        if accepted:
            parts.append("tags.`promptab.accepted` = 'true'")
        runs = self._call(lambda: client.search_runs(
            ids, " and ".join(parts), max_results=1, order_by=["attributes.start_time DESC"]))
        return runs[0].info.run_id if runs else None

    def branch_session(self, branch: str, nodeid: str | None = None) -> MlflowSession | None:
        run_id = self.latest_on_branch(branch, nodeid)
        return None if run_id is None else self.session_of_run(run_id)

    def check_branch(self, branch: str) -> None:
        """Raise unless some accepted A/B test run was logged from ``branch``."""
        if self.latest_on_branch(branch) is not None:
            return
        some = self.latest_on_branch(branch, accepted=False) is not None
        why = ("its runs are not accepted (incomplete, or blocked or failed on the deploy candidate; runs "
               "logged before promptab tagged promptab.accepted never are)" if some
               else "no promptab A/B test run was logged from it")
        raise MlflowReferenceError(f"no accepted MLflow run from branch {branch!r} in {self._where()}: {why}")


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
