"""YAML parsed into plain data with the line of every key and list item.

The line marks are what lets every later error (schema, template, check) name
the line of the file it comes from. Used by the workflow loader and by case
files alike.
"""

from __future__ import annotations

from typing import Any

import yaml

from ..errors import ConfigError

Loc = tuple[Any, ...]
CONTENT = "<content>"
"""Marks key suffix: the first line of a scalar value's text."""


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


def line_for(marks: dict[Loc, int], loc: Loc) -> int | None:
    while loc:
        if loc in marks:
            return marks[loc]
        loc = loc[:-1]
    return 1 if marks else None
