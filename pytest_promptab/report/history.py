"""Saved sessions: ``<rootdir>/.promptab/history/<UTC>_<branch>_<commit>_<hex>.json``
(SPEC 12), and reading a reference back (a history file or a results file).

A history file is the results file (the same writer,
:func:`~pytest_promptab.report.results_file.results_pieces`: one
serialisation) with a header in front: ``schema_version``, ``saved_at``,
``git`` (commit, branch), ``complete`` and ``index``, one entry per A/B test
with what later readers need without the runs: the node id, the file's
sha256, the deploy candidate, the winner, the gates' outcomes, the apply
decision, whether the session is *accepted* as a reference for that A/B test,
each variant's prompt/settings/model hashes, and ``applied_sha256``, the
sha256 of the file as applying its winner writes it (``promptab apply``).
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from ..analysis.regression import accepted, variant_hashes
from ..analysis.summary import ABTestSummary, SessionSummary
from ..errors import PromptabError
from ..fileio import atomic_write_text
from ..run.records import encode_json
from .results_file import results_pieces

SCHEMA_VERSION = 1
HISTORY_DIR = Path(".promptab") / "history"


class ReferenceFileError(PromptabError):
    """A reference file that is missing, not a promptab file, or too new."""


def history_dir(rootdir: Path) -> Path:
    return Path(rootdir) / HISTORY_DIR


def history_name(now: datetime, git: dict[str, str]) -> str:
    branch = git.get("branch") or "detached"
    branch = "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in branch.replace("/", "-"))
    commit = (git.get("commit") or "nocommit")[:8]
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}_{branch}_{commit}_{secrets.token_hex(2)}.json"


def deploy_candidate(ab: ABTestSummary, applied: str | None = None) -> str:
    return applied or ab.baseline


def index_entry(ab: ABTestSummary, candidate: str, interrupted: bool,
                planned: str | None = None) -> dict[str, Any]:
    return {
        "nodeid": ab.nodeid,
        "file": ab.file,
        "file_sha256": ab.file_sha256,
        "deploy_candidate": candidate,
        "winner": ab.winner,
        "gates": {j.nodeid: j.outcome for j in ab.gates},
        "apply": ab.apply_decision,
        "accepted": accepted(ab, candidate, interrupted),
        "hashes": {v.name: variant_hashes(v) for v in ab.variants},
        "applied_sha256": planned,
    }


def history_pieces(summary: SessionSummary, header: dict[str, Any]) -> Iterator[str]:
    pieces = results_pieces(summary)
    first = next(pieces)
    yield "{" + encode_json(header)[1:-1] + "," + first[1:]
    yield from pieces


def save_history(rootdir: Path, summary: SessionSummary, candidates: dict[str, str], *,
                 now: datetime | None = None, planned: dict[str, str] | None = None) -> Path:
    """Write this session's history file; returns its path. Raises OSError."""
    from ..gitinfo import git_info

    now = now or datetime.now(timezone.utc)
    git = git_info(Path(rootdir))
    header = {
        "schema_version": SCHEMA_VERSION,
        "saved_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git": {k: git[k] for k in ("commit", "branch", "dirty") if k in git},
        "complete": not summary.interrupted and all(ab.complete for ab in summary.abtests),
        "index": [index_entry(ab, candidates.get(ab.nodeid) or ab.baseline, summary.interrupted,
                              (planned or {}).get(ab.nodeid))
                  for ab in summary.abtests],
    }
    path = history_dir(rootdir) / history_name(now, git)
    atomic_write_text(path, history_pieces(summary, header))
    return path


@dataclass
class SavedSession:
    path: Path
    header: dict[str, Any]
    summary: SessionSummary
    label: str | None = None
    """How the reference is named when it is not a file (``mlflow:<run id>``)."""

    @property
    def shown(self) -> str:
        return self.label or shown_path(self.path)

    def entry(self, nodeid: str) -> dict[str, Any] | None:
        return next((e for e in self.header.get("index", []) if e.get("nodeid") == nodeid), None)

    def abtest(self, nodeid: str) -> ABTestSummary | None:
        return next((ab for ab in self.summary.abtests if ab.nodeid == nodeid), None)

    def candidate(self, nodeid: str) -> str | None:
        entry, ab = self.entry(nodeid), self.abtest(nodeid)
        if entry and entry.get("deploy_candidate"):
            return str(entry["deploy_candidate"])
        return ab.baseline if ab else None


def load_saved(path: Path | str, *, what: str = "reference") -> SavedSession:
    """A history file or a results file, read back; a clear error otherwise."""
    path = Path(path)
    shown = str(path)
    if not path.is_file():
        raise ReferenceFileError(f"{what} {shown!r} does not exist (or is not a file)", path=shown,
                              hint="name a file under .promptab/history/ or a results.json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ReferenceFileError(f"{what} is not a promptab results file: not UTF-8 text", path=shown) from None
    except json.JSONDecodeError as exc:
        raise ReferenceFileError(f"{what} is not a promptab results file: invalid JSON ({exc.msg})", path=shown,
                              line=exc.lineno) from None
    except OSError as exc:
        raise ReferenceFileError(f"{what} cannot be read: {exc.strerror}", path=shown) from None
    return saved_from_data(data, path, what=what)


def saved_from_data(data: Any, path: Path, *, what: str = "reference", label: str | None = None,
                    candidates: dict[str, str] | None = None) -> SavedSession:
    """A history or results document (parsed JSON) as a :class:`SavedSession`;
    a results document gets the index a history file would have, with
    ``candidates`` (A/B test node id -> deploy candidate, default the
    baseline). Raises :class:`ReferenceFileError`."""
    shown = label or str(path)
    if not isinstance(data, dict) or "promptab_version" not in data or not isinstance(data.get("abtests"), list):
        raise ReferenceFileError(f"{what} is not a promptab results file (no 'promptab_version' and 'abtests')",
                              path=shown, line=1)
    version = data.get("schema_version", SCHEMA_VERSION)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ReferenceFileError(
            f"{what} has schema_version {version!r}, newer than this promptab reads ({SCHEMA_VERSION})",
            path=shown, line=1, hint="upgrade pytest-promptab",
        )
    header = {k: data.pop(k) for k in ("schema_version", "saved_at", "git", "complete", "index") if k in data}
    try:
        summary = SessionSummary.from_dict(data)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise ReferenceFileError(f"{what} is not a promptab results file: {exc}", path=shown) from None
    if "index" not in header:  # a results file: decide the same way a history file's index does
        header["complete"] = not summary.interrupted
        header["index"] = [index_entry(ab, (candidates or {}).get(ab.nodeid) or ab.baseline, summary.interrupted)
                           for ab in summary.abtests]
    return SavedSession(path, header, summary, label)


def history_files(rootdir: Path) -> list[Path]:
    """Saved sessions, oldest first (the names start with the UTC time)."""
    folder = history_dir(rootdir)
    try:
        paths = [p for p in folder.iterdir() if p.suffix == ".json" and not p.name.startswith(".")]
    except OSError:
        return []
    return sorted(paths, key=_when)


def _when(path: Path) -> tuple[str, int]:
    """The UTC time of the name, then the modification time (two sessions in one second)."""
    try:
        return path.name[:16], path.stat().st_mtime_ns
    except OSError:
        return path.name[:16], 0


def find_reference(rootdir: Path, nodeid: str, branch: str | None) -> SavedSession | None:
    """The latest earlier accepted session of ``nodeid``: same branch first, else any branch."""
    fallback: SavedSession | None = None
    for path in reversed(history_files(rootdir)):
        try:
            saved = load_saved(path)
        except PromptabError:
            continue  # a broken or newer file is never a reference
        entry = saved.entry(nodeid)
        if not entry or not entry.get("accepted") or saved.abtest(nodeid) is None:
            continue
        if (saved.header.get("git") or {}).get("branch") == branch:
            return saved
        fallback = fallback or saved
    return fallback


def shown_path(path: Path) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return rel if not rel.startswith("..") else str(path)
