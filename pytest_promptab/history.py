"""The session's side of history and regression (SPEC 12), without pytest:
which regression gates an A/B test has, which reference it is held against,
the comparison and the regression judgements, and saving the session.

Called by :class:`~pytest_promptab.session.PromptabSession` (``compare``,
``save_history``) and by the collector (``regression_specs``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .analysis.summary import ABTestSummary
from .errors import PromptabError
from .workflow.regression_spec import Tolerance, parse_tolerance

if TYPE_CHECKING:
    from .references import Reference
    from .report.history import SavedSession
    from .session import PromptabSession
    from .workflow.loader import LoadedWorkflow


@dataclass(frozen=True)
class RegressionSpec:
    metric: str
    tolerance: Tolerance
    higher_better: bool
    action: str
    variants: tuple[str, ...] | None

    @property
    def label(self) -> str:
        return f"{self.metric}:{self.tolerance.label}"


def regression_specs(psession: PromptabSession, loaded: LoadedWorkflow) -> list[RegressionSpec]:
    """The file's ``ab_test.regression`` gates, then one FAIL gate per ``--promptab-compare-fail``."""
    from .workflow.regression_spec import higher_is_better

    specs = []
    for reg in loaded.config.ab_test.regression:
        tol = parse_tolerance(reg.max_drop if reg.max_drop is not None else reg.max_rise)
        specs.append(RegressionSpec(reg.metric, tol, reg.higher_is_better, reg.action,
                                    tuple(reg.variants) if reg.variants is not None else None))
    for metric, tol in psession.options.compare_fail:
        specs.append(RegressionSpec(metric, tol, bool(higher_is_better(metric)), "FAIL", None))
    return specs


def wants_compare(psession: PromptabSession, loaded: LoadedWorkflow | None) -> bool:
    o = psession.options
    return bool(o.compare or o.compare_to or o.compare_fail or (loaded and loaded.config.ab_test.regression))


def _branch(psession: PromptabSession) -> str | None:
    """The current branch, asked once per session."""
    if "_git_branch" not in psession.__dict__:
        from .gitinfo import git_info

        psession.__dict__["_git_branch"] = git_info(psession.options.rootdir).get("branch")
    branch: str | None = psession.__dict__["_git_branch"]
    return branch


def session_tracking_uri(psession: PromptabSession) -> str:
    """The session's tracking URI, as logging resolves it."""
    import os

    from .tracking.log import resolve_tracking_uri

    o = psession.options
    return resolve_tracking_uri(o.mlflow_uri, o.mlflow_ini, os.environ, o.rootdir)


def _named_reference(psession: PromptabSession) -> Reference:
    """``--promptab-compare-to``'s reference, read once per session."""
    if "_reference" not in psession.__dict__:
        from .references import handed_on

        text = psession.options.compare_to
        assert text is not None
        uri = session_tracking_uri(psession) if text.startswith("mlflow:") else None
        psession.__dict__["_reference"] = handed_on(text, what="--promptab-compare-to", tracking_uri=uri)
    ref: Reference = psession.__dict__["_reference"]
    return ref


def reference_for(psession: PromptabSession, nodeid: str) -> tuple[SavedSession | None, str]:
    """The reference session of ``nodeid`` and its label, or None and why
    not; looked up once per session and A/B test."""
    found: dict[str, tuple[SavedSession | None, str]] = psession.__dict__.setdefault("_references_found", {})
    if nodeid not in found:
        found[nodeid] = _find_reference(psession, nodeid)
    return found[nodeid]


def _find_reference(psession: PromptabSession, nodeid: str) -> tuple[SavedSession | None, str]:
    from .report import history as files

    if psession.options.compare_to:
        return _named_reference(psession).for_abtest(nodeid)  # checked when the options were read
    found = files.find_reference(psession.options.rootdir, nodeid, _branch(psession))
    if found is None:
        return None, "nothing to compare: no earlier accepted session of this A/B test in .promptab/history/"
    return found, files.shown_path(found.path)


def compare_abtest(psession: PromptabSession, ab: ABTestSummary, candidate: str, *, judge: bool) -> None:
    """Set ``ab.vs_reference`` (or ``ab.compare_note``) and, with ``judge``,
    add the regression judgements to ``ab.gates``."""
    loaded = psession.workflows.get(ab.file)
    if not wants_compare(psession, loaded) or ab.vs_reference is not None or ab.compare_note:
        return
    from .analysis.regression import compare_abtests, compare_metric, judge_regression

    try:
        saved, label = reference_for(psession, ab.nodeid)
    except PromptabError as exc:
        ab.compare_note = f"nothing to compare: {exc}"
        return
    ref_ab = saved.abtest(ab.nodeid) if saved is not None else None
    ref_candidate = saved.candidate(ab.nodeid) if saved is not None else None
    if ref_ab is None or ref_candidate is None:
        ab.compare_note = label
        return
    ab.vs_reference = compare_abtests(ab, candidate, ref_ab, ref_candidate, label)
    if not judge or loaded is None:
        return
    for spec in regression_specs(psession, loaded):
        for variant in ab.variants:
            if spec.variants is not None and variant.name not in spec.variants:
                continue
            if variant.completed_runs == 0:
                continue
            change = compare_metric(ab, variant.name, ref_ab, ref_candidate, spec.metric, ab.alpha)
            ab.gates.append(judge_regression(
                change, variant=variant.name, candidate=candidate, higher_better=spec.higher_better,
                tolerance=spec.tolerance, action=spec.action, alpha=ab.alpha,
                nodeid=f"{ab.nodeid}::regression[{variant.name}:{spec.label}]", label=spec.label,
            ))


def keep_regressed_out(psession: PromptabSession, ab: ABTestSummary) -> None:
    """Before the deploy candidate is decided: each challenger that regressed
    against the reference on a FAIL or BLOCK_DEPLOY regression gate loses
    (SPEC 7 and 12), and the winner is chosen again without it. Its regression
    items are judged later, with the gates (xfailed: it is never applied)."""
    loaded = psession.workflows.get(ab.file)
    if loaded is None or not wants_compare(psession, loaded):
        return
    specs = [spec for spec in regression_specs(psession, loaded) if spec.action in ("FAIL", "BLOCK_DEPLOY")]
    if not specs:
        return
    from .analysis.regression import (
        compare_metric,
        judge_regression,
        keep_out_of_winner,
    )

    try:
        saved, _ = reference_for(psession, ab.nodeid)
    except PromptabError:
        return  # said when the comparison is made
    ref_ab = saved.abtest(ab.nodeid) if saved is not None else None
    ref_candidate = saved.candidate(ab.nodeid) if saved is not None else None
    if ref_ab is None or ref_candidate is None:
        return
    regressed: dict[str, list[str]] = {}
    for spec in specs:
        for variant in ab.variants:
            if variant.name == ab.baseline or variant.completed_runs == 0:
                continue
            if spec.variants is not None and variant.name not in spec.variants:
                continue
            change = compare_metric(ab, variant.name, ref_ab, ref_candidate, spec.metric, ab.alpha)
            judgement = judge_regression(
                change, variant=variant.name, candidate=ab.baseline, higher_better=spec.higher_better,
                tolerance=spec.tolerance, action=spec.action, alpha=ab.alpha, nodeid="", label=spec.label,
            )
            if not judgement.met:
                regressed.setdefault(variant.name, []).append(judgement.gate)
    if regressed:
        keep_out_of_winner(ab, regressed, loaded.config.ab_test.objective.run_metric)


def save_session(psession: PromptabSession) -> str | None:
    summary = psession.summary
    if psession.options.no_history or summary is None or summary.interrupted or not summary.abtests:
        return None
    from .report.history import save_history, shown_path

    candidates = {ab.nodeid: psession.applied.get(ab.nodeid) or ab.baseline for ab in summary.abtests}
    try:
        path = save_history(psession.options.rootdir, summary, candidates, planned=_planned(psession))
    except OSError as exc:
        return f"the session was not saved to .promptab/history/: {exc.strerror or exc}"
    psession.history_path = shown_path(path)
    return None


def _planned(psession: PromptabSession) -> dict[str, str]:
    """Per A/B test, the sha256 of the bytes applying its winner writes (for
    ``promptab apply``: "already applied" exactly when the file holds them)."""
    from .apply.best import planned_sha256

    assert psession.summary is not None
    planned: dict[str, str] = {}
    for ab in psession.summary.abtests:
        loaded = psession.workflows.get(ab.file)
        if loaded is None:
            continue
        sha = planned_sha256(loaded.path, loaded.config, ab, collected_sha256=ab.file_sha256,
                             applied=psession.applied.get(ab.nodeid) == ab.winner)
        if sha is not None:
            planned[ab.nodeid] = sha
    return planned
