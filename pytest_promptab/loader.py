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

from .cases import load_cases
from .errors import ConfigError
from .schema import CaseConfig, LocatedValueError, WorkflowConfig

Loc = tuple[Any, ...]
CONTENT = "<content>"
"""Marks key suffix: the first line of a scalar value's text."""


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
        return _line_for(self.marks, tuple(loc))


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


def parse_yaml(text: str, shown: str) -> tuple[Any, dict[Loc, int]]:
    """Parse YAML into plain data, with the line of every key and list item."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        # where the broken construct started (an unclosed quote...) is more
        # useful than where the parser gave up (often the end of the file)
        mark = exc.context_mark or exc.problem_mark
        line = mark.line + 1 if mark else None
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        if exc.context_mark and exc.problem_mark and exc.problem_mark.line != exc.context_mark.line:
            problem += f" (noticed at line {exc.problem_mark.line + 1})"
        raise ConfigError(f"YAML syntax error: {problem}", path=shown, line=line,
                          hint="check the indentation and quoting around this line") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML error: {exc}", path=shown) from None
    marks: dict[Loc, int] = {}
    if root is None:
        return None, marks
    constructor = yaml.SafeLoader("")
    return _to_data(root, (), marks, constructor, shown), marks


def _to_data(node: yaml.Node, loc: Loc, marks: dict[Loc, int], constructor: yaml.SafeLoader, shown: str) -> Any:
    if isinstance(node, yaml.MappingNode):
        constructor.flatten_mapping(node)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = constructor.construct_object(key_node, deep=True)
            if isinstance(key, (list, dict)):
                raise ConfigError("a mapping key must be a plain value", path=shown, line=key_node.start_mark.line + 1)
            if key in result:
                raise ConfigError(
                    f"duplicate key {key!r} (first at line {marks[loc + (key,)]})",
                    path=shown,
                    line=key_node.start_mark.line + 1,
                    hint="remove one of them",
                )
            marks[loc + (key,)] = key_node.start_mark.line + 1
            if isinstance(value_node, yaml.ScalarNode):
                # the first line of the value's text: a block scalar starts below its key
                block = 1 if value_node.style in ("|", ">") else 0
                marks[loc + (key, CONTENT)] = value_node.start_mark.line + 1 + block
            result[key] = _to_data(value_node, loc + (key,), marks, constructor, shown)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            marks[loc + (index,)] = item.start_mark.line + 1
            items.append(_to_data(item, loc + (index,), marks, constructor, shown))
        return items
    return constructor.construct_object(node, deep=True)


def _line_for(marks: dict[Loc, int], loc: Loc) -> int | None:
    while loc:
        if loc in marks:
            return marks[loc]
        loc = loc[:-1]
    return 1 if marks else None


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
        line = _line_for(marks, loc)
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
