"""YAML parsed into plain data with the line of every key and list item.

The line marks are what lets every later error (schema, template, check) name
the line of the file it comes from. Used by the workflow loader and by case
files alike.
"""

from __future__ import annotations

from typing import Any

import yaml

from ..errors import ConfigError
from .textline import TextLine

Loc = tuple[Any, ...]
CONTENT = "<content>"
"""Marks key suffix: the first line of a scalar value's text."""


def parse_yaml(text: str, shown: str) -> tuple[Any, dict[Loc, int]]:
    """Parse YAML into plain data, with the line of every key and list item."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line, problem = _syntax_problem(exc)
        raise ConfigError(f"YAML syntax error: {problem}", path=shown, line=line,
                          hint="check the indentation and quoting around this line") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML error: {exc}", path=shown) from None
    marks: dict[Loc, int] = {}
    if root is None:
        return None, marks
    constructor = yaml.SafeLoader("")
    return _to_data(root, (), marks, constructor, shown), marks


def _syntax_problem(exc: yaml.MarkedYAMLError) -> tuple[int | None, str]:
    """The line to name and what went wrong. Inside a block mapping or list
    (wrong indentation, a stray item) the problem's own line is the one to
    fix, not the line where the enclosing mapping starts. A construct left
    open (a quote, a bracket) is named where it starts: the parser only
    notices it where it gives up, often the end of the file."""
    context, problem = exc.context_mark, exc.problem_mark
    enclosing = bool(exc.context and exc.context.startswith("while parsing a block"))
    if enclosing and problem is not None:
        text = exc.problem or "syntax error"
        if text.startswith("expected <block end>"):
            text = f"this line does not fit the indentation of the lines above ({text})"
        if context is not None and context.line != problem.line:
            what = exc.context.removeprefix("while parsing a ") if exc.context else "block"
            text += f" (inside the {what} that starts at line {context.line + 1})"
        return problem.line + 1, text
    mark = context or problem
    text = " ".join(p for p in (exc.context, exc.problem) if p)
    if context and problem and problem.line != context.line:
        text += f" (noticed at line {problem.line + 1})"
    return (mark.line + 1 if mark else None), text


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
                start, end = value_node.start_mark, value_node.end_mark
                marks[loc + (key, CONTENT)] = TextLine(
                    start.line + 1 + block, raw=start.buffer[start.index : end.index] if start.buffer else "",
                    raw_line=start.line + 1, literal=value_node.style == "|",
                )  # fmt: skip
            result[key] = _to_data(value_node, loc + (key,), marks, constructor, shown)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            marks[loc + (index,)] = item.start_mark.line + 1
            items.append(_to_data(item, loc + (index,), marks, constructor, shown))
        return items
    return constructor.construct_object(node, deep=True)


def line_for(marks: dict[Loc, int], loc: Loc) -> int | None:
    while loc:
        if loc in marks:
            return marks[loc]
        loc = loc[:-1]
    return 1 if marks else None
