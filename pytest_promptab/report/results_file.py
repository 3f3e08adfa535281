"""``.promptab/results.json``: every run and every aggregate, written
atomically (temp file + rename) so that a crash never leaves half a file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .. import __version__
from ..analysis.summary import SessionSummary
from ..fileio import atomic_write_text

__all__ = ["atomic_write_text", "write_results"]


def write_results(path: Path, summary: SessionSummary) -> None:
    data: dict[str, Any] = {"promptab_version": __version__, **summary.to_dict()}
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str, allow_nan=True) + "\n")
