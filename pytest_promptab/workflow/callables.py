"""Resolve ``callable:`` references: ``path/to/file.py:function`` relative to
the workflow file, or ``package.module:function``.

While a file loads, its folder is importable (first on ``sys.path``), so it
can import a sibling module the way a test module imports one next to it in
pytest's default import mode; the siblings it imported stay imported."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError

_lock = threading.Lock()
_cache: dict[tuple[str, str], Callable[..., Any]] = {}


def clear_cache() -> None:
    """Forget loaded callables: each pytest session loads the user's files
    afresh (a long-lived process, or pytester's in-process runs, would
    otherwise keep the previous session's functions)."""
    with _lock:
        _cache.clear()


def load_callable(ref: str, base_dir: Path, *, what: str = "callable") -> Callable[..., Any]:
    """Return the function ``ref`` names; raise :class:`ConfigError` saying what
    is wrong (no colon, file missing, import failed, no such function)."""
    key = (ref, str(base_dir))
    with _lock:
        if key in _cache:
            return _cache[key]
        func = _load(ref, base_dir, what)
        _cache[key] = func
        return func


def _load(ref: str, base_dir: Path, what: str) -> Callable[..., Any]:
    target, sep, attr = ref.rpartition(":")
    if not sep or not target or not attr:
        raise ConfigError(
            f"{what} {ref!r} is not of the form 'path/to/file.py:function' or 'package.module:function'"
        )
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = (base_dir / target).resolve()
        if not path.is_file():
            raise ConfigError(f"{what} {ref!r}: file {path} does not exist (paths are relative to the YAML file)")
        name = "promptab_user_" + hashlib.sha1(str(path).encode()).hexdigest()[:12] + "_" + path.stem
        module = sys.modules.get(name)
        if module is None:
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise ConfigError(f"{what} {ref!r}: cannot import {path}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                with _importable(path.parent):
                    spec.loader.exec_module(module)
            except Exception as exc:  # the user's module failed to import
                del sys.modules[name]
                raise ConfigError(f"{what} {ref!r}: importing {path} failed: {type(exc).__name__}: {exc}") from exc
    else:
        try:
            module = importlib.import_module(target)
        except Exception as exc:
            raise ConfigError(f"{what} {ref!r}: cannot import module {target!r}: {type(exc).__name__}: {exc}") from exc
    func = getattr(module, attr, None)
    if func is None or not callable(func):
        raise ConfigError(f"{what} {ref!r}: {target} has no function {attr!r}")
    return func


@contextmanager
def _importable(folder: Path) -> Iterator[None]:
    """``folder`` first on ``sys.path`` for the duration (callers hold ``_lock``)."""
    entry = str(folder)
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
        importlib.invalidate_caches()
    try:
        yield
    finally:
        if added and entry in sys.path:
            sys.path.remove(entry)
