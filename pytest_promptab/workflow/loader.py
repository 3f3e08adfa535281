"""Loading workflow files: YAML with line marks, validated against the schema.

``is_promptab_file`` decides cheaply which YAML files are ours.
``load_workflow`` returns a :class:`LoadedWorkflow` or raises a
:class:`~pytest_promptab.errors.ConfigError` that names the file and line and,
for an unknown key, the nearest valid one.
"""

from __future__ import annotations

import difflib
import hashlib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import ConfigError
from .cases import load_cases
from .marked_yaml import Loc, line_for, parse_yaml
from .schema import CaseConfig, LocatedValueError, WorkflowConfig


@dataclass
class LoadedWorkflow:
    """A validated workflow file and what we need to report on it."""

    path: Path
    config: WorkflowConfig
    cases: list[CaseConfig]
    marks: dict[Loc, int] = field(default_factory=dict)
    sha256: str = ""

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def line(self, *loc: Any) -> int | None:
        """The 1-based line of the key (or item) at ``loc``, or of its nearest parent."""
        return line_for(self.marks, tuple(loc))


def is_promptab_file(path: Path) -> bool:
    """A YAML file is ours when its top-level mapping has an ``ab_test`` key;
    a file that does not parse is ours when a line starts with ``ab_test:``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if "ab_test" not in text:
        return False
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return any(line.startswith("ab_test:") for line in text.splitlines())
    return isinstance(data, dict) and "ab_test" in data


def load_workflow(path: Path, *, display: str | None = None) -> LoadedWorkflow:
    """Read, parse and validate ``path``; ``display`` is how errors name it."""
    shown = display or str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror}", path=shown) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError("the file is not UTF-8 text", path=shown) from exc
    data, marks = parse_yaml(text, shown)
    if not isinstance(data, dict):
        raise ConfigError("a workflow file must be a mapping (key: value) at the top level", path=shown, line=1)
    try:
        config = WorkflowConfig.model_validate(data)
    except ValidationError as exc:
        raise _schema_error(exc, marks, shown) from None
    cases = load_cases(config, path.parent, shown, marks)
    return LoadedWorkflow(path=path, config=config, cases=cases, marks=marks, sha256=hashlib.sha256(raw).hexdigest())


def _schema_error(exc: ValidationError, marks: dict[Loc, int], shown: str) -> ConfigError:
    """The first error of ``exc``, located and explained (the rest as a count)."""
    # an unknown key first: a typo ('promtp') also makes the real key look missing
    errors = sorted(exc.errors(include_url=False), key=lambda e: e["type"] != "extra_forbidden")
    messages = []
    first_line: int | None = None
    hint: str | None = None
    for err in errors:
        loc: Loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and _is_union_tag(p)))
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, LocatedValueError):
            loc = loc + cause.loc
        line = line_for(marks, loc)
        text, err_hint = _explain(dict(err), loc)
        messages.append((line, text))
        if first_line is None:
            first_line, hint = line, err_hint
    line0, text0 = messages[0]
    more = ""
    if len(messages) > 1:
        others = "; ".join(f"line {ln}: {t}" for ln, t in messages[1:4])
        more = f"\n  also: {others}" + (" ..." if len(messages) > 4 else "")
    return ConfigError(text0 + more, path=shown, line=line0, hint=hint)


def _is_union_tag(part: str) -> bool:
    # pydantic puts the union member's type in the loc: 'list[CaseConfig]', 'str', 'function-after[...]'
    return "[" in part or part in {"str", "int", "float", "bool", "dict", "list"}


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "the file"


def _explain(err: dict[str, Any], loc: Loc) -> tuple[str, str | None]:
    kind = err["type"]
    where = _dotted(loc)
    if kind == "extra_forbidden":
        key = loc[-1] if loc else "?"
        valid = _valid_keys(loc[:-1])
        close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}?" if close else None
        return (f"unknown key {key!r} in {_dotted(loc[:-1])}; valid keys: {', '.join(valid)}", hint)
    if kind == "missing":
        return (f"{where} is required but missing", f"add '{loc[-1]}:'" if loc else None)
    if kind in ("value_error", "assertion_error"):
        msg = err["msg"].removeprefix("Value error, ")
        return (f"{msg}" if not loc else f"{where}: {msg}", None)
    got = err.get("input")
    shown = repr(got) if not isinstance(got, (dict, list)) else type(got).__name__
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return (f"{where}: {err['msg'].lower()} (got {shown})", None)


def _valid_keys(loc: Loc) -> list[str]:
    """The field names of the model found at ``loc`` in the schema."""
    model: Any = WorkflowConfig
    for part in loc:
        model = _descend(model, part)
        if model is None:
            return []
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [f.alias or name for name, f in model.model_fields.items()]
    return []


def _descend(annotation: Any, part: Any) -> Any:
    for candidate in _members(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel) and isinstance(part, str):
            fields = {f.alias or n: f for n, f in candidate.model_fields.items()}
            if part in fields:
                return fields[part].annotation
        origin = typing.get_origin(candidate)
        if origin is list and isinstance(part, int):
            return typing.get_args(candidate)[0]
        if origin is dict and isinstance(part, str):
            return typing.get_args(candidate)[1]
    return None


def _members(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return [m for arg in typing.get_args(annotation) for m in _members(arg)]
    return [annotation]
