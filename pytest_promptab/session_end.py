"""Session end on the controller: the results file, apply-best, MLflow, the
block exit code, and the summary printed to the terminal. Called from the
plugin's hooks.

What the session knows is written first (:func:`save_known`), before
anything slow, fallible or interruptible; a file that cannot be written costs
a warning, never the table, the gates or the exit code.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import pytest

from .analysis.gates import blocks_deploy
from .analysis.summary import SessionSummary
from .errors import PromptabWarning
from .report.table import render_abtest
from .session import PromptabSession

_RESULTS_WARNED = pytest.StashKey[bool]()


def start_journal(config: pytest.Config, psession: PromptabSession) -> None:
    """Open the journal of finished runs as the test loop starts (see
    :mod:`pytest_promptab.report.journal`); a warning when it cannot be."""
    psession.start_journal()
    _report_journal(config, psession)


def _report_journal(config: pytest.Config, psession: PromptabSession) -> None:
    journal = psession.journal
    if journal is not None and journal.error and not journal.reported:
        journal.reported = True
        record_warning(
            config,
            f"the journal of finished runs {_shown(journal.path)} cannot be written ({journal.error}): "
            "a killed session would lose its runs",
        )


def end_test_loop(config: pytest.Config, session: pytest.Session, psession: PromptabSession) -> None:
    """After the last item: statistics, the results file, and apply-best for
    the A/B tests whose gate items did not decide it (their first gate item
    applies the winner before judging: the deploy candidate is the winner
    actually applied)."""
    summary = psession.summarize(interrupted=False)
    if not summary.abtests:
        return
    save_results(config, psession)  # before anything can fail
    changed = False
    if not psession.stopped and psession.options.apply_best:
        psession.apply_best(interrupted=False)
        changed = True
    hook = config.hook.pytest_promptab_session_summary
    if hook.get_hookimpls():  # a plugin may annotate the summary
        hook(summary=summary)
        changed = True
    if changed:  # else the file has it already (5 MB at 10,000 runs)
        save_results(config, psession)


def finish_session(config: pytest.Config, session: pytest.Session, psession: PromptabSession, exitstatus: int) -> None:
    psession.close_journal()  # every run that finished is in it
    _report_journal(config, psession)
    stopped = psession.stopped or exitstatus == pytest.ExitCode.INTERRUPTED
    unwritten = psession.summary is None
    # the test loop did not finish (Ctrl-C, -x, internal error): keep what ran
    if psession.summary is None and (not psession.records or not _summarize_interrupted(config, session, psession)):
        return
    summary = psession.summary
    assert summary is not None
    if stopped and not summary.interrupted:
        summary.interrupted = unwritten = True
    if not summary.abtests:
        return
    save_known(config, psession, results=unwritten)  # first: what is known is written
    if not psession.options.no_mlflow:
        _log_mlflow(config, session, psession)
        save_results(config, psession)  # now with the MLflow run ids
    if psession.options.html_path is not None:
        write_html_report(config, psession)
    problem = psession.save_history()  # a completed session is kept in .promptab/history/
    if problem:
        record_warning(config, problem)
    if not summary.interrupted and session.exitstatus == 1:
        from .analysis.tolerance import exit_code_ignores_failures

        if exit_code_ignores_failures(summary, session.testsfailed):
            summary.tolerated_errors = session.testsfailed  # errored runs within max_error_rate: not a red build
            session.exitstatus = pytest.ExitCode.OK
    if not summary.interrupted and session.exitstatus in (0, 1):
        if any(blocks_deploy(ab.gates) for ab in summary.abtests):
            session.exitstatus = psession.options.block_exit_code


def write_html_report(config: pytest.Config, psession: PromptabSession) -> None:
    """``--promptab-html``: the HTML report, after the results file (and the
    MLflow run ids, which it links to). A failure is a warning, never a crash."""
    from .report.html import write_html

    path = psession.options.html_path
    assert path is not None and psession.summary is not None
    try:
        write_html(path, psession.summary)
    except OSError as exc:
        record_warning(config, f"the HTML report was not written to {_shown(path)}: {exc}")
    except Exception as exc:  # a bug in the report must not cost the session its results or exit code
        record_warning(
            config, f"the HTML report was not written to {_shown(path)}: unexpected {type(exc).__name__}: {exc}"
        )



def _summarize_interrupted(config: pytest.Config, session: pytest.Session, psession: PromptabSession) -> bool:
    """The summary of a session whose test loop did not finish. The runs are
    written first, as they are: the statistics load numpy and scipy (a second
    or more), and a second Ctrl-C may come within a second of the first.
    False when one did: the results file has the runs, without statistics."""
    from .report.results_file import runs_only_summary

    save_results(config, psession, runs_only_summary(psession.records, psession.workflows, psession.options.results_path))
    try:
        summary = psession.summarize(interrupted=True)
    except KeyboardInterrupt:
        session.exitstatus = pytest.ExitCode.INTERRUPTED
        runs = sum(len(records) for records in psession.records.values())
        where = _shown(psession.options.results_path) if psession.results_error is None else None
        if where is None and psession.journal is not None and psession.journal.error is None:
            where = _shown(psession.journal.path)
        kept = f"the {runs} finished runs are in {where}, without statistics" if where else "no file could be written"
        _say(config, f"promptab: interrupted again before the statistics: {kept}", yellow=True)
        return False
    config.hook.pytest_promptab_session_summary(summary=summary)
    return True


def _log_mlflow(config: pytest.Config, session: pytest.Session, psession: PromptabSession) -> None:
    """Log to MLflow (the logging process may take up to
    :data:`~pytest_promptab.tracking.process.TIMEOUT_S`), saying so: Ctrl-C
    stops the wait, and the session goes on to its table and exits 2."""
    _say(config, "promptab: logging to MLflow... (Ctrl-C stops waiting)")
    try:
        problem = psession.log_mlflow()
    except KeyboardInterrupt:  # the logging process is stopped already
        assert psession.summary is not None
        psession.mlflow_interrupted = True
        psession.summary.mlflow_error = "Ctrl-C stopped the wait for MLflow"
        session.exitstatus = pytest.ExitCode.INTERRUPTED
        _say(config, f"promptab: Ctrl-C: not logged to MLflow.{_kept_in(psession)}", yellow=True)
        return
    if problem:
        record_warning(config, f"MLflow logging failed: {problem}.{_kept_in(psession)}")


def save_known(config: pytest.Config, psession: PromptabSession, *, results: bool) -> None:
    """The one place where what the session knows is written, once its
    summary is final (gates judged, apply-best done) and before MLflow (slow,
    fallible, interruptible); on every path that has a summary, interrupted
    or not. The journal of finished runs is complete already; then the
    results file (``results``: unless the test loop wrote it). Any other file
    of the session that must survive (the history of sessions) is saved here,
    after it, and like it never raises: a warning at most."""
    if results:
        save_results(config, psession)


def save_results(config: pytest.Config, psession: PromptabSession, summary: SessionSummary | None = None) -> None:
    """Write the results file (of ``summary``, default the session's); one
    warning naming it, the first time it cannot be written."""
    problem = psession.write_results(summary)
    if problem and not config.stash.get(_RESULTS_WARNED, False):
        config.stash[_RESULTS_WARNED] = True
        journal = psession.journal
        kept = (
            f"; the finished runs are in {_shown(journal.path)}"
            if journal is not None and journal.error is None and journal.runs
            else ""
        )
        record_warning(
            config,
            f"the results file {_shown(psession.options.results_path)} cannot be written ({problem}){kept}; "
            "the table, the gates, MLflow and the exit code go on without it",
        )


def _kept_in(psession: PromptabSession) -> str:
    """Where the results are, for a warning about MLflow."""
    if psession.results_error is None:
        return f" Nothing is lost: every result is in {_shown(psession.options.results_path)}"
    journal = psession.journal
    if journal is not None and journal.error is None and journal.runs:
        return f" The results file could not be written either; the finished runs are in {_shown(journal.path)}"
    return " The results file could not be written either"


def write_terminal_summary(terminalreporter: Any, psession: PromptabSession) -> None:
    summary = psession.summary
    if summary is None or not summary.abtests:
        return
    tr = terminalreporter
    tr.write_sep("=", "promptab summary")
    for ab in summary.abtests:
        for line in render_abtest(ab, verbose=psession.options.verbose > 0, width=tr._tw.fullwidth):
            tr.write_line(line)
        tr.write_line("")
    if psession.results_error:
        tr.write_line(f"results: NOT written to {_shown(psession.options.results_path)} ({psession.results_error})", yellow=True)
    else:
        tr.write_line(f"results: {_shown(psession.options.results_path)}")
    html = psession.options.html_path
    if html is not None and html.exists():
        tr.write_line(f"HTML report: {_shown(html)}")
    if psession.history_path:
        tr.write_line(f"history: {psession.history_path}")
    if summary.mlflow_uri and not summary.mlflow_error:
        experiments = ", ".join(sorted({ab.experiment for ab in summary.abtests}))
        tr.write_line(f"MLflow: {_safe_uri(summary.mlflow_uri)} (experiment {experiments}); {_how_to_open(summary.mlflow_uri, psession)}")
    elif summary.mlflow_error:
        kept = "; the results file has everything" if psession.results_error is None else ""
        tr.write_line(f"MLflow: not logged ({summary.mlflow_error}){kept}")
    if summary.tolerated_errors:
        n = summary.tolerated_errors
        what = "FAILED item is an errored run" if n == 1 else "FAILED items are errored runs"
        verb = "it does" if n == 1 else "they do"
        tr.write_line(
            f"promptab: exit code 0: the {n} {what} within ab_test.max_error_rate; {verb} not fail the session "
            "(max_error_rate: 0 makes every FAILED run fail it)",
            yellow=True,
        )
    if any(blocks_deploy(ab.gates) for ab in summary.abtests) and not summary.interrupted:
        code = f"exit code {psession.options.block_exit_code}"
        if psession.mlflow_interrupted:
            code = f"exit code 2, not {psession.options.block_exit_code}: interrupted while logging to MLflow"
        tr.write_line(f"DEPLOY BLOCKED: a BLOCK_DEPLOY gate failed ({code})", red=True, bold=True)


def _say(config: pytest.Config, line: str, **markup: bool) -> None:
    """A line on the terminal now (flushed: CI logs show it as it happens)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line, **markup)
        reporter.flush()


def _safe_uri(uri: str) -> str:
    from .tracking.log import redact_uri

    return redact_uri(uri)


def _how_to_open(uri: str, psession: PromptabSession) -> str:
    from .tracking.ui import ui_command

    rootdir = psession.options.rootdir
    if uri == f"sqlite:///{rootdir / 'mlflow.db'}":
        return ui_command(f"mlflow ui (started in {_shown(rootdir) if _shown(rootdir) != '.' else 'this folder'})")
    if uri.startswith(("http://", "https://")):
        return f"see it at {_safe_uri(uri)}"
    return ui_command(f"mlflow ui --backend-store-uri {_safe_uri(uri)}")


def record_warning(config: pytest.Config, text: str, nodeid: str = "") -> None:
    message = warnings.WarningMessage(PromptabWarning(text), PromptabWarning, __file__, 0)
    config.hook.pytest_warning_recorded.call_historic(
        kwargs=dict(warning_message=message, when="runtest", nodeid=nodeid, location=None)
    )


def _shown(path: os.PathLike[str] | str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return rel if not rel.startswith("..") else str(path)
