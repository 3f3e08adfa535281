"""``.promptab/results.json``: every run and every aggregate, written
atomically (temp file + rename) so that a crash never leaves half a file.

The file is compact JSON: the session and each A/B test's aggregates on one
line, then the A/B test's ``runs``, one run per line (so that ``grep``,
``head`` and line-based diffs work on it). Each run is its record's own
:meth:`RunRecord.to_json` text, spliced in as it is: the runs, which are
nearly all of the file, are encoded once per session, when they finish, not
at every write.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

from .. import __version__
from ..analysis.summary import ABTestSummary, SessionSummary, plain
from ..fileio import atomic_write_text
from ..run.records import RunRecord, encode_json

if TYPE_CHECKING:
    from ..workflow.loader import LoadedWorkflow

__all__ = ["atomic_write_text", "results_pieces", "results_text", "runs_only_summary", "write_results"]


def write_results(path: Path, summary: SessionSummary) -> None:
    atomic_write_text(path, results_pieces(summary))


def runs_only_summary(
    records: Mapping[str, Sequence[RunRecord]], workflows: Mapping[str, LoadedWorkflow], results_path: Path
) -> SessionSummary:
    """What is known of an interrupted session before any statistics: each
    A/B test (file -> its runs) with its runs and what its file says, no
    aggregates, no winner, no gates (``variants`` and ``gates`` empty,
    ``complete`` false). Cheap: no numpy or scipy, nothing read from disk,
    so that it is written before anything slow (a second Ctrl-C)."""
    summary = SessionSummary(interrupted=True, results_path=str(results_path))
    for display in sorted(records):
        runs = list(records[display])
        if not runs:
            continue
        loaded = workflows.get(display)
        ab_test = loaded.config.ab_test if loaded is not None else None
        summary.abtests.append(
            ABTestSummary(
                file=display,
                workflow=loaded.config.name if loaded is not None else "",
                name=runs[0].ab_test,
                nodeid=f"{display}::{runs[0].ab_test}",
                baseline=ab_test.baseline if ab_test is not None else "",
                objective=ab_test.objective.metric if ab_test is not None else "",
                goal=ab_test.objective.goal if ab_test is not None else "",
                alpha=ab_test.alpha if ab_test is not None else float("nan"),
                variants=[],
                winner_reason="interrupted before the statistics: the runs only",
                complete=False,
                failed_runs=sum(1 for run in runs if run.status == "error"),
                file_sha256=next((run.file_sha256 for run in runs if run.file_sha256), ""),
                runs=runs,
            )
        )
    return summary


def results_text(summary: SessionSummary) -> str:
    """The results file's text: ``{"promptab_version": ..., **summary.to_dict()}``
    as JSON, without encoding the runs again."""
    return "".join(results_pieces(summary))


def results_pieces(summary: SessionSummary) -> Iterator[str]:
    """:func:`results_text` in pieces, a run at a time."""
    yield '{"promptab_version":' + encode_json(__version__) + ',"abtests":['
    for index, ab in enumerate(summary.abtests):
        if index:
            yield ",\n"
        yield from _abtest_pieces(ab)
    yield "]" + _members({key: plain(value) for key, value in vars(summary).items() if key != "abtests"}) + "}\n"


def _abtest_pieces(ab: ABTestSummary) -> Iterator[str]:
    members = _members({key: plain(value) for key, value in vars(ab).items() if key != "runs"})[1:]
    yield "{" + members + ("," if members else "") + '"runs":['
    for index, record in enumerate(ab.runs):
        yield ",\n" if index else "\n"
        yield record.to_json()
    yield "\n]}" if ab.runs else "]}"


def _members(data: dict[str, Any]) -> str:
    """``data``'s members as JSON text with a leading comma (``",k:v,..."``),
    to be placed inside an object; empty for an empty dict."""
    text = encode_json(data)
    return "," + text[1:-1] if data else ""
