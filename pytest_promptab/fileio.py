"""Atomic file writes: the new content goes to a temporary file in the same
folder, is flushed to disk, and is moved over the destination with
:func:`os.replace`, so a reader (or a crash) sees the old file or the new one,
never half of one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterable


def atomic_write_bytes(path: Path, data: bytes, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` atomically.

    ``mode``: the new file's permission bits; None leaves those of a new
    temporary file (0o600). The temporary file is removed when anything
    fails, and the folder is synced afterwards so the rename survives a crash
    (where the platform allows it). Raises :class:`OSError`."""
    atomic_write_chunks(path, (data,), mode)


def atomic_write_chunks(path: Path, chunks: Iterable[bytes], mode: int | None = None) -> None:
    """:func:`atomic_write_bytes` of the concatenated ``chunks``, written as
    they come (a big file is never held whole in memory)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError, AttributeError):  # make the rename durable (POSIX)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def atomic_write_text(path: Path, text: str | Iterable[str]) -> None:
    """Replace ``path`` with ``text`` (a string, or strings to concatenate,
    written as they come) as UTF-8 (line breaks written as they are),
    creating its folder if needed. Raises :class:`OSError`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pieces = (text,) if isinstance(text, str) else text
    atomic_write_chunks(path, (piece.encode("utf-8") for piece in pieces))
