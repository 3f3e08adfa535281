"""Check types: judge one field of one run and return a
:class:`~pytest_promptab.run.records.CheckResult` (SPEC section 5).

The engine looks up the checked field and renders the check's ``value``
template, then calls :meth:`CheckRegistry.evaluate`. Every built-in type is
registered by ``CheckRegistry()``; plugin types are added with
:meth:`CheckRegistry.register`.

This module is the public place of the check API; the built-in types live in
:mod:`~pytest_promptab.checks.text` (text and value comparisons),
:mod:`~pytest_promptab.checks.structured` (JSON and JSON Schema) and
:mod:`~pytest_promptab.checks.custom` (``python`` and ``llm_judge``), on the
helpers of :mod:`~pytest_promptab.checks.common`.
"""

from __future__ import annotations

import difflib

from ..errors import CheckError, ConfigError
from ..workflow.schema import CheckConfig
from .common import (
    DETAIL_SHORT,
    SHORT,
    CheckContext,
    CheckFn,
    make_result,
    name_of,
    shorten,
)
from .custom import check_llm_judge, check_python
from .result import CheckResult
from .structured import check_json, check_json_schema, check_schema, validate_json
from .text import (
    SIMILARITY_CHAR_LIMIT,
    check_contains,
    check_equals,
    check_icontains,
    check_max_chars,
    check_max_words,
    check_min_words,
    check_not_contains,
    check_one_of,
    check_regex,
    check_similarity,
    check_starts_with,
    similarity,
    values_equal,
)

__all__ = [
    "BUILTINS",
    "DETAIL_SHORT",
    "SHORT",
    "SIMILARITY_CHAR_LIMIT",
    "CheckContext",
    "CheckFn",
    "CheckRegistry",
    "check_contains",
    "check_equals",
    "check_icontains",
    "check_json",
    "check_json_schema",
    "check_llm_judge",
    "check_max_chars",
    "check_max_words",
    "check_min_words",
    "check_not_contains",
    "check_one_of",
    "check_python",
    "check_regex",
    "check_schema",
    "check_similarity",
    "check_starts_with",
    "shorten",
    "similarity",
    "validate_json",
    "values_equal",
]


class CheckRegistry:
    """Check type name -> function. ``CheckRegistry()`` knows every built-in."""

    def __init__(self, builtins: bool = True) -> None:
        self._fns: dict[str, CheckFn] = dict(BUILTINS) if builtins else {}

    def register(self, type_name: str, fn: CheckFn, *, replace: bool = False) -> None:
        """Add a check type; re-registering a name needs ``replace=True``."""
        if not type_name or not isinstance(type_name, str):
            raise ConfigError(f"a check type needs a non-empty name, got {type_name!r}")
        if type_name in self._fns and not replace:
            raise ConfigError(
                f"check type {type_name!r} is already registered",
                hint="pick another name, or pass replace=True to override it",
            )
        self._fns[type_name] = fn

    @property
    def types(self) -> list[str]:
        return sorted(self._fns)

    def __contains__(self, type_name: object) -> bool:
        return type_name in self._fns

    def evaluate(self, check: CheckConfig, ctx: CheckContext) -> CheckResult:
        """Run ``check`` on ``ctx``. A missing field (``None``) fails the check;
        a check that cannot be evaluated raises :class:`CheckError`."""
        fn = self._fns.get(check.type)
        name = name_of(check)
        if fn is None:
            close = difflib.get_close_matches(check.type, self.types, n=1)
            raise ConfigError(
                f"check {name!r}: unknown check type {check.type!r}"
                + (f" (did you mean {close[0]!r}?)" if close else ""),
                hint=f"known types: {', '.join(self.types)}",
            )
        if ctx.actual is None:
            field = check.field or "the last node's output"
            what = f"field {field!r}" if check.field else field
            return make_result(check, False, ctx.value, None, f"{what} is missing (no value)")
        try:
            return fn(check, ctx)
        except (CheckError, ConfigError):
            raise
        except Exception as exc:  # a plugin's check function failed
            raise CheckError(f"check {name!r} ({check.type}) failed: {type(exc).__name__}: {exc}") from exc


BUILTINS: dict[str, CheckFn] = {
    "llm_judge": check_llm_judge,
    "equals": check_equals,
    "contains": check_contains,
    "icontains": check_icontains,
    "not_contains": check_not_contains,
    "regex": check_regex,
    "starts_with": check_starts_with,
    "one_of": check_one_of,
    "max_words": check_max_words,
    "min_words": check_min_words,
    "max_chars": check_max_chars,
    "json": check_json,
    "json_schema": check_json_schema,
    "similarity": check_similarity,
    "python": check_python,
}
"""Every check type promptab ships (``llm_judge`` needs ``CheckContext.judge``)."""
