"""configurable-agents route conditions (``condition: {logic: ...}``)
translated to promptab route conditions (Jinja2 expressions, evaluated in the
sandbox), with the same meaning.

configurable-agents (``core/control_flow.py``) reads a condition without
``eval``, by these rules, which the translation follows one by one:

- ``default`` (exactly) marks the default route; an empty condition, or one
  that is ``default`` once stripped, always holds;
- a condition must name a state field as ``state.<name>``, and may not
  contain ``__``, ``import``, ``exec``, ``eval`` or ``lambda`` (anywhere,
  any case): such a condition always fails there, so it is a load error here;
- without a ``(``, it is split at `` and `` first (every part must hold),
  then at `` or `` (one part must); each part is read the same way, and
  every part is evaluated (a part that fails to evaluate fails the whole);
- ``state.f OP value`` with OP one of ``== != >= <= > <``; the value is a
  quoted string, a number (a float when it has a ``.``), ``true``/``false``
  (any case), else the text as it is;
- ``state.f``, ``not state.f``, ``f``, ``not f``: the field's truth;
- ``( ... )`` around the whole: its inside.

A condition that fails to evaluate on the state (``None > 0.5``) does not
hold, as there, where it is skipped. Anything else is a load error here
(there, a warning on every run and a route never taken).
"""

from __future__ import annotations

import difflib
import math
import re

_DANGER = re.compile(r"__|import|exec|eval|lambda", re.IGNORECASE)
_FIELD = re.compile(r"\bstate\.(\w+)\b")
_OPS = r"(==|!=|>=|<=|>|<)"
_COMPARISONS = (
    re.compile(r"^state\.(\w+)\s*" + _OPS + r"\s*([^']+)$"),
    re.compile(r"^state\.(\w+)\s*" + _OPS + r'\s*"([^"]*)"$'),
    re.compile(r"^state\.(\w+)\s*" + _OPS + r"\s*'([^']*)'$"),
)
_TRUTH = re.compile(r"^(not\s+)?state\.(\w+)$")
_BARE = re.compile(r"^(not\s+)?(\w+)$")
_JINJA_WORDS = {"true", "false", "none", "True", "False", "None", "and", "or", "not", "in", "is", "if", "else"}

DEFAULT = "default"


class BadCondition(Exception):
    """A condition configurable-agents would never take, or promptab cannot
    read; the message says why and how to write it."""


def translate(logic: str, fields: dict[str, str]) -> str | None:
    """The promptab condition for ``logic`` (``fields``: state field ->
    type); None for the default route."""
    if logic == DEFAULT:
        return None
    text = logic.strip()
    if not text or text == DEFAULT:
        return "true"
    names = _FIELD.findall(text)
    if not names:
        raise BadCondition(f"condition {text!r} names no state field: write it as state.<field> OP value "
                           "(configurable-agents never takes such a route)")
    danger = _DANGER.search(text)
    if danger:
        raise BadCondition(f"condition {text!r} contains {danger.group()!r}, which configurable-agents refuses "
                           "(it never takes that route)")
    for name in names:
        if name not in fields:
            close = difflib.get_close_matches(name, sorted(fields), n=1)
            raise BadCondition(f"condition {text!r} names unknown state field {name!r}"
                               + (f" (did you mean {close[0]!r}?)" if close else "")
                               + f"; fields: {', '.join(sorted(fields))}")
    return _expression(text, fields)


def _expression(logic: str, fields: dict[str, str]) -> str:
    for word, need in ((" and ", "all"), (" or ", "any")):
        if word in logic and "(" not in logic:
            parts = [_expression(part.strip(), fields) for part in logic.split(word)]
            # a list evaluates every part, as configurable-agents does (no short circuit)
            count = f"== {len(parts)}" if need == "all" else "> 0"
            return f"(([{', '.join(parts)}] | select | list | length) {count})"
    text = logic.strip()
    for pattern in _COMPARISONS:
        match = pattern.match(text)
        if match:
            name, op, value = match.groups()
            parsed = _value(value)
            _comparable(fields.get(name, ""), op, parsed, name, text)
            return f"({_name(name, text)} {op} {_literal(parsed, text)})"
    match = _TRUTH.match(text)
    if match:
        return _truth(match.group(1), match.group(2), text)
    has_ops = any(op in text for op in ("==", "!=", ">=", "<=", ">", "<"))
    match = _BARE.match(text)
    if match and not has_ops and match.group(2) in fields:
        return _truth(match.group(1), match.group(2), text)
    if text.startswith("(") and text.endswith(")"):
        return _expression(text[1:-1].strip(), fields)
    raise BadCondition(
        f"condition {text!r} is not one configurable-agents evaluates (it never takes that route): "
        "write state.<field> OP value (OP: == != >= <= > <), state.<field>, not state.<field>, "
        "joined by 'and' / 'or', with parentheses only around the whole"
    )


def _comparable(type_name: str, op: str, value: object, name: str, text: str) -> None:
    """An ordering of a number field with text, or of a text field with a
    number, fails on every run there (the route is never taken)."""
    if op in ("==", "!="):
        return
    base = type_name.strip().split("[", 1)[0]
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if (base in ("int", "float") and isinstance(value, str)) or (base == "str" and number):
        raise BadCondition(f"condition {text!r} compares the {base} field {name!r} with {value!r} "
                           f"({'text' if isinstance(value, str) else 'a number'}): that fails on every run, "
                           "and configurable-agents never takes the route")


def _truth(negation: str | None, name: str, text: str) -> str:
    return f"(not {_name(name, text)})" if negation else f"({_name(name, text)})"


def _name(name: str, text: str) -> str:
    if not name.isidentifier() or name in _JINJA_WORDS:
        raise BadCondition(f"condition {text!r}: promptab cannot read a state field named {name!r} in a condition")
    return name


def _value(text: str) -> object:
    """configurable-agents' reading of a comparison's right-hand side."""
    text = text.strip()
    if any(text.startswith(q) and text.endswith(q) for q in "\"'"):
        return text[1:-1]
    try:
        return float(text) if "." in text else int(text)
    except ValueError:
        pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def _literal(value: object, text: str) -> str:
    """``value`` as a Jinja2 literal (which reads back as the same value)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BadCondition(f"condition {text!r}: the number {value} is out of range")
        return repr(value)
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'
