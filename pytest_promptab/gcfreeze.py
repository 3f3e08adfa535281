"""The cyclic garbage collector in a big ``--promptab`` session.

The collected tree (the session, 10,000 items and their nodes, the
workflow files, the plugins) lives until the session ends, and pytest's
objects form cycles (a node and its parent, the config and its plugins), so
every full collection during the test loop walks all of it again, and so do
pytest's own ``gc.collect()`` calls at cleanup (it collects five times to
report unraisable exceptions) and the interpreter's last collection at exit.
At 10,000 items that is about a third of a second of the exit alone.

:func:`freeze_collected` moves what exists when the test loop starts into
the collector's permanent generation (:func:`gc.freeze`), as long-lived
servers do before forking: the collector no longer walks it. Whatever the
tests create is collected as before (pytest's unraisable-exception check at
the end sees it). :func:`release_frozen` undoes it at ``pytest_unconfigure``
unless the process is about to exit: after pytest's command-line entry point (the
``pytest`` command, ``python -m pytest``) returns, the interpreter exits,
and the frozen tree is left to the operating system rather than freed one
object at a time. In any other case (``pytest.main()`` from a script, an
in-process ``pytester`` run, an xdist worker) everything is unfrozen, so the
caller's process keeps collecting it.
"""

from __future__ import annotations

import gc
import sys

__all__ = ["freeze_collected", "release_frozen"]


_frozen = False
"""This module froze the permanent generation (and nobody else had)."""


def freeze_collected() -> None:
    """Freeze every object the collector tracks now (at the test loop start);
    nothing when something else of the process froze objects already."""
    global _frozen
    if not _frozen and gc.get_freeze_count() == 0:
        gc.freeze()
        _frozen = True


def release_frozen() -> None:
    """Unfreeze what :func:`freeze_collected` froze, unless this pytest run
    is the process's ``console_main``, which exits when it returns."""
    global _frozen
    if _frozen and not _exits_after_this_run():
        gc.unfreeze()
        _frozen = False


def _exits_after_this_run() -> bool:
    """Whether this session is the only one on the stack and runs under
    pytest's command-line entry point (pytest 9.1+ calls
    ``_pytest.config._console_main``, earlier ones ``console_main``); an
    in-process ``pytester`` run is a second session inside the first."""
    from _pytest import config, main

    entry = {getattr(getattr(config, name, None), "__code__", None) for name in ("_console_main", "console_main")}
    entry.discard(None)
    session_code = main.wrap_session.__code__
    sessions, under_entry = 0, False
    frame = sys._getframe(1)
    while frame is not None:
        sessions += frame.f_code is session_code
        under_entry = under_entry or frame.f_code in entry
        frame = frame.f_back  # type: ignore[assignment]
    return sessions == 1 and under_entry
