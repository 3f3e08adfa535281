"""Check types: judge one field of one run and return a
:class:`~pytest_promptab.records.CheckResult` (SPEC section 5).

The engine looks up the checked field and renders the check's ``value``
template, then calls :meth:`CheckRegistry.evaluate`. Every built-in type is
registered by ``CheckRegistry()``; other types (``llm_judge``, plugin types)
are added with :meth:`CheckRegistry.register`.

``json_schema`` validates with the ``jsonschema`` package (the draft the
schema names, else 2020-12), imported only when such a check runs.
"""

from __future__ import annotations

import difflib
import inspect
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .callables import load_callable
from .errors import CheckError, ConfigError
from .records import CheckResult
from .schema import CheckConfig

SHORT = 200
"""Longest ``expected`` / ``actual`` string kept in a result."""
DETAIL_SHORT = 60
"""Longest value quoted in a ``detail`` sentence."""


@dataclass
class CheckContext:
    actual: Any
    """The checked field's value: text, or any JSON value for ``parse: json`` nodes."""
    value: Any
    """The check's ``value``, already rendered (str, number, list, dict or None)."""
    scope: dict[str, Any]
    """The whole template scope (inputs, node outputs, expected, variant, run)."""
    base_dir: Path
    """The workflow file's folder, for ``callable:`` resolution."""
    judge: Callable[[Any], tuple[float, str]] | None = None
    """For ``llm_judge``: grades an output against the check's rendered rubric
    with the check's provider, returning (score in [0, 1], reasoning)."""


CheckFn = Callable[[CheckConfig, CheckContext], CheckResult]


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
        name = _name(check)
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
            return _result(check, False, ctx.value, None, f"{what} is missing (no value)")
        try:
            return fn(check, ctx)
        except (CheckError, ConfigError):
            raise
        except Exception as exc:  # a plugin's check function failed
            raise CheckError(f"check {name!r} ({check.type}) failed: {type(exc).__name__}: {exc}") from exc


# --------------------------------------------------------------------------
# Helpers


def _name(check: CheckConfig) -> str:
    return check.name or check.type


def shorten(value: Any, limit: int = SHORT) -> Any:
    """Strings longer than ``limit`` are cut, saying how much was left out;
    long JSON values become their shortened JSON text."""
    if isinstance(value, str):
        if len(value) <= limit:
            return value
        return value[:limit] + f"... (+{len(value) - limit} chars)"
    if isinstance(value, (dict, list)):
        text = json.dumps(value, ensure_ascii=False, default=str)
        return value if len(text) <= limit else shorten(text, limit)
    return value


def _q(value: Any) -> str:
    """A value quoted for a detail sentence."""
    if isinstance(value, str):
        return repr(shorten(value, DETAIL_SHORT))
    if isinstance(value, (dict, list)):
        return shorten(json.dumps(value, ensure_ascii=False, default=str), DETAIL_SHORT)
    return repr(value)


def _result(
    check: CheckConfig,
    passed: bool,
    expected: Any,
    actual: Any,
    detail: str | None,
    *,
    score: float | None = None,
    scores: dict[str, float] | None = None,
) -> CheckResult:
    return CheckResult(
        name=_name(check),
        type=check.type,
        passed=passed,
        score=(1.0 if passed else 0.0) if score is None else score,
        expected=shorten(expected),
        actual=shorten(actual),
        detail=None if passed else detail,
        scores=scores or {},
    )


def _text(actual: Any) -> str:
    """The text of a field: itself, or the JSON text of a parsed value."""
    if isinstance(actual, str):
        return actual
    return json.dumps(actual, ensure_ascii=False, default=str)


def _fold(text: str, check: CheckConfig) -> str:
    return text if check.case_sensitive else text.casefold()


def _number(value: Any) -> float | None:
    """``value`` as a finite number, or None (booleans are not numbers)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _strings(check: CheckConfig, value: Any, what: str) -> list[str]:
    """The check's value as a list of strings (one string, a number, or a list)."""
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if item is None or isinstance(item, (dict, list)):
            raise CheckError(f"check {_name(check)!r} ({check.type}): 'value' must be {what}, got {item!r}")
        out.append(item if isinstance(item, str) else str(item))
    if not out:
        raise CheckError(f"check {_name(check)!r} ({check.type}): 'value' is an empty list")
    return out


def _limit(check: CheckConfig, value: Any) -> float:
    number = _number(value)
    if number is None or number < 0:
        raise CheckError(
            f"check {_name(check)!r} ({check.type}): 'value' must be a non-negative number, got {value!r}"
        )
    return number


def _num_text(number: float) -> str:
    return str(int(number)) if number.is_integer() else str(number)


# --------------------------------------------------------------------------
# Built-in check types


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
    a_num, e_num = _number(actual), _number(expected)
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
        raise CheckError(f"check {_name(check)!r} (equals): no 'value' to compare with", hint="add value: ...")
    ok = values_equal(ctx.actual, ctx.value, check.case_sensitive)
    return _result(check, ok, ctx.value, ctx.actual, f"expected {_q(ctx.value)}, got {_q(ctx.actual)}")


def _contains(check: CheckConfig, ctx: CheckContext, *, case_sensitive: bool) -> tuple[list[str], list[str]]:
    """(found, missing) of the check's value(s) in the field. A list field
    contains a value when one of its items equals it; other fields are
    searched as text."""
    needles = _strings(check, ctx.value, "a string or a list of strings")
    found, missing = [], []
    for needle in needles:
        if isinstance(ctx.actual, list):
            hit = any(values_equal(item, needle, case_sensitive) for item in ctx.actual)
        else:
            text = _text(ctx.actual)
            hit = needle.casefold() in text.casefold() if not case_sensitive else needle in text
        (found if hit else missing).append(needle)
    return found, missing


def check_contains(check: CheckConfig, ctx: CheckContext) -> CheckResult:
    _, missing = _contains(check, ctx, case_sensitive=check.case_sensitive)
    detail = f"{', '.join(_q(m) for m in missing)} not found in {_q(ctx.actual)}"
    return _result(check, not missing, ctx.value, ctx.actual, detail)


def check_icontains(check: CheckConfig, ctx: CheckContext) -> CheckResult:
    _, missing = _contains(check, ctx, case_sensitive=False)
    detail = f"{', '.join(_q(m) for m in missing)} not found (ignoring case) in {_q(ctx.actual)}"
    return _result(check, not missing, ctx.value, ctx.actual, detail)


def check_not_contains(check: CheckConfig, ctx: CheckContext) -> CheckResult:
    found, _ = _contains(check, ctx, case_sensitive=check.case_sensitive)
    detail = f"{', '.join(_q(f) for f in found)} found in {_q(ctx.actual)}"
    return _result(check, not found, ctx.value, ctx.actual, detail)


def check_regex(check: CheckConfig, ctx: CheckContext) -> CheckResult:
    pattern = ctx.value
    if not isinstance(pattern, str) or not pattern:
        raise CheckError(f"check {_name(check)!r} (regex): 'value' must be a regular expression, got {pattern!r}")
    flags = 0 if check.case_sensitive else re.IGNORECASE
    try:
        compiled = re.compile(pattern, flags)
    except re.error as exc:
        raise CheckError(
            f"check {_name(check)!r} (regex): invalid pattern {pattern!r}: {exc}",
            hint="patterns use Python's re syntax; in YAML, single-quote them so backslashes stay",
        ) from exc
    ok = compiled.search(_text(ctx.actual)) is not None
    return _result(check, ok, pattern, ctx.actual, f"no match for /{pattern}/ in {_q(ctx.actual)}")


def check_starts_with(check: CheckConfig, ctx: CheckContext) -> CheckResult:
    """Leading whitespace of the field is ignored; a list value means any of them."""
    prefixes = _strings(check, ctx.value, "a string or a list of strings")
    text = _fold(_text(ctx.actual).lstrip(), check)
    ok = any(text.startswith(_fold(p, check)) for p in prefixes)
    shown = _q(prefixes[0]) if len(prefixes) == 1 else "one of " + ", ".join(_q(p) for p in prefixes)
    return _result(check, ok, ctx.value, ctx.actual, f"expected to start with {shown}, got {_q(ctx.actual)}")


def check_one_of(check: CheckConfig, ctx: CheckContext) -> CheckResult:
    options = ctx.value
    if isinstance(options, str):  # a rendered template such as "{{ expected.labels }}"
        try:
            options = json.loads(options)
        except ValueError:
            pass
    if not isinstance(options, list) or not options:
        raise CheckError(
            f"check {_name(check)!r} (one_of): 'value' must be a non-empty list, got {ctx.value!r}",
            hint="e.g. value: [billing, bug, feature]",
        )
    ok = any(values_equal(ctx.actual, option, check.case_sensitive) for option in options)
    listed = ", ".join(_q(o) for o in options[:10]) + (", ..." if len(options) > 10 else "")
    return _result(check, ok, options, ctx.actual, f"expected one of {listed}, got {_q(ctx.actual)}")


def _word_count(actual: Any) -> int:
    return len(_text(actual).split())


def check_max_words(check: CheckConfig, ctx: CheckContext) -> CheckResult:
    limit, words = _limit(check, ctx.value), _word_count(ctx.actual)
    return _result(check, words <= limit, ctx.value, ctx.actual, f"{words} words > max {_num_text(limit)}")


def check_min_words(check: CheckConfig, ctx: CheckContext) -> CheckResult:
    limit, words = _limit(check, ctx.value), _word_count(ctx.actual)
    return _result(check, words >= limit, ctx.value, ctx.actual, f"{words} words < min {_num_text(limit)}")


def check_max_chars(check: CheckConfig, ctx: CheckContext) -> CheckResult:
    """Counts the characters of the field without leading/trailing whitespace."""
    limit, chars = _limit(check, ctx.value), len(_text(ctx.actual).strip())
    return _result(check, chars <= limit, ctx.value, ctx.actual, f"{chars} chars > max {_num_text(limit)}")


def _parse_json(actual: Any) -> tuple[Any, str | None]:
    """(parsed value, None) or (None, why it is not JSON)."""
    if not isinstance(actual, str):
        return actual, None
    try:
        return json.loads(actual), None
    except json.JSONDecodeError as exc:
        why = f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        if actual.lstrip().startswith("```"):
            why += " (the output is wrapped in a ``` code fence)"
        return None, why


def check_json(check: CheckConfig, ctx: CheckContext) -> CheckResult:
    _, why = _parse_json(ctx.actual)
    return _result(check, why is None, "valid JSON", ctx.actual, why)


def check_json_schema(check: CheckConfig, ctx: CheckContext) -> CheckResult:
    schema = check.schema_ if check.schema_ is not None else ctx.value
    if not isinstance(schema, dict):
        raise CheckError(
            f"check {_name(check)!r} (json_schema): needs a 'schema:' mapping",
            hint="e.g. schema: {type: object, required: [answer]}",
        )
    data, why = _parse_json(ctx.actual)
    if why is None:
        errors = validate_json(data, schema, name=_name(check))
        why = "; ".join(errors[:3]) + (f" (+{len(errors) - 3} more)" if len(errors) > 3 else "") if errors else None
    return _result(check, why is None, schema, ctx.actual, why)


def check_schema(schema: dict[str, Any], *, name: str) -> None:
    """Raise :class:`CheckError` when ``schema`` is not a valid JSON Schema."""
    import jsonschema

    validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise CheckError(f"check {name!r} (json_schema): invalid schema: {exc.message}") from None


def validate_json(data: Any, schema: dict[str, Any], *, name: str = "json_schema") -> list[str]:
    """Errors of ``data`` against ``schema`` (empty when valid), each naming
    the JSON path, e.g. ``$.tags[1]: 3 is not of type 'string'``."""
    import jsonschema

    check_schema(schema, name=name)
    validator_cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    validator = validator_cls(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{e.json_path}: {e.message}" for e in errors]


SIMILARITY_CHAR_LIMIT = 2000
"""Longer texts are compared word by word: character matching is quadratic
(about 1 s for two 5,000-character texts)."""


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
    targets = _strings(check, ctx.value, "a string or a list of strings")
    text = _text(ctx.actual)
    score = max(similarity(text, t) for t in targets)
    ok = score >= check.min
    detail = f"similarity {score:.2f} < min {check.min:g} to {_q(ctx.value)}"
    return _result(check, ok, ctx.value, ctx.actual, detail, score=score)


def _score_of(result: Any) -> float | None:
    """A callable's bool or number as a score in [0, 1], else None."""
    if hasattr(result, "item") and callable(result.item) and not isinstance(result, (str, bytes)):
        try:
            result = result.item()  # numpy scalars
        except (TypeError, ValueError):
            return None
    if isinstance(result, bool):
        return 1.0 if result else 0.0
    if isinstance(result, (int, float)) and math.isfinite(result) and 0 <= result <= 1:
        return float(result)
    return None


def _arity_two(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` accepts (output, scope) rather than just (output)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [
        p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


def check_python(check: CheckConfig, ctx: CheckContext) -> CheckResult:
    """``callable(output, scope)`` or ``callable(output)``, returning a bool, a
    score in [0, 1] or a dict of named scores (the score is their mean)."""
    name = _name(check)
    if not check.callable:
        raise CheckError(
            f"check {name!r} (python): no 'callable:' given",
            hint="e.g. callable: checks.py:politeness (a path relative to the YAML file)",
        )
    fn = load_callable(check.callable, ctx.base_dir, what=f"check {name!r} callable")
    try:
        result = fn(ctx.actual, ctx.scope) if _arity_two(fn) else fn(ctx.actual)
    except Exception as exc:
        raise CheckError(
            f"check {name!r}: callable {check.callable} raised {type(exc).__name__}: {exc}"
        ) from exc

    scores: dict[str, float] = {}
    if isinstance(result, dict):
        if not result:
            raise CheckError(f"check {name!r}: callable {check.callable} returned an empty dict")
        for key, item in result.items():
            sub = _score_of(item)
            if sub is None:
                raise CheckError(
                    f"check {name!r}: callable {check.callable} returned {key!r}: {item!r}; "
                    "every score in the dict must be a bool or a number between 0 and 1"
                )
            scores[str(key)] = sub
        score = math.fsum(scores.values()) / len(scores)
    else:
        sub = _score_of(result)
        if sub is None:
            raise CheckError(
                f"check {name!r}: callable {check.callable} returned {shorten(repr(result), DETAIL_SHORT)}; "
                "expected a bool, a number between 0 and 1, or a dict of such scores"
            )
        score = sub
    ok = score >= check.min
    low = ", ".join(f"{k}={v:.2f}" for k, v in scores.items() if v < check.min)
    detail = f"score {score:.2f} < min {check.min:g}" + (f" ({low})" if low else "")
    return _result(check, ok, f"score >= {check.min:g}", ctx.actual, detail, score=score, scores=scores)


def check_llm_judge(check: CheckConfig, ctx: CheckContext) -> CheckResult:
    if ctx.judge is None:
        raise CheckError(f"check {_name(check)!r} (llm_judge): no judge provider is available")
    score, reasoning = ctx.judge(ctx.actual)
    result = _result(check, score >= check.min, f"rubric score >= {check.min:g}", ctx.actual, None, score=score)
    # the judge's reasoning is kept whether it passed or not
    result.detail = f"judge score {score:.2f}: {reasoning}" if reasoning else f"judge score {score:.2f}"
    return result


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
"""Every check type promptab ships except ``llm_judge`` (registered separately)."""
