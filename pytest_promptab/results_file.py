"""``.promptab/results.json``: every run and every aggregate, written
atomically (temp file + rename) so that a crash never leaves half a file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from . import __version__
from .summary import SessionSummary


def write_results(path: Path, summary: SessionSummary) -> None:
    data: dict[str, Any] = {"promptab_version": __version__, **summary.to_dict()}
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str, allow_nan=True) + "\n")


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
