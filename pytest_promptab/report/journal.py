"""``.promptab/runs.jsonl``: the journal of finished runs.

The pytest controller keeps it beside the results file, so that a session
that is killed (SIGTERM, SIGKILL, a second Ctrl-C, a crash) keeps every run
that had finished. It is opened once per session, when the test loop starts
(truncated: it holds one session only), and its first line names the session:

    {"promptab_journal":1,"promptab_version":"0.4.0","started":"2026-12-01T10:31:47Z","pid":4242}

Then one line per finished run, appended and flushed to the operating system
as the run's record reaches the controller: the record's own
:meth:`RunRecord.to_json` text, the same text as in ``results.json``'s
``runs``. A killed process loses nothing that was flushed (the kernel has
it); a power cut may lose the last lines (no ``fsync`` per run).

Writing it never raises into the session: a journal that cannot be opened or
written is remembered (:attr:`RunJournal.error`) and the session says so.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import BinaryIO

from .. import __version__
from ..run.records import encode_json

__all__ = ["JOURNAL_NAME", "RunJournal", "journal_path"]

JOURNAL_NAME = "runs.jsonl"


def journal_path(results_path: Path) -> Path:
    """The journal of a session whose results file is ``results_path``."""
    return Path(results_path).parent / JOURNAL_NAME


class RunJournal:
    """The journal file of one session, open from :meth:`start` to :meth:`close`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.error: str | None = None
        """Why the journal is not (or no longer) written, once it failed."""
        self.runs = 0
        """Run lines written."""
        self.reported = False
        """The session said why it failed (once)."""
        self._file: BinaryIO | None = None

    def start(self, started: float) -> str | None:
        """Create (or truncate) the file and write its header line; returns
        why it could not, else None. ``started``: the session's start time
        (seconds since the epoch)."""
        header = {
            "promptab_journal": 1,
            "promptab_version": __version__,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "pid": os.getpid(),
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # unbuffered: each line is one write(2) to the operating system, no buffer to flush
            self._file = open(self.path, "wb", buffering=0)  # noqa: SIM115 - open for the session
            self._write(encode_json(header))
        except OSError as exc:
            self._fail(exc)
        return self.error

    def append(self, text: str) -> None:
        """Append one run's JSON text (one line), written through to the
        operating system at once."""
        if self._file is None:
            return
        try:
            self._write(text)
        except OSError as exc:
            self._fail(exc)
            return
        self.runs += 1

    def close(self) -> None:
        """Close the file (idempotent); what was written stays."""
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError as exc:
                self.error = self.error or describe_os_error(exc)

    def _write(self, line: str) -> None:
        assert self._file is not None
        data = memoryview((line + "\n").encode("utf-8"))
        while data:  # a raw write may take fewer bytes than given
            written = self._file.write(data)
            if not written:
                raise OSError(f"nothing written to {self.path}")
            data = data[written:]

    def _fail(self, exc: OSError) -> None:
        self.error = describe_os_error(exc)
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError:
                pass


def describe_os_error(exc: OSError) -> str:
    """``FileExistsError: File exists: /repo/out``: the error and the path it
    was about, unless that is a temporary file (the caller names the file it
    was writing)."""
    where = exc.filename if isinstance(exc.filename, str) and not exc.filename.endswith(".tmp") else None
    return f"{type(exc).__name__}: {exc.strerror or exc}" + (f": {where}" if where else "")
