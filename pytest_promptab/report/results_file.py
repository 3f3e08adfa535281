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
from typing import Any, Iterator

from .. import __version__
from ..analysis.summary import ABTestSummary, SessionSummary, plain
from ..fileio import atomic_write_text
from ..run.records import encode_json

__all__ = ["atomic_write_text", "results_pieces", "results_text", "write_results"]


def write_results(path: Path, summary: SessionSummary) -> None:
    atomic_write_text(path, results_pieces(summary))


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
