"""The one line that says how to turn promptab on, for a session run without
it over files that look like promptab workflows (``pytest examples/`` when
``--promptab`` was meant): when it collected nothing, or ran on paths given
on the command line.

Cheap by design, since it runs in every pytest session of every project that
has the plugin installed: no YAML parser, only the ``.yaml``/``.yml`` files
pytest's own collection walked past (no walk of its own), at most
:data:`MAX_FILES` of them read, and of each its first :data:`MAX_BYTES`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

MAX_FILES = 50
MAX_BYTES = 64 * 1024
_TOP_LEVEL_AB_TEST = re.compile(rb"^ab_test[ \t]*:", re.MULTILINE)
# a configurable-agents workflow (SPEC section 14) holds it under config:
_AGENTS = re.compile(rb"^schema_version[ \t]*:", re.MULTILINE)
_NESTED_AB_TEST = re.compile(rb"^[ \t]+ab_test[ \t]*:", re.MULTILINE)


def looks_like_promptab(path: Path) -> bool:
    """A text scan: a top-level ``ab_test:`` line (or a configurable-agents
    file with a nested one). Unreadable files do not look like anything."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(MAX_BYTES)
    except OSError:
        return False
    if b"ab_test" not in head:
        return False
    if _TOP_LEVEL_AB_TEST.search(head):
        return True
    return bool(_AGENTS.search(head) and _NESTED_AB_TEST.search(head))


def promptab_files(candidates: list[Path]) -> list[Path]:
    """The candidates (the first :data:`MAX_FILES`) that look like promptab files."""
    return [path for path in candidates[:MAX_FILES] if looks_like_promptab(path)]


def hint(candidates: list[Path], *, collected_nothing: bool = True, paths_given: bool = True) -> str | None:
    """The line to print, or None: when the session collected nothing, or ran
    on paths given on the command line (``pytest examples/``), and a candidate
    looks like a promptab file. A bare ``pytest`` that ran tests (its
    ``testpaths``, the current folder) stays quiet: the project's own test
    data may hold workflow files that are not meant to run."""
    if not (collected_nothing or paths_given):
        return None
    found = promptab_files(candidates)
    if not found:
        return None
    how = "turn promptab on with --promptab, or with promptab = true in the ini file"
    if len(found) == 1:
        return f"promptab is off: {_shown(found[0])} has an ab_test section and was not run; {how}"
    names = ", ".join(_shown(path) for path in found[:2]) + (", ..." if len(found) > 2 else "")
    return f"promptab is off: {len(found)} files with an ab_test section were not run ({names}); {how}"


def _shown(path: Path) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return rel if not rel.startswith("..") else str(path)
