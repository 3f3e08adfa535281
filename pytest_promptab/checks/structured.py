"""Check types on JSON output: ``json`` (the field parses as JSON) and
``json_schema`` (it validates against a JSON Schema), SPEC section 5.

``json_schema`` validates with the ``jsonschema`` package (the draft the
schema names, else 2020-12), imported only when such a check runs.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import CheckError
from ..workflow.schema import CheckConfig
from .common import CheckContext, make_result, name_of
from .result import CheckResult


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
    return make_result(check, why is None, "valid JSON", ctx.actual, why)


def check_json_schema(check: CheckConfig, ctx: CheckContext) -> CheckResult:
    schema = check.schema_ if check.schema_ is not None else ctx.value
    if not isinstance(schema, dict):
        raise CheckError(
            f"check {name_of(check)!r} (json_schema): needs a 'schema:' mapping",
            hint="e.g. schema: {type: object, required: [answer]}",
        )
    data, why = _parse_json(ctx.actual)
    if why is None:
        errors = validate_json(data, schema, name=name_of(check))
        why = "; ".join(errors[:3]) + (f" (+{len(errors) - 3} more)" if len(errors) > 3 else "") if errors else None
    return make_result(check, why is None, schema, ctx.actual, why)


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
