"""Check types that compare a field with the check's value as text or as a
value: ``equals``, ``contains``, ``icontains``, ``not_contains``, ``regex``,
``starts_with``, ``one_of``, ``max_words``, ``min_words``, ``max_chars`` and
``similarity`` (SPEC section 5).
"""

from __future__ import annotations

import difflib
import json
import re
from typing import Any

from ..errors import CheckError
from ..workflow.schema import CheckConfig
from .common import (
    CheckContext,
    as_number,
    fold,
    limit_of,
    make_result,
    name_of,
    num_text,
    quote,
    string_list,
    text_of,
)
from .result import CheckResult

SIMILARITY_CHAR_LIMIT = 2000
"""Longer texts are compared word by word: character matching is quadratic
(about 1 s for two 5,000-character texts)."""


def values_equal(actual: Any, expected: Any, case_sensitive: bool = True) -> bool:
    """The ``equals`` rule: strings equal after strip (case-folded when not
    case sensitive), else equal as numbers when both are numbers, else equal
    as JSON values (a string side is parsed as JSON first)."""
    if isinstance(actual, str) and isinstance(expected, str):
        a, e = actual.strip(), expected.strip()
        if not case_sensitive:
            a, e = a.casefold(), e.casefold()
        if a == e:
            return True
    a_num, e_num = as_number(actual), as_number(expected)
    if a_num is not None and e_num is not None:
        return a_num == e_num
    if isinstance(actual, str) and isinstance(expected, str):
        return False
    if isinstance(actual, str) or isinstance(expected, str):
        try:
            actual = json.loads(actual) if isinstance(actual, str) else actual
            expected = json.loads(expected) if isinstance(expected, str) else expected
        except ValueError:
            return False
    return _json_equal(actual, expected)


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b))
    return bool(a == b)


def check_equals(check: CheckConfig, ctx: CheckContext) -> CheckResult:
    if ctx.value is None:
        raise CheckError(f"check {name_of(check)!r} (equals): no 'value' to compare with", hint="add value: ...")
    ok = values_equal(ctx.actual, ctx.value, check.case_sensitive)
    return make_result(check, ok, ctx.value, ctx.actual, f"expected {quote(ctx.value)}, got {quote(ctx.actual)}")


def _contains(check: CheckConfig, ctx: CheckContext, *, case_sensitive: bool) -> tuple[list[str], list[str]]:
    """(found, missing) of the check's value(s) in the field. A list field
    contains a value when one of its items equals it; other fields are
    searched as text."""
    needles = string_list(check, ctx.value, "a string or a list of strings")
    found: list[str] = []
    missing: list[str] = []
    for needle in needles:
        if isinstance(ctx.actual, list):
            hit = any(values_equal(item, needle, case_sensitive) for item in ctx.actual)
        else:
            text = text_of(ctx.actual)
            hit = needle.casefold() in text.casefold() if not case_sensitive else needle in text
        (found if hit else missing).append(needle)
    return found, missing


def check_contains(check: CheckConfig, ctx: CheckContext) -> CheckResult:
    _, missing = _contains(check, ctx, case_sensitive=check.case_sensitive)
    detail = f"{', '.join(quote(m) for m in missing)} not found in {quote(ctx.actual)}"
    return make_result(check, not missing, ctx.value, ctx.actual, detail)


def check_icontains(check: CheckConfig, ctx: CheckContext) -> CheckResult:
    _, missing = _contains(check, ctx, case_sensitive=False)
    detail = f"{', '.join(quote(m) for m in missing)} not found (ignoring case) in {quote(ctx.actual)}"
    return make_result(check, not missing, ctx.value, ctx.actual, detail)


def check_not_contains(check: CheckConfig, ctx: CheckContext) -> CheckResult:
    found, _ = _contains(check, ctx, case_sensitive=check.case_sensitive)
    detail = f"{', '.join(quote(f) for f in found)} found in {quote(ctx.actual)}"
    return make_result(check, not found, ctx.value, ctx.actual, detail)


def check_regex(check: CheckConfig, ctx: CheckContext) -> CheckResult:
    pattern = ctx.value
    if not isinstance(pattern, str) or not pattern:
        raise CheckError(
            f"check {name_of(check)!r} (regex): 'value' must be a regular expression, got {pattern!r}"
        )
    flags = 0 if check.case_sensitive else re.IGNORECASE
    try:
        compiled = re.compile(pattern, flags)
    except re.error as exc:
        raise CheckError(
            f"check {name_of(check)!r} (regex): invalid pattern {pattern!r}: {exc}",
            hint="patterns use Python's re syntax; in YAML, single-quote them so backslashes stay",
        ) from exc
    ok = compiled.search(text_of(ctx.actual)) is not None
    return make_result(check, ok, pattern, ctx.actual, f"no match for /{pattern}/ in {quote(ctx.actual)}")


def check_starts_with(check: CheckConfig, ctx: CheckContext) -> CheckResult:
    """Leading whitespace of the field is ignored; a list value means any of them."""
    prefixes = string_list(check, ctx.value, "a string or a list of strings")
    text = fold(text_of(ctx.actual).lstrip(), check)
    ok = any(text.startswith(fold(p, check)) for p in prefixes)
    shown = quote(prefixes[0]) if len(prefixes) == 1 else "one of " + ", ".join(quote(p) for p in prefixes)
    return make_result(check, ok, ctx.value, ctx.actual, f"expected to start with {shown}, got {quote(ctx.actual)}")


def check_one_of(check: CheckConfig, ctx: CheckContext) -> CheckResult:
    options = ctx.value
    if isinstance(options, str):  # a rendered template such as "{{ expected.labels }}"
        try:
            options = json.loads(options)
        except ValueError:
            pass
    if not isinstance(options, list) or not options:
        raise CheckError(
            f"check {name_of(check)!r} (one_of): 'value' must be a non-empty list, got {ctx.value!r}",
            hint="e.g. value: [billing, bug, feature]",
        )
    ok = any(values_equal(ctx.actual, option, check.case_sensitive) for option in options)
    listed = ", ".join(quote(o) for o in options[:10]) + (", ..." if len(options) > 10 else "")
    return make_result(check, ok, options, ctx.actual, f"expected one of {listed}, got {quote(ctx.actual)}")


def _word_count(actual: Any) -> int:
    return len(text_of(actual).split())


def check_max_words(check: CheckConfig, ctx: CheckContext) -> CheckResult:
    limit, words = limit_of(check, ctx.value), _word_count(ctx.actual)
    return make_result(check, words <= limit, ctx.value, ctx.actual, f"{words} words > max {num_text(limit)}")


def check_min_words(check: CheckConfig, ctx: CheckContext) -> CheckResult:
    limit, words = limit_of(check, ctx.value), _word_count(ctx.actual)
    return make_result(check, words >= limit, ctx.value, ctx.actual, f"{words} words < min {num_text(limit)}")


def check_max_chars(check: CheckConfig, ctx: CheckContext) -> CheckResult:
    """Counts the characters of the field without leading/trailing whitespace."""
    limit, chars = limit_of(check, ctx.value), len(text_of(ctx.actual).strip())
    return make_result(check, chars <= limit, ctx.value, ctx.actual, f"{chars} chars > max {num_text(limit)}")


def similarity(a: str, b: str) -> float:
    """String similarity in [0, 1]: the :class:`difflib.SequenceMatcher` ratio
    of the stripped strings, character by character, or word by word when
    either is longer than :data:`SIMILARITY_CHAR_LIMIT` (1.0 for two empty
    strings). ``autojunk`` is off: it scores long prose near 0."""
    a, b = a.strip(), b.strip()
    if not a and not b:
        return 1.0
    if max(len(a), len(b)) > SIMILARITY_CHAR_LIMIT:
        return difflib.SequenceMatcher(None, a.split(), b.split(), autojunk=False).ratio()
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def check_similarity(check: CheckConfig, ctx: CheckContext) -> CheckResult:
    """A list value scores the best match among its items."""
    targets = string_list(check, ctx.value, "a string or a list of strings")
    text = text_of(ctx.actual)
    score = max(similarity(text, t) for t in targets)
    ok = score >= check.min
    detail = f"similarity {score:.2f} < min {check.min:g} to {quote(ctx.value)}"
    return make_result(check, ok, ctx.value, ctx.actual, detail, score=score)
